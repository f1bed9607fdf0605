"""A spill buffer for dask.distributed workers: ``chest.dask.ChestBuffer``.

A worker keeps task results in ``Worker.data``; by default a
``distributed.spill.SpillBuffer`` (one pickle file per key). Give the
worker a chest instead::

    from distributed import LocalCluster
    from chest.dask import ChestBuffer

    cluster = LocalCluster(
        n_workers=4,
        memory_limit="4 GiB",
        data=(ChestBuffer, {"target": 2 << 30, "max_spill": 50 << 30}),
    )

(or ``dask worker --data ...`` through a small module of yours). The worker
passes its local directory (``worker_local_directory``); the buffer spills
there by default, to ``location`` if given — ``zstd+file://...`` to
compress, ``s3://bucket/prefix?...`` so a cluster's workers spill to object
storage.

What the worker and its memory monitor use is here, with the spill
buffer's contract:

- the mapping methods; ``key in buffer`` never touches the store, and
  ``len``, iteration and ``del`` never load a value;
- ``fast`` / ``memory`` (the keys in memory) and ``slow`` / ``disk`` (the
  keys spilled), as read-only mappings;
- a spilled value that is still referenced elsewhere (by a task, a
  future...) is handed back as that same object, without a read and without
  a second copy in memory, as dask's buffer does (a weak reference to every
  value put in; values that take no weak reference, such as ``bytes``, are
  read back);
- ``evict()``: spills the coldest value and returns the memory it freed, or
  -1 if nothing could be spilled; it never raises;
- ``spilled_total``: ``(memory, disk)``, the bytes the spilled values take
  in the store (a chest keeps no weight of a value once it is out of
  memory, so both are the stored bytes);
- ``target`` and ``max_spill``: a value is spilled once the values in memory
  weigh more than ``target``; the store never holds more than
  ``max_spill`` bytes (``False``: no cap);
- errors: reaching ``max_spill``, a full disk, or another key failing to
  pickle keep the values in memory and log (at most every 10 s for the
  first two, once per key for the last); ``buffer[key] = value`` does not
  raise for them. A value heavier than ``target`` that fails to pickle is
  removed, and ``TypeError("Failed to pickle 'key'")`` raised, as dask does.

Keys are what dask uses (``str`` and tuples of ``str`` and ``int``); values
are pickled with protocol 5 on the buffer's background writer thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import urllib.parse
import uuid
import weakref
from collections import defaultdict
from collections.abc import Mapping, MutableMapping
from typing import NamedTuple

from . import Chest, ChestError
from ._chest import weight

__all__ = ["ChestBuffer", "SpilledSize"]

logger = logging.getLogger("chest.dask")

# What each kind of spill failure logs, as dask's spill buffer words it.
_CAPACITY = "Spill file on disk reached capacity; keeping data in memory"
_DISK = "Spill to disk failed; keeping data in memory"
_PICKLE = "Failed to pickle %s"  # the key as the chest names it: its repr
# The kinds of an error that only keep values in memory (nothing lost).
_DISK_KINDS = {"store", "denied", "unreachable", "no_chest"}
_RATE_SECONDS = 10.0
_MISSING = object()


class SpilledSize(NamedTuple):
    """The bytes the spilled values take, as dask's ``spilled_total``."""

    memory: int
    disk: int


class ChestBuffer(MutableMapping):
    """A dask worker's ``data``: values in memory up to ``target`` bytes,
    the rest spilled to a chest (see the module).

    ``ChestBuffer(worker_local_directory=None, *, target=None,
    max_spill=False, location=None, **chest_options)``

    worker_local_directory
        Passed by the worker: the buffer spills to a new folder in it
        unless ``location`` is given. Without either, a temporary folder.
    target
        Bytes of values to keep in memory (default 256 MiB): what dask's
        ``distributed.worker.memory.target`` fraction of the memory limit
        gives.
    max_spill
        A cap on the bytes spilled (``False``: none).
    location
        Where to spill: any location :class:`chest.Chest` takes.
    chest_options
        Passed to :class:`chest.Chest` (``weigher``, ``writer_threads``, ...).
    """

    def __init__(
        self,
        worker_local_directory: str | None = None,
        *,
        target: int | None = None,
        max_spill: int | bool = False,
        location: str | None = None,
        **chest_options,
    ):
        self.target = int(target) if target is not None else 256 << 20
        self.max_spill = max_spill if max_spill is not False else False
        # A location of this buffer's own, unique to it (every worker of a
        # cluster gets the same arguments): a new folder in the worker's
        # directory, or a new prefix under the location given.
        unique = f"chest-spill-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._own_folder = None
        if location is None and worker_local_directory is not None:
            location = os.path.join(worker_local_directory, unique)
            self._own_folder = location
        elif location is not None:
            location = _child(location, unique)
            if not urllib.parse.urlsplit(location).scheme[1:]:
                self._own_folder = location  # a local path
        options = dict(
            memory_budget=self.target,
            # dask's weights: the values' own sizes; a value read back
            # comes back into memory (as zict.Buffer does).
            count_overhead=False,
            keep_loaded=True,
            mode="create",
            flush_on_drop=False,
            # A worker sets results from its event loop: the spills' pickling
            # and disk writes happen on a writer thread of the buffer's
            # instead (dask's own buffer writes on the event loop).
            writer_threads=1,
        )
        if self.max_spill is not False:
            options["max_spill"] = int(self.max_spill)
        options.update(chest_options)
        self._weigher = options.get("weigher")
        self._chest = Chest(location, **options)
        self.logged_pickle_errors: set = set()
        self.cumulative_metrics: defaultdict = defaultdict(float)
        self._last_logged: dict[str, float] = {}
        # key -> the value put in, while something else keeps it alive.
        self._alive: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    # -- the mapping ---------------------------------------------------------

    def __setitem__(self, key, value):
        # The weak reference first: whatever happens below, it never names
        # an older value of the key.
        self._alive.pop(key, None)
        try:
            self._chest[key] = value
        except ChestError as e:
            self._handle(e, key, value)
        try:
            self._alive[key] = value
        except TypeError:  # no weak reference to it (bytes, int, ...)
            pass
        self.logged_pickle_errors.discard(_key_text(key))

    def __getitem__(self, key):
        value = self._chest.get_in_memory(key, _MISSING)
        if value is not _MISSING:
            return value
        value = self._alive.get(key)
        if value is not None:
            # Spilled, but alive elsewhere: the same object, not a copy.
            return value
        return self._chest[key]

    def __delitem__(self, key):
        self._alive.pop(key, None)
        del self._chest[key]
        self.logged_pickle_errors.discard(_key_text(key))

    def __contains__(self, key):
        try:
            return key in self._chest
        except TypeError:
            return False

    def __iter__(self):
        return iter(self._chest)

    def __len__(self):
        return len(self._chest)

    def clear(self):
        self._alive.clear()
        self._chest.clear()
        self.logged_pickle_errors.clear()

    # -- what the worker's memory monitor uses --------------------------------

    @property
    def fast(self) -> Mapping:
        """The keys whose values are in memory (a read-only view)."""
        return self._chest.memory

    @property
    def slow(self) -> Mapping:
        """The keys whose values are spilled (a read-only view)."""
        return self._chest.spilled

    memory = fast
    disk = slow

    def evict(self) -> int:
        """Spills the coldest value in memory; returns the memory freed, or
        -1 if none could be spilled (the reason is logged). Never raises."""
        try:
            freed = self._chest.evict(1)
        except ChestError as e:
            self._handle(e, None, None)
            return -1
        except Exception:  # noqa: BLE001 - the monitor must not die of it
            logger.exception("evict failed")
            return -1
        return freed if freed > 0 else -1

    @property
    def spilled_total(self) -> SpilledSize:
        """The bytes the spilled values take in the store."""
        stored = self._chest.stored_bytes
        return SpilledSize(stored, stored)

    def close(self):
        """Closes the buffer: its values are gone (nothing is flushed, the
        values' objects are deleted), and so is its folder in the worker's
        directory."""
        self._alive.clear()
        if not self._chest.closed:
            try:
                self._chest.clear()
            finally:
                self._chest.close()
        if self._own_folder is not None:
            shutil.rmtree(self._own_folder, ignore_errors=True)

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a finalizer cannot raise
            pass

    def __repr__(self):
        return (
            f"<ChestBuffer {self._chest.location}: {len(self)} keys, "
            f"{self._chest.len_in_memory()} in memory>"
        )

    # -- errors -----------------------------------------------------------------

    def _handle(self, e: ChestError, key, value) -> None:
        """Logs what only kept values in memory; raises what dask raises."""
        kinds = set(getattr(e, "kinds", None) or [e.kind])
        keys = set(getattr(e, "keys", None) or [])
        if (
            key is not None
            and kinds & {"serialize", "panicked"}
            and _key_text(key) in keys
            and self._weight(value) > self.target
        ):
            # A value too heavy to stay in memory that cannot be pickled:
            # dask removes it and raises.
            try:
                del self._chest[key]
            except KeyError:
                pass
            raise TypeError(f"Failed to pickle {key!r}") from e
        handled = False
        if "full" in kinds:
            # The spill cap (max_spill) is dask's capacity; a full disk its
            # failed spill.
            if "max_spill" in str(e):
                self._rate_limited(_CAPACITY)
            else:
                self._rate_limited(_DISK, exc=e)
            handled = True
        if kinds & _DISK_KINDS:
            self._rate_limited(_DISK, exc=e)
            handled = True
        if "serialize" in kinds or "panicked" in kinds:
            for k in keys or {"?"}:
                if k not in self.logged_pickle_errors:
                    self.logged_pickle_errors.add(k)
                    logger.error(_PICKLE, k, exc_info=e)
            handled = True
        if not handled:
            raise e

    def _weight(self, value) -> int:
        weigher = self._weigher or weight
        try:
            return int(weigher(value))
        except Exception:  # noqa: BLE001 - a value that cannot be weighed counts as heavy
            return self.target + 1

    def _rate_limited(self, message: str, exc=None) -> None:
        now = time.monotonic()
        if now - self._last_logged.get(message, -_RATE_SECONDS) >= _RATE_SECONDS:
            self._last_logged[message] = now
            if exc is None:
                logger.warning(message)
            else:
                logger.error(message, exc_info=exc)


def _child(location: str, name: str) -> str:
    """`location` (a path or a URL) with `name` appended to its path."""
    parts = urllib.parse.urlsplit(location)
    if not parts.scheme or len(parts.scheme) == 1:  # a path (or a drive letter)
        return os.path.join(location, name)
    path = parts.path.rstrip("/") + "/" + name
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _key_text(key) -> str:
    """A key as the chest's errors name it (Python's repr)."""
    return repr(key)
