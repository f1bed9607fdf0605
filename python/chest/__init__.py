"""chest: a dictionary that spills to disk or object storage.

Values live in memory up to a byte budget; beyond it, the coldest are
serialized (pickle by default) and written to a store — a local directory,
S3-compatible object storage, or either through zstd compression — and
loaded back when asked for. Keys always stay in memory, so ``len``, ``in``
and iteration never touch the store. A chest at a given location survives
the process and is reopened from its location.

>>> from chest import Chest
>>> with Chest(memory_budget=1 << 20) as c:   # a temporary directory
...     c["a"] = list(range(10))
...     c["a"][3]
3

The core is the Rust crate ``chest`` (this package's extension module
``chest._chest``); every call that can do I/O runs without the GIL.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import MutableMapping

from ._chest import ChestError, StoredBuffer, _Chest, __version__
from ._views import KeysView

__all__ = ["Chest", "ChestError", "KeysView", "StoredBuffer", "__version__"]


class Chest(_Chest, MutableMapping):
    """A mapping whose values spill to a store beyond a memory budget.

    ``Chest(location=None, *, memory_budget=None, serializer="pickle",
    weigher=None, mode="open_or_create", read_only=False, eviction="lru",
    writer_threads=None, flush_on_drop=True, count_overhead=True,
    keep_loaded=False, admission=None, eviction_batch=None, shards=None,
    max_spill=None)``

    location
        Where the chest lives: a path, ``file:///dir``, ``memory://name``,
        ``s3://bucket/prefix?endpoint=...``, ``zstd+<any of those>``; any URL
        the Rust chest takes. ``None``: a new temporary directory, removed
        when the chest is closed or garbage-collected.
    memory_budget
        Bytes of values to hold in memory (default 256 MiB). A value's
        weight is its ``nbytes`` (numpy), ``memory_usage(deep=True)``
        (pandas), else ``sys.getsizeof``, plus the chest's own bookkeeping
        of about 100 bytes per value in memory; or ``weigher(value)``.
    serializer
        ``"pickle"`` (protocol 5; a numpy array's data is kept out of the
        pickle stream: copied once when written, read back with no copy
        into a writable array), ``"raw"``
        (bytes-like values stored as they are, read back as a zero-copy
        :class:`StoredBuffer`), or ``(name, dumps, loads)``. The name is
        recorded: reopening with another serializer is refused.
    mode
        ``"open_or_create"`` (default), ``"create"`` (fail if a chest is
        there), ``"open"`` (fail if none is).
    read_only
        Open for reading only, beside a writer in another process.
    eviction
        ``"lru"`` (least recently used first, the default) or ``"largest"``.
    writer_threads
        Background threads that write evicted values. Default: none on a
        local directory (the inserting thread writes: a background writer
        needs the GIL to pickle, and for small values the handover costs
        about 10%), two on object storage (network writes overlap).
    count_overhead
        Count the chest's own bookkeeping (about 100 bytes a value in
        memory) in the budget (default); ``False`` counts the weights only.
    keep_loaded
        Keep every value read from the store in memory: the same as
        ``admission="every_read"``.
    admission
        Which values read from the store stay in memory. ``"frequency"``
        (the default): kept while memory has room, then only when wanted
        more often lately than the values it would push out, so one pass
        over the chest does not push out the values in use (TinyLFU's rule;
        near the best static choice on skewed reads). ``"second_read"``:
        kept when read again soon. ``"every_read"``: always kept (the seed's
        behaviour; best when what was just read is read again soon, as in
        web-like access).
    eviction_batch
        How far below the budget an eviction goes, in bytes (default 1/16
        of the budget); 1 evicts only until the values fit.
    max_spill
        A cap on the bytes the store holds: a spill that would pass it is
        refused (``ChestError`` of kind ``"full"``, naming the values),
        the values stay in memory, and spilling resumes when room is freed.
    shards
        Parts the map is split into, each with its own lock and eviction
        order (default: 4 per core). 1: one exact least-recently-used order.

    Keys are ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` and
    tuples of them. Keys Python considers equal are one key (``True``, ``1``
    and ``1.0`` are the key ``1``, and come back as ``1``); NaN is refused.

    A value in memory is returned as the same object (no copy); a spilled
    one is loaded (and kept in memory when it is read again soon). Changing
    a returned object in place does not change the chest: assign it again.
    ``flush()`` makes every change durable; ``close()`` flushes and
    releases the chest (also at exit, and when it is garbage-collected);
    ``drop()`` deletes it and everything it stored.
    Errors of the chest raise :class:`ChestError`, with ``kind``, the
    ``keys`` concerned and the ``location`` of the store.

    Memory on demand: ``memory`` and ``spilled`` (live views of the keys
    by where their values are), ``in_memory(key)``,
    ``get_in_memory(key, default=None)`` (the value only if no read is
    needed), ``keys_in_memory()``,
    ``spill(key)`` (write it out now), ``evict(nbytes)`` (the coldest values,
    until ``nbytes`` are freed; returns the bytes freed) and
    ``stored_object(key)`` (the object holding its stored copy).
    """

    def __init__(self, *args, **kwargs):
        # The arguments were taken by ``_Chest.__new__``.
        key = id(self)
        _live[key] = weakref.ref(self, lambda _, key=key: _live.pop(key, None))

    def __enter__(self) -> "Chest":
        return self

    @property
    def memory(self) -> KeysView:
        """A live view of the keys whose values are in memory."""
        return KeysView(self, True)

    @property
    def spilled(self) -> KeysView:
        """A live view of the keys whose values are spilled (only stored)."""
        return KeysView(self, False)

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<chest.Chest {self.location} (closed)>"
        return (
            f"<chest.Chest {self.location}: {len(self)} keys, "
            f"{self.memory_usage} of {self.memory_budget} bytes in memory>"
        )


# Chests still open when the interpreter exits are closed (flushed) at exit,
# while their background writers can still take the GIL to pickle; after
# that, Python tears threads down and a flush could not run.
# (By id: a mapping is unhashable, so it cannot go in a WeakSet.)
_live: "dict[int, weakref.ref[Chest]]" = {}


@atexit.register
def _close_all() -> None:
    for ref in list(_live.values()):
        c = ref()
        if c is None:
            continue
        try:
            c.close()
        except Exception:  # noqa: BLE001 - at exit, an error can only be reported
            import traceback

            traceback.print_exc()
