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
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

_STOP = object()


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


def wait(what: str, future: Future[Any], timeout: float) -> Any:
    """`future`'s result, waiting at most `timeout` seconds; `TimeoutError` naming `what` after that."""
    try:
        return future.result(timeout)
    except FutureTimeout:
        if future.done():  # the call itself raised a TimeoutError (the same class on Python >= 3.11)
            raise
        raise TimeoutError(f"{what} did not finish within {timeout:g} s (the back end did not answer)") from None
