"""`Timestamp`: an immutable point in training time (counters plus wall-clock durations)."""

from __future__ import annotations

import operator
from datetime import timedelta
from typing import Any, Union

from composer_cfg.core.time_value import Time, TimeUnit, time_class

Duration = Union[timedelta, float, int, None]

#: Each counter and its unit.
UNITS = {
    "epoch": TimeUnit.EPOCH,
    "batch": TimeUnit.BATCH,
    "batch_in_epoch": TimeUnit.BATCH,
    "sample": TimeUnit.SAMPLE,
    "sample_in_epoch": TimeUnit.SAMPLE,
    "token": TimeUnit.TOKEN,
    "token_in_epoch": TimeUnit.TOKEN,
}
COUNTERS = tuple(UNITS)
DURATIONS = ("total_wct", "epoch_wct", "batch_wct")
FIELDS = COUNTERS + DURATIONS
_KINDS = tuple(time_class(unit) for unit in UNITS.values())
_FIELD_OF_UNIT = {TimeUnit.EPOCH: 0, TimeUnit.BATCH: 1, TimeUnit.SAMPLE: 3, TimeUnit.TOKEN: 5}


def _counter(name: str, kind: type[Time], value: Any) -> Time:
    """`value` (an int, or a `Time` of the counter's unit) as the counter's `Time`."""
    if isinstance(value, Time) and value.unit is not kind.unit:
        raise ValueError(f"Timestamp.{name} counts {kind.unit.name}, got {value.to_timestring()!r}")
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"Timestamp.{name} must be an int, got {value!r}") from None
    if count < 0:
        raise ValueError(f"Timestamp.{name} must be >= 0, got {count}")
    return int.__new__(kind, count)


def _seconds(name: str, value: Duration) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"Timestamp.{name} must be a timedelta or seconds, got {value!r}")


def _as_timedelta(index: int) -> property:
    return property(lambda self: timedelta(seconds=self[index]))


class Timestamp(tuple):
    """Where a run is: epoch, batch, sample and token counts, and wall-clock durations.

    Immutable: a loop replaces it (``state.timestamp = state.timestamp.to_next_batch()``).
    Counters are given as ints (or Composer `Time` values of the counter's unit) and read back
    as `Time` values: ints with ``.value`` and ``.unit``. Durations are given as `timedelta` or
    seconds and read back as `timedelta`; the tuple itself holds the seven counters, then the
    three durations in seconds (what loggers store).

    >>> ts = Timestamp(epoch=1, batch=10).to_next_batch(samples=32)
    >>> ts.batch, ts.batch_in_epoch, ts.sample, ts.batch.value, ts.batch.unit.name
    (11, 1, 32, 11, 'BATCH')
    >>> ts.get("ep") == ts.epoch == 1
    True
    """

    __slots__ = ()

    def __new__(
        cls,
        *,
        epoch: int = 0,
        batch: int = 0,
        batch_in_epoch: int = 0,
        sample: int = 0,
        sample_in_epoch: int = 0,
        token: int = 0,
        token_in_epoch: int = 0,
        total_wct: Duration = None,
        epoch_wct: Duration = None,
        batch_wct: Duration = None,
    ) -> Timestamp:
        counts = (epoch, batch, batch_in_epoch, sample, sample_in_epoch, token, token_in_epoch)
        durations = (total_wct, epoch_wct, batch_wct)
        return tuple.__new__(
            cls,
            tuple(map(_counter, COUNTERS, _KINDS, counts))
            + tuple(_seconds(n, v) for n, v in zip(DURATIONS, durations)),
        )

    epoch = property(operator.itemgetter(0), doc="Completed epochs.")
    batch = property(operator.itemgetter(1), doc="Completed batches, all epochs.")
    batch_in_epoch = property(operator.itemgetter(2), doc="Completed batches in this epoch.")
    sample = property(operator.itemgetter(3), doc="Samples seen, all epochs.")
    sample_in_epoch = property(operator.itemgetter(4), doc="Samples seen in this epoch.")
    token = property(operator.itemgetter(5), doc="Tokens seen, all epochs.")
    token_in_epoch = property(operator.itemgetter(6), doc="Tokens seen in this epoch.")
    total_wct = _as_timedelta(7)
    total_wct.__doc__ = "Wall-clock time of the run."
    epoch_wct = _as_timedelta(8)
    epoch_wct.__doc__ = "Wall-clock time of this epoch."
    batch_wct = _as_timedelta(9)
    batch_wct.__doc__ = "Wall-clock time of the last batch."

    def get(self, unit: TimeUnit | str) -> Time:
        """The counter of `unit` (``"ep"``, ``"ba"``, ``"sp"``, ``"tok"`` or a `TimeUnit`): epoch,
        batch, sample or token."""
        unit = TimeUnit(unit)
        if unit not in _FIELD_OF_UNIT:
            raise ValueError(f"a Timestamp has no {unit.name} counter; it counts epochs, batches, samples and tokens")
        return self[_FIELD_OF_UNIT[unit]]

    def to_next_batch(self, samples: int = 0, tokens: int = 0, duration: Duration = None) -> Timestamp:
        """The timestamp after one more batch of `samples` samples and `tokens` tokens."""
        elapsed = _seconds("duration", duration)
        return self.copy(
            batch=self.batch + 1,
            batch_in_epoch=self.batch_in_epoch + 1,
            sample=self.sample + samples,
            sample_in_epoch=self.sample_in_epoch + samples,
            token=self.token + tokens,
            token_in_epoch=self.token_in_epoch + tokens,
            total_wct=self[7] + elapsed,
            epoch_wct=self[8] + elapsed,
            batch_wct=elapsed,
        )

    def to_next_epoch(self) -> Timestamp:
        """The timestamp at the start of the next epoch: in-epoch counters and clocks reset."""
        return self.copy(
            epoch=self.epoch + 1,
            batch_in_epoch=0,
            sample_in_epoch=0,
            token_in_epoch=0,
            epoch_wct=0.0,
            batch_wct=0.0,
        )

    def copy(self, **changes: Any) -> Timestamp:
        """A new timestamp with `changes` applied; unknown field names raise `TypeError`."""
        return Timestamp(**{**self.template_fields(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """Field name -> value (counters as int, durations as timedelta)."""
        return {name: getattr(self, name) for name in FIELDS}

    def template_fields(self) -> dict[str, int | float]:
        """Field name -> value as templates see it: counters as int, durations as float seconds."""
        return dict(zip(FIELDS, self))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timestamp) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={value!r}" for name, value in zip(FIELDS, self) if value)
        return f"Timestamp({body})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_from_fields, (tuple(self),))


def _from_fields(values: tuple[Any, ...]) -> Timestamp:
    return Timestamp(**dict(zip(FIELDS, values)))
