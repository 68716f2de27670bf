"""`Lifecycle`: a Logger's phases, open -> closing -> closed, or inert in a forked child.

Calls are taken while open; from the moment `close` starts they raise (a `RuntimeError` saying
so); in a forked child they go nowhere (`composer_cfg.runtime.forks`). One thread closes: a
second `close` from another thread returns once the first is done, one from the closing thread
itself (a destination closing its Logger while closing) returns at once.
"""

from __future__ import annotations

import threading

from composer_cfg.core.events import Event

OPEN, CLOSING, CLOSED, INERT = "open", "closing", "closed", "inert"


class Lifecycle:
    """The phase of one Logger (see the module's docstring)."""

    def __init__(self) -> None:
        self.phase = OPEN
        self._closer: int | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()

    def taking(self, what: str, event: Event | None = None) -> bool:
        """Whether calls are taken: True while open, False in a forked child; after close, a
        `RuntimeError` naming `what` (or the event)."""
        phase = self.phase
        if phase == OPEN or phase == INERT:
            return phase == OPEN
        if event is not None:
            raise RuntimeError(f"this Logger is closed: it fires no more events (got {event.value!r})")
        raise RuntimeError(f"this Logger is closed: it takes no more {what}")

    def start_closing(self) -> bool:
        """Whether this thread is the one to close now; if another thread closes, once it is done."""
        with self._lock:
            closer = self._closer
            if closer is None and self.phase not in (CLOSED, INERT):
                self.phase, self._closer = CLOSING, threading.get_ident()
                return True
        if closer not in (None, threading.get_ident()):
            self._done.wait()
        return False

    def closed(self) -> None:
        self.phase = CLOSED
        self._done.set()

    def inert(self) -> None:
        """In a forked child: nothing more happens, and a close returns at once."""
        self.phase = INERT
        self._done.set()
