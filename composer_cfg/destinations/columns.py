"""Growable typed columns: numbers stored in `array.array`s, a few bytes each."""

from __future__ import annotations

import struct
from array import array
from typing import Any


class TimeRows:
    """One packed row per time point: the timestamp's 7 counters, its 3 durations, the level.

    Counters take 4 bytes until one needs 8; then every row is widened once.
    """

    NARROW = struct.Struct("<7i3db")
    WIDE = struct.Struct("<7q3db")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.layout = self.NARROW
        self.count = 0

    def append(self, timestamp: tuple[Any, ...], level: int) -> int:
        """Add a row; return its index."""
        try:
            self.buffer += self.layout.pack(*timestamp, level)
        except struct.error:
            if self.layout is self.WIDE:
                raise
            rows = list(self.NARROW.iter_unpack(self.buffer))
            self.layout = self.WIDE
            self.buffer = bytearray(b"".join(self.WIDE.pack(*row) for row in rows))
            self.buffer += self.layout.pack(*timestamp, level)
        self.count += 1
        return self.count - 1

    def row(self, index: int) -> tuple[Any, ...]:
        return self.layout.unpack_from(self.buffer, index * self.layout.size)

    def as_numpy(self, names: tuple[str, ...]) -> Any:
        """The rows as a numpy structured array with fields `names` (and ``level``)."""
        import numpy as np

        counter = "<i4" if self.layout is self.NARROW else "<i8"
        dtype = [(name, counter) for name in names[:7]] + [(name, "<f8") for name in names[7:]] + [("level", "i1")]
        return np.frombuffer(bytes(self.buffer), dtype=np.dtype(dtype))


class Series:
    """The values of one key, in call order, with the row (time point) of each.

    Plain floats and ints are kept in typed arrays; the first value of another type (a mix of
    ints and floats, a numpy scalar) moves the series to a plain list, so every value reads back
    as logged, of the type it was logged as.
    """

    __slots__ = ("rows", "values", "exact_type")

    def __init__(self, first: Any) -> None:
        self.rows = array("I")
        self.exact_type: type | None = type(first)
        if self.exact_type is float:
            self.values: Any = array("d")
        elif self.exact_type is int:
            self.values = array("q")
        else:
            self.values = []
            self.exact_type = None

    def add(self, row: int, value: Any) -> None:
        """Append `value` at `row` (the slow path: any type)."""
        if isinstance(self.values, array):
            if type(value) is self.exact_type:
                try:
                    self.values.append(value)
                    self.rows.append(row)
                    return
                except OverflowError:  # an int beyond 64 bits
                    pass
            self.values = self.values.tolist()
            self.exact_type = None
        self.values.append(value)
        self.rows.append(row)
