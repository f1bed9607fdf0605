"""Live, read-only views of a chest's keys by where their values are."""

from __future__ import annotations

from collections.abc import Mapping


class KeysView(Mapping):
    """The keys of a chest whose values are in memory (``in_memory=True``)
    or spilled, as a read-only mapping that follows the chest: ``len``,
    ``in`` and truth never load anything; iteration lists the keys at that
    moment; ``view[key]`` reads the value (loading a spilled one)."""

    def __init__(self, chest: Chest, in_memory: bool):
        self._chest = chest
        self._in_memory = in_memory

    def _keys(self):
        in_memory = set(self._chest.keys_in_memory())
        if self._in_memory:
            return in_memory
        return [k for k in self._chest if k not in in_memory]

    def __getitem__(self, key):
        if key in self._chest and self._chest.in_memory(key) == self._in_memory:
            return self._chest[key]
        raise KeyError(key)

    def __contains__(self, key):
        try:
            return key in self._chest and self._chest.in_memory(key) == self._in_memory
        except TypeError:
            return False

    def __iter__(self):
        return iter(self._keys())

    def __len__(self):
        if self._in_memory:
            return self._chest.len_in_memory()
        return len(self._chest) - self._chest.len_in_memory()

    def __repr__(self):
        where = "in memory" if self._in_memory else "spilled"
        return f"<keys {where} of {self._chest!r}>"


