"""How a `Logger` reports a destination that raises: once per streak, and never by hiding another.

A destination that keeps failing the same way (a full disk, a dead server) would otherwise raise
on every call of a training loop. Its first failure is raised; the same failure again gets one
warning and is then counted silently, until the destination succeeds at the kind of call that
failed (a filtered level or a no-op hook proves nothing) or fails differently (a different error
is always raised). At close, the count is reported. Errors about the call itself (`TypeError`,
`ValueError`: bad data, a bad key) are raised every time.
"""

from __future__ import annotations

import logging

LOG = logging.getLogger("composer_cfg")
#: Errors about the call itself, not about a destination's health: always raised.
ALWAYS_RAISED = (TypeError, ValueError)


class FailureStreak:
    """The failure one destination keeps repeating, if any."""

    __slots__ = ("name", "signature", "what", "repeats")

    def __init__(self, name: str) -> None:
        self.name = name
        self.signature: tuple[type, str] | None = None
        self.what = ""  # the kind of call that started the streak ("log_data", "epoch_end"...)
        self.repeats = 0

    def is_new(self, error: Exception, what: str) -> bool:
        """Record `error`; True if it must be raised, False if it repeats the current streak."""
        if isinstance(error, ALWAYS_RAISED):
            return True
        signature = (type(error), str(error))
        if signature != self.signature:
            self.end()
            self.signature, self.what = signature, what
            return True
        self.repeats += 1
        if self.repeats == 1:
            LOG.warning("destination %r failed again in %s (%s: %s); the same failure is not raised again until "
                        "the destination succeeds or fails differently", self.name, what, type(error).__name__, error)
        return False

    def succeeded(self, what: str) -> None:
        """A call of kind `what` to the destination succeeded: that ends a streak it started."""
        if what == self.what:
            self.end()

    def end(self) -> None:
        """The streak is over: say how often its failure was suppressed."""
        if self.repeats:
            LOG.warning("destination %r: the failure %s: %s repeated %d more time(s) without being raised",
                        self.name, self.signature[0].__name__, self.signature[1], self.repeats)  # type: ignore[index]
        self.signature = None
        self.repeats = 0


def raise_first(failures: list[tuple[str, str, Exception]]) -> None:
    """Raise the first of `failures` (destination name, method, error), with a note per failure."""
    if not failures:
        return
    first = failures[0][2]
    for name, what, error in failures:
        first.add_note(f"raised by destination {name!r} in {what}: {type(error).__name__}: {error}")
    raise first
