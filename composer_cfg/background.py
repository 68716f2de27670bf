"""`BackgroundWorker`: a back end's calls, run in order off the training thread, waited on with a bound.

A tracking server that accepts connections and never answers would block any thread that
calls it. Destinations that talk to one run those calls here: the training thread only
enqueues, and where it must wait (starting a run, closing) it waits at most a given time. The
thread is a daemon: one stuck in a call never keeps the process from exiting.

>>> worker = BackgroundWorker("docs")
>>> worker.call("adding", lambda: 1 + 1, timeout=5)
2
>>> worker.stop()
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

_STOP = object()
_deadline: float | None = None  # time.monotonic() by which every wait must end (set on SIGTERM)
#: Seconds that waiting for deliveries (post_close) leaves, under a deadline, for `finalize`:
#: recording how the run ended matters more than one more upload.
FINALIZE_RESERVE = 3.0


def set_deadline(deadline: float | None) -> None:
    """From now on no wait for a back end goes past `deadline` (a `time.monotonic()` value)."""
    global _deadline
    _deadline = deadline


def budget(timeout: float | None, reserve: float = 0.0) -> float | None:
    """`timeout`, cut to end `reserve` seconds before the deadline when one is set (never < 0)."""
    if _deadline is None:
        return timeout
    left = max(0.0, _deadline - reserve - time.monotonic())
    return left if timeout is None else min(timeout, left)


class KeptFailure:
    """The first failure of work done on another thread, kept to be raised on a calling thread.

    >>> kept = KeptFailure()
    >>> kept.keep(OSError("disk full")); kept.keep(OSError("again"))
    >>> kept.pending, str(kept.take())
    (True, 'disk full')
    """

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


class BackgroundWorker:
    """One daemon thread running submitted calls in submission order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, call: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `call(*args)`; its `Future` holds the result or the exception."""
        future: Future[Any] = Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"composer_cfg-{self.name}", daemon=True)
                self._thread.start()
            self._queue.put((future, call, args))
        return future

    def call(self, what: str, call: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """Run `call(*args)` on the worker and return its result, waiting at most `timeout` seconds.

        Raises `TimeoutError` naming `what` when the back end does not answer in time (the call
        itself goes on in the background, and its result is dropped).
        """
        return wait(what, self.submit(call, *args), timeout)

    def stop(self) -> None:
        """Let the thread end once the calls queued so far are done."""
        with self._lock:
            if self._thread is not None:
                self._queue.put(_STOP)
                self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, call, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call(*args)
            except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(error)
            else:
                future.set_result(result)


def wait(what: str, future: Future[Any], timeout: float, reserve: float = 0.0) -> Any:
    """`future`'s result, waiting at most `timeout` seconds (less when a SIGTERM set a deadline:
    see `budget`, with `reserve`); `TimeoutError` naming `what` after that."""
    allowed = budget(timeout, reserve)
    try:
        return future.result(allowed)
    except FutureTimeout:
        if future.done():  # the call itself raised a TimeoutError (the same class on Python >= 3.11)
            raise
        raise TimeoutError(f"{what} did not finish within {allowed:.3g} s (the back end did not answer)") from None
