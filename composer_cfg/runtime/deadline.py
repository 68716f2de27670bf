"""`Deadline`: the point in time by which a wait must end, passed as a value to whoever waits.

>>> Deadline.never().seconds(5.0), Deadline.after(0).seconds(5.0)
(5.0, 0.0)
"""

from __future__ import annotations

import time


class Deadline:
    """A `time.monotonic()` value by which waits end (None: no deadline of its own)."""

    __slots__ = ("at",)

    def __init__(self, at: float | None) -> None:
        self.at = at

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """`seconds` from now; None: never."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    @classmethod
    def never(cls) -> Deadline:
        return cls(None)

    def seconds(self, limit: float | None = None) -> float | None:
        """Seconds left, at most `limit` (None: no limit of the caller's); never negative."""
        if self.at is None:
            return limit
        left = max(0.0, self.at - time.monotonic())
        return left if limit is None else min(limit, left)

    def sooner(self, seconds: float | None) -> Deadline:
        """This deadline or `seconds` from now, whichever comes first."""
        other = Deadline.after(seconds)
        if self.at is None or (other.at is not None and other.at < self.at):
            return other
        return self

    def reserving(self, seconds: float) -> Deadline:
        """A deadline `seconds` before this one (for a step that must come after, such as ending a run)."""
        return self if self.at is None else Deadline(self.at - seconds)

    def __repr__(self) -> str:
        return "Deadline(never)" if self.at is None else f"Deadline(in {self.seconds():.3g} s)"
