"""How a `Logger` reports a destination that raises: each distinct failure once, counted after.

A destination that keeps failing the same way (a full disk, a dead server) would otherwise raise
on every call of a training loop. Each *distinct* failure of a destination (same type, same
message) is raised the first time; when it happens again one warning says so, and from then on
it is only counted. A different error is always raised. At close, how often each failure
repeated is reported. Whether a call in between "succeeded" proves nothing (a buffered write or
a no-op hook touches no disk), so it does not reset anything. Errors about the call itself
(`TypeError`, `ValueError`: bad data, a bad key) are raised every time.
"""

from __future__ import annotations

import logging

LOG = logging.getLogger("composer_cfg")
#: Errors about the call itself, not about a destination's health: always raised.
ALWAYS_RAISED = (TypeError, ValueError)


class FailureLedger:
    """The failures one destination has raised so far, and how often each repeated."""

    __slots__ = ("name", "repeats")

    def __init__(self, name: str) -> None:
        self.name = name
        self.repeats: dict[tuple[type, str], int] = {}

    def is_new(self, error: Exception, what: str) -> bool:
        """Record `error`; True if it must be raised, False if this failure was raised before."""
        if isinstance(error, ALWAYS_RAISED):
            return True
        signature = (type(error), str(error))
        count = self.repeats.get(signature)
        self.repeats[signature] = 0 if count is None else count + 1
        if count == 0:
            LOG.warning("destination %r failed again in %s (%s: %s); this failure is not raised again, only "
                        "counted (the count is reported at close)", self.name, what, type(error).__name__, error)
        return count is None

    def report(self) -> None:
        """Say how often each failure repeated without being raised."""
        for (kind, text), count in self.repeats.items():
            if count:
                LOG.warning("destination %r: the failure %s: %s repeated %d more time(s) without being raised",
                            self.name, kind.__name__, text, count)


def raise_first(failures: list[tuple[str, str, Exception]]) -> None:
    """Raise the first of `failures` (destination name, method, error), with a note per failure."""
    if not failures:
        return
    first = failures[0][2]
    for name, what, error in failures:
        first.add_note(f"raised by destination {name!r} in {what}: {type(error).__name__}: {error}")
    raise first
