"""`FlushSchedule`: when a destination writes out what it buffers, declared once."""

from __future__ import annotations

from collections.abc import Iterable
from time import monotonic

from composer_cfg.config.params import POSITIVE
from composer_cfg.core.events import Event
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.timestamp import Timestamp


class FlushSchedule:
    """Flush every `every` batches (``unit=BATCH``) or epochs (``unit=EPOCH``), at `events`, and
    with `seconds` set, at the first opportunity once that many seconds have passed.

    A destination declares one as its ``flush_schedule``; its ``run_event`` calls
    ``flush(state, logger)`` after an event when `due` says so. Counting is by the timestamp after
    the unit ends: with ``every=100`` a BATCH schedule flushes at the ``batch_end`` where
    ``batch % 100 == 0``. A BATCH schedule also flushes at every ``epoch_end``.

    Seconds (``time.monotonic``) count from creation and from each `restart` (the caller's
    flush); without `seconds` the clock is never read.

    >>> schedule = FlushSchedule(2, LogLevel.EPOCH, at=[Event.FIT_END])
    >>> [schedule.due(Event.EPOCH_END, Timestamp(epoch=e)) for e in (1, 2)], schedule.due(Event.FIT_END, Timestamp())
    ([False, True], True)
    """

    __slots__ = ("every", "unit", "at", "seconds", "_last")

    def __init__(
        self, every: int | None, unit: LogLevel | None, at: Iterable[Event] = (), seconds: float | None = None
    ) -> None:
        self.every = every
        self.unit = unit if every is not None else None
        self.at = frozenset(at)
        self.seconds = None if seconds is None else float(POSITIVE.check("flush_seconds", seconds))
        self._last = monotonic() if self.seconds is not None else 0.0

    def due(self, event: Event, timestamp: Timestamp) -> bool:
        """Whether a flush is due right after `event`, at `timestamp`."""
        return self._due_by_count(event, timestamp) or self.seconds is not None and self.seconds_due()

    def may_flush_at(self, event: Event) -> bool:
        """Whether a flush can ever be due right after `event` (asked once, to route events)."""
        if self.seconds is not None or event in self.at:
            return True
        if self.unit is LogLevel.BATCH:
            return event is Event.BATCH_END or event is Event.EPOCH_END
        return self.unit is LogLevel.EPOCH and event is Event.EPOCH_END

    def seconds_due(self) -> bool:
        """With `seconds` set: whether that many have passed since the last `restart`."""
        return monotonic() - self._last >= self.seconds  # type: ignore[operator]

    def restart(self) -> None:
        """Count seconds from now (the caller flushes); nothing without `seconds`."""
        if self.seconds is not None:
            self._last = monotonic()

    def _due_by_count(self, event: Event, timestamp: Timestamp) -> bool:
        if event in self.at:
            return True
        if self.unit is LogLevel.BATCH:
            return event is Event.BATCH_END and timestamp.batch % self.every == 0 or event is Event.EPOCH_END
        if self.unit is LogLevel.EPOCH:
            return event is Event.EPOCH_END and timestamp.epoch % self.every == 0
        return False

    def __repr__(self) -> str:
        unit = self.unit.name if self.unit is not None else None
        return (f"FlushSchedule(every={self.every}, unit={unit}, at={sorted(e.value for e in self.at)}, "
                f"seconds={self.seconds})")
