"""`Time` and `TimeUnit`: counts of training time that know their unit, as Composer's are.

A `Time` is an `int` (so ``int(t)``, ``t == 3``, ``t + 1``, ``t % 10`` and ``f"{t:03d}"`` work
as on the number, at the speed of an int) that also has Composer's ``.value`` and ``.unit``:

>>> t = Time(12, "ba")
>>> t == 12, t.value, t.unit, t.to_timestring(), f"ep{Time.from_timestring('3ep'):03d}"
(True, 12, <TimeUnit.BATCH: 'ba'>, '12ba', 'ep003')

Arithmetic gives plain ints, and Times of different units compare as their numbers (Composer
returned a Time and refused to mix units). Only whole counts exist here: there is no
``TimeUnit.DURATION`` time, since a timestamp never holds one.
"""

from __future__ import annotations

import operator
import re
from enum import Enum
from typing import ClassVar


class TimeUnit(str, Enum):
    """Units of training time, with Composer's values."""

    EPOCH = "ep"
    BATCH = "ba"
    SAMPLE = "sp"
    TOKEN = "tok"
    DURATION = "dur"


_TIMESTRING = re.compile(r"(-?\d+(?:\.\d*)?(?:e\d+)?)(ep|ba|sp|tok|dur)", re.IGNORECASE)


class Time(int):
    """A whole number of epochs, batches, samples or tokens: ``Time(5, TimeUnit.EPOCH)``, ``Time(5, "ep")``."""

    __slots__ = ()
    unit: ClassVar[TimeUnit]

    def __new__(cls, value: int, unit: TimeUnit | str | None = None) -> Time:
        if unit is not None or cls is Time:
            kind = _BY_UNIT.get(TimeUnit(unit))
            if kind is None:
                raise ValueError(f"a Time counts {', '.join(u.name for u in _BY_UNIT)}; got unit {unit!r}")
            cls = kind
        return int.__new__(cls, operator.index(value))

    @property
    def value(self) -> int:
        """The count, as a plain int."""
        return int(self)

    @classmethod
    def from_timestring(cls, text: str) -> Time:
        """Parse ``"5ep"``, ``"100ba"``, ``"1e3tok"`` (Composer's time strings)."""
        match = _TIMESTRING.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"invalid time string {text!r}: expected a number and a unit, e.g. '5ep' or '100ba'")
        number, unit = match.groups()
        return cls(int(float(number)), unit.lower())

    def to_timestring(self) -> str:
        return f"{int(self)}{self.unit.value}"


def _kind(name: str, unit: TimeUnit) -> type[Time]:
    """The `Time` type of `unit`, kept as the module attribute `name` (so its values pickle)."""
    return type(name, (Time,), {"__slots__": (), "unit": unit, "__module__": __name__, "__qualname__": name})


_Epochs = _kind("_Epochs", TimeUnit.EPOCH)
_Batches = _kind("_Batches", TimeUnit.BATCH)
_Samples = _kind("_Samples", TimeUnit.SAMPLE)
_Tokens = _kind("_Tokens", TimeUnit.TOKEN)
_BY_UNIT: dict[TimeUnit, type[Time]] = {kind.unit: kind for kind in (_Epochs, _Batches, _Samples, _Tokens)}


def time_class(unit: TimeUnit) -> type[Time]:
    """The `Time` type of `unit` (its constructor is int's: ``time_class(TimeUnit.BATCH)(3)``)."""
    return _BY_UNIT[unit]
