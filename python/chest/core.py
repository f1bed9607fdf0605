"""The seed's API: ``chest.core.Chest``, with the signature and behaviour of
Python's ``chest`` (blaze/chest 0.2.3), over this chest.

Code written for the seed runs unchanged::

    from chest.core import Chest          # or: from chest import core
    c = Chest(path="my-chest", available_memory=1e9)
    c["x"] = numpy_array
    c.flush()                             # every value written and out of memory

What is the same: the constructor (``data``, ``path``, ``available_memory``,
``dump``, ``load``, ``key_to_filename``, ``on_miss``, ``on_overflow``,
``mode``), least-recently-used eviction on the inserting thread with the
budget counting the values' weights only (``nbytes`` for numpy, pandas'
deep memory usage, else ``sys.getsizeof``), ``flush()`` moving every value
out of memory, ``drop()``, ``move_to_disk``, ``get_from_disk``,
``prefetch``, ``update(other, overwrite=True)``, ``inmem``,
``memory_usage``, ``available_memory``, ``path``, ``lock``, ``str(c)``, the
context manager (a temporary chest is removed at its end), garbage
collection (a chest at a given path is flushed, a temporary one removed),
and a value that cannot be pickled staying in memory without an exception
from the assignment. Opening the same path twice in one process shares one
open chest, as the seed's two objects shared one folder.

What differs, honestly:

- The folder does not hold one pickle per key: small values are packed
  into segment files, large ones are files of their own, each record with
  a checksum, and a manifest names them. ``key_to_filename(key)`` returns
  the file that holds the key's stored copy, but that file is not a pickle
  of the value (``pickle.load`` of it fails). A chest folder of the seed
  cannot be opened by this chest, nor the other way round.
- Values are pickled with protocol 5 (the seed used protocol 1), so a
  numpy array is written without a copy.
- Keys are ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` and
  tuples of them (the seed took any hashable key and wrote ``str(key)``'s
  md5, so ``1`` and ``"1"`` shared one file; here they are two keys).
- The context manager's exit flushes a chest at a given path (the seed
  wrote nothing, losing the values not flushed before).
- ``on_overflow`` is called for the keys ``move_to_disk`` and ``flush``
  write out, not for the ones eviction writes while an assignment runs.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import threading
import weakref
from collections.abc import Mapping, MutableMapping

from . import Chest as _Chest
from . import ChestError
from ._chest import weight as _weight

__all__ = ["Chest", "DEFAULT_AVAILABLE_MEMORY", "key_to_filename", "nbytes"]

DEFAULT_AVAILABLE_MEMORY = 1e9


def _do_nothing(*args, **kwargs):
    return None


def nbytes(o):
    """The weight of a value as the budget counts it: ``nbytes`` (numpy),
    pandas' deep memory usage, else ``sys.getsizeof`` (the seed's helper)."""
    return _weight(o)


def key_to_filename(key):
    """The seed's default name of a key's file. Kept for code that calls it;
    this chest names its files itself (see :meth:`Chest.key_to_filename`)."""
    import hashlib
    import re

    if isinstance(key, str) and re.match(r"^[_a-zA-Z]\w*$", key):
        return key
    if isinstance(key, tuple):
        names = ["_" + key_to_filename(k) for k in key[:-1]] + [key_to_filename(key[-1])]
        return os.path.join(*names)
    return hashlib.md5(str(key).encode()).hexdigest()


def _file_serializer(dump, load, mode):
    """A ``(name, dumps, loads)`` serializer from the seed's file-style pair."""
    name = "file:" + ".".join(
        filter(None, (getattr(dump, "__module__", None), getattr(dump, "__qualname__", None)))
    )
    if mode == "t":

        def dumps(value):
            f = io.StringIO()
            dump(value, f)
            return f.getvalue().encode("utf-8")

        def loads(data):
            return load(io.StringIO(bytes(data).decode("utf-8")))

    else:

        def dumps(value):
            f = io.BytesIO()
            dump(value, f)
            return f.getvalue()

        def loads(data):
            return load(io.BytesIO(bytes(data)))

    return (name, dumps, loads)


# Chests open at a path in this process, by real path: a second
# ``Chest(path=...)`` of the same folder shares the first one's open chest
# (a folder has one writer; the seed's two objects simply shared the files).
_shared: "dict[str, weakref.ref[_Chest]]" = {}
_shared_lock = threading.Lock()


def _only_serialize_errors(e: ChestError) -> bool:
    """Whether every error `e` gathers is a value that could not be serialized."""
    kinds = getattr(e, "kinds", None) or [e.kind]
    return all(k in ("serialize", "panicked") for k in kinds)


class Chest(MutableMapping):
    """A dictionary that spills to disk, with the seed's signature.

    ``Chest(data=None, path=None, available_memory=None, dump=pickle.dump,
    load=pickle.load, key_to_filename=key_to_filename, on_miss=None,
    on_overflow=None, open=open, open_many=None, mode='b')``

    data
        A mapping of initial items.
    path
        The folder (created if missing). ``None``: a temporary folder,
        removed when the chest is dropped, left (``with``) or
        garbage-collected.
    available_memory
        Bytes of values to hold in memory (default 1e9), counted as the seed
        did: the values' weights only.
    dump, load, mode
        A file-style serializer pair (``json.dump``, ``json.load`` with
        ``mode='t'``); the default pickles (protocol 5).
    on_miss(key)
        Called before a value is read from disk by ``c[key]``.
    on_overflow(key)
        Called for each key ``move_to_disk`` and ``flush`` write out.
    key_to_filename, open, open_many
        Accepted for the seed's callers and not used: this chest names and
        opens its own files (see the module's notes).
    """

    def __init__(
        self,
        data=None,
        path=None,
        available_memory=None,
        dump=None,
        load=None,
        key_to_filename=key_to_filename,
        on_miss=_do_nothing,
        on_overflow=_do_nothing,
        open=None,
        open_many=None,
        mode="b",
    ):
        if mode not in ("b", "t"):
            raise ValueError(f"mode must be 'b' or 't', not {mode!r}")
        if available_memory is None:
            available_memory = DEFAULT_AVAILABLE_MEMORY
        self.available_memory = int(available_memory)
        self.mode = mode
        self.dump = dump if dump is not None else pickle.dump
        self.load = load if load is not None else pickle.load
        self._on_miss = on_miss or _do_nothing
        self._on_overflow = on_overflow or _do_nothing
        self._key_to_filename = key_to_filename
        self.lock = threading.Lock()
        self._explicitly_given_path = path is not None
        if dump is None and load is None:
            serializer = "pickle"
        else:
            serializer = _file_serializer(self.dump, self.load, mode)
        options = dict(
            memory_budget=max(self.available_memory, 0),
            serializer=serializer,
            # The seed's budget: values' weights only; every loaded value
            # kept; eviction on the inserting thread, only until the values
            # fit again.
            count_overhead=False,
            keep_loaded=True,
            writer_threads=0,
            eviction_batch=1,
            shards=1,
        )
        if path is None:
            self._c = _Chest(None, **options)
            self.path = _local_path(self._c.location)
        else:
            self.path = os.fspath(path)
            real = os.path.realpath(self.path)
            with _shared_lock:
                ref = _shared.get(real)
                shared = ref() if ref is not None else None
                if shared is None or shared.closed:
                    shared = _Chest(self.path, **options)
                    _shared[real] = weakref.ref(shared)
            self._c = shared
        if data:
            self.update(data)

    # -- the mapping --------------------------------------------------------

    def __getitem__(self, key):
        c = self._c
        if key in c and not c.in_memory(key):
            self._on_miss(key)
        return c[key]

    def __setitem__(self, key, value):
        try:
            self._c[key] = value
        except ChestError as e:
            # As in the seed: a value that cannot be serialized stays in
            # memory, and the assignment does not raise.
            if not _only_serialize_errors(e):
                raise

    def __delitem__(self, key):
        del self._c[key]

    def __iter__(self):
        return iter(self._c)

    def __len__(self):
        return len(self._c)

    def __contains__(self, key):
        try:
            return key in self._c
        except TypeError:
            return False

    # -- the seed's surface -------------------------------------------------

    def __str__(self):
        return "<chest at %s>" % self.path

    @property
    def inmem(self):
        """The values in memory now, as a dict (a snapshot)."""
        c = self._c
        return {k: c[k] for k in c.keys_in_memory() if k in c}

    @property
    def memory_usage(self):
        """Bytes of values in memory (their weights)."""
        return self._c.memory_usage

    def key_to_filename(self, key):
        """The file that holds `key`'s stored copy, or ``None`` while its
        value is only in memory. It holds checksummed records (several
        keys' for small values), not a pickle of the value."""
        name = self._c.stored_object(key)
        if name is None:
            return None
        return os.path.join(self.path, *name.split("/"))

    def move_to_disk(self, key):
        """Writes `key`'s value out and drops it from memory (``TypeError``
        if it cannot be pickled; it then stays in memory)."""
        self._on_overflow(key)
        try:
            self._c.spill(key)
        except ChestError as e:
            if _only_serialize_errors(e):
                raise TypeError(str(e)) from e
            raise

    def get_from_disk(self, key):
        """Loads `key`'s value into memory (nothing if it is there)."""
        if key not in self._c:
            raise KeyError(key)
        self._c.prefetch([key])

    def prefetch(self, keys):
        """Loads the values of `keys` (a key or a list of keys) into memory."""
        if not isinstance(keys, list):
            keys = [keys]
        self._c.prefetch([k for k in keys if k in self._c])

    def flush(self):
        """Writes every value and the list of keys, and moves every value
        out of memory, as the seed's flush did. Durable when it returns."""
        with self.lock:
            c = self._c
            in_memory = c.keys_in_memory()
            for key in in_memory:
                self._on_overflow(key)
            c.flush()
            c.evict(1 << 62)

    def drop(self):
        """Removes the chest's folder and everything in it."""
        with _shared_lock:
            real = os.path.realpath(self.path)
            if _shared.get(real) is not None and _shared[real]() is self._c:
                del _shared[real]
        self._c.drop()
        shutil.rmtree(self.path, ignore_errors=True)

    def update(self, other=(), overwrite=True, **kwargs):
        """Adds the items of `other` (a chest or any mapping) and `kwargs`;
        with ``overwrite=False`` the keys this chest has keep their values."""
        items = other.items() if isinstance(other, Mapping) else other
        for key, value in list(items) + list(kwargs.items()):
            if overwrite or key not in self:
                self[key] = value

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._explicitly_given_path:
            # The seed wrote nothing here; this chest flushes (nothing lost).
            if not self._c.closed:
                self._c.flush()
        else:
            self.drop()

    def __del__(self):
        c = getattr(self, "_c", None)
        if c is None or c.closed:
            return
        try:
            if self._explicitly_given_path:
                c.flush()
            else:
                self.drop()
        except Exception:  # noqa: BLE001 - a finalizer cannot raise
            pass


def _local_path(location):
    """The folder of a ``file://`` location."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(location)
    return unquote(parts.path).rstrip("/") or "/"
