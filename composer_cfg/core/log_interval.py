"""`LogInterval`: which epochs or batches a destination keeps at its threshold level (``log_interval``)."""

from __future__ import annotations

from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.timestamp import Timestamp


class LogInterval:
    """Keep the calls of every `every`-th epoch (threshold EPOCH) or batch (threshold BATCH).

    As in Composer, the decision is made when the unit starts, at ``epoch_start`` (kept when
    ``(epoch + 1) % every == 0``) or ``batch_start`` (``(batch + 1) % every == 0``), and holds
    for every call until the next start: data logged at ``epoch_end`` or by an evaluation after
    the epoch counts for the epoch that ended. A destination driven without those events decides
    from ``state.timestamp`` at each call instead, with the same formula.

    >>> interval = LogInterval(2, LogLevel.EPOCH)
    >>> interval.keeps(Timestamp(epoch=1)), interval.keeps(Timestamp(epoch=2))   # no events: by timestamp
    (True, False)
    >>> interval.start(Timestamp(epoch=1)); interval.keeps(Timestamp(epoch=2))   # epoch 1 started: kept
    True

    `level` is the level thinned out (None when nothing is: ``every == 1`` or a FIT threshold).
    """

    __slots__ = ("every", "level", "_kept")

    def __init__(self, every: int, threshold: LogLevel) -> None:
        self.every = every
        self.level = threshold if every > 1 and threshold is not LogLevel.FIT else None
        self._kept: bool | None = None  # the decision for the unit in progress, once a start event made it

    def start(self, timestamp: Timestamp) -> None:
        """A unit of `level` starts (``epoch_start`` or ``batch_start``): decide for its calls."""
        self._kept = self._due(timestamp)

    def keeps(self, timestamp: Timestamp) -> bool:
        """Whether a call at `level` is kept now."""
        kept = self._kept
        return self._due(timestamp) if kept is None else kept

    def _due(self, timestamp: Timestamp) -> bool:
        count = timestamp.batch if self.level is LogLevel.BATCH else timestamp.epoch
        return (count + 1) % self.every == 0
