"""A compact, bounded map from 64-bit hashes to 64-bit values, for streaming dataset checks.

Duplicate, conflict and overlap checks remember one small record per distinct example, never
its text. A ``dict[int, int]`` costs about 110 bytes an entry (two int objects and a slot);
:class:`CompactIndex` keeps keys and values in two ``array('Q')`` tables with open addressing
(linear probing, load at most 3/4), about 21 to 43 bytes an entry, and stops growing at
``capacity`` entries: later keys are not stored and :attr:`CompactIndex.full` says so, so
memory stays bounded whatever the input size (at most about ``capacity * 43`` bytes).

:func:`hash64` turns text into the keys: the first 8 bytes of BLAKE2b, never 0 (0 marks an
empty slot).
"""

from __future__ import annotations

import hashlib
from array import array

__all__ = ["DEFAULT_CAPACITY", "CompactIndex", "hash32", "hash64"]

DEFAULT_CAPACITY = 1 << 20
"""Entries per index before it stops growing: about 1M distinct examples, at most ~45 MB."""

_MIN_SLOTS = 1 << 10


def hash64(data: bytes | str) -> int:
    """A non-zero 64-bit key for ``data`` (BLAKE2b, first 8 bytes; text is UTF-8 encoded)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    value = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")
    return value or 1


def hash32(data: bytes | str) -> int:
    """A 32-bit hash of ``data`` (for packing next to a line number in one 64-bit value)."""
    return hash64(data) & 0xFFFF_FFFF


class CompactIndex:
    """An insert-only open-addressing hash map of non-zero 64-bit keys to 64-bit values.

    Args:
        capacity: the most entries it will hold; inserts beyond it are dropped and set
            :attr:`full`.
    """

    __slots__ = ("_keys", "_mask", "_values", "capacity", "full", "size")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.size = 0
        self.full = False
        self._mask = _MIN_SLOTS - 1
        self._keys = array("Q", bytes(8 * _MIN_SLOTS))
        self._values = array("Q", bytes(8 * _MIN_SLOTS))

    def _slot(self, key: int) -> int:
        """The slot holding ``key``, or the empty slot where it would go."""
        keys, mask = self._keys, self._mask
        slot = (key ^ (key >> 29)) & mask
        while True:
            found = keys[slot]
            if found in (key, 0):
                return slot
            slot = (slot + 1) & mask

    def get(self, key: int) -> int | None:
        """The value stored for ``key`` (non-zero, < 2**64), or ``None``."""
        slot = self._slot(key)
        return self._values[slot] if self._keys[slot] == key else None

    def setdefault(self, key: int, value: int) -> int | None:
        """Store ``value`` for ``key`` unless present; return the earlier value, else ``None``.

        ``None`` also when the index is at ``capacity`` and nothing was stored (see ``full``).
        """
        slot = self._slot(key)
        if self._keys[slot] == key:
            return self._values[slot]
        if self.size >= self.capacity:
            self.full = True
            return None
        self._keys[slot] = key
        self._values[slot] = value
        self.size += 1
        if self.size * 4 > (self._mask + 1) * 3:
            self._grow()
        return None

    def __len__(self) -> int:
        return self.size

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        slots = (self._mask + 1) * 2
        self._mask = slots - 1
        self._keys = array("Q", bytes(8 * slots))
        self._values = array("Q", bytes(8 * slots))
        for key, value in zip(old_keys, old_values, strict=True):
            if key:
                slot = self._slot(key)
                self._keys[slot] = key
                self._values[slot] = value
