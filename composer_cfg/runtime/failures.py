"""How a `Logger` reports a destination that raises: each distinct failure once, counted after.

A destination that keeps failing the same way (a full disk, a dead server) would otherwise raise
on every call of a training loop. Each *distinct* failure of a destination (same type, same
message) is raised the first time; when it happens again one warning says so, and from then on
it is only counted. A different error is always raised. At close, how often each failure
repeated is reported. Whether a call in between "succeeded" proves nothing (a buffered write or
a no-op hook touches no disk), so it does not reset anything. Errors about the call itself
(`TypeError`, `ValueError`: bad data, a bad key) are raised every time.

A failure on a channel's own thread is kept (`KeptFailure`) and raised on a logging thread, at the
next call or barrier, through the same ledger.
"""

from __future__ import annotations

import contextlib
import logging
import threading

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
    with contextlib.suppress(AttributeError):  # (an exception class with __slots__)
        first.destination = failures[0][:2]  # type: ignore[attr-defined]  # whose, and in what: for one-line reports
    raise first


class KeptFailure:
    """The first failure of work done on another thread, kept to be raised on a calling thread.

    >>> kept = KeptFailure()
    >>> kept.keep(OSError("disk full")); kept.keep(OSError("again"))
    >>> kept.pending, str(kept.take())
    (True, 'disk full')
    """

    __slots__ = ("_lock", "_error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    @property
    def pending(self) -> bool:
        """Whether a failure is kept (read without the lock: a hot path may check it often)."""
        return self._error is not None

    def keep(self, error: BaseException) -> None:
        """Keep `error` unless an earlier one is kept."""
        with self._lock:
            self._error = self._error or error

    def take(self) -> BaseException | None:
        """The kept failure (None if none), no longer kept."""
        with self._lock:
            error, self._error = self._error, None
        return error

    def raise_kept(self) -> None:
        """Raise the kept failure, if any; it is then no longer kept."""
        error = self.take()
        if error is not None:
            raise error
