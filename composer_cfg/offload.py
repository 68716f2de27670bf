"""`Offloaded`: a local writer's calls, made in order on a background thread of its own.

With ``Logger(..., offload_writers=True)`` the destinations that allow it (`offloadable`: the
JSON Lines and TensorBoard writers, and a text log that captures no stream: they only write
their own files) receive their data, hyperparameters and events on a thread of their own: the
logging thread copies the call's state (its timestamp, and its wall-clock time, read now) and
queues the call. Encoding and writing happen on that thread, in the order of the calls.
`Event.INIT`, a checkpoint and `close` wait until every queued call is written, then run on the
calling thread, so a destination failing to start still fails the start, and what a checkpoint
promises (everything logged before it is on disk) still holds. A call that failed on the thread
is raised after the next call is queued (or after the checkpoint or close has run). At most
`limit` calls wait: past that, a logging call waits for the writer (a stalled disk slows
logging instead of filling memory). After `close`, a call raises.

>>> calls = []
>>> offloaded = Offloaded("docs")
>>> from composer_cfg.core.state import State
>>> offloaded.later(lambda state, value: calls.append((state.run_name, value)), State("run"), 1)
>>> offloaded.now(lambda: calls)
[('run', 1)]
>>> offloaded.stop()
"""

from __future__ import annotations

import collections
import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from composer_cfg.background import KeptFailure
from composer_cfg.core.events import Event
from composer_cfg.core.state import State


class Offloaded:
    """Calls queued for one destination's thread (see above). The thread is woken once `batch`
    calls wait, at an event, and when a caller waits for it: a data call alone only appends to a
    queue, so the thread writes calls in groups instead of being woken by each."""

    def __init__(self, name: str, limit: int = 10_000, batch: int = 64) -> None:
        self.name = name
        self._calls: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._limit, self._batch = limit, batch
        self._failure = KeptFailure()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopped = False

    def later(self, call: Callable[..., Any], state: State, *args: Any, wake: bool = False) -> None:
        """Queue ``call(snapshot, *args)``, `snapshot` being `state` as it is now (`wake`: have it
        written soon); then raise the failure of an earlier call, if there is one (this call is
        queued all the same)."""
        if self._stopped:  # a call still in flight when the Logger closed
            raise RuntimeError(f"the writer of {self.name!r} is closed: it writes no more")
        snapshot = copy.copy(state)
        if snapshot.log_time is None:
            snapshot.log_time = time.time()
        if self._thread is None:
            self._start()
        waiting = len(self._calls)
        if waiting >= self._limit:  # the writer is behind: wait until it caught up
            self._wait()
        self._calls.append((call, snapshot, args))
        if wake or waiting + 1 >= self._batch:
            self._wake.set()
        if self._failure.pending:
            self._failure.raise_kept()

    def now(self, call: Callable[..., Any], *args: Any) -> Any:
        """Wait until every queued call is done, then ``call(*args)`` here; then raise the failure
        of a queued call, if there was one (a note on the call's own error, if it raised too)."""
        self._wait()
        earlier = self._failure.take()
        try:
            result = call(*args)
        except BaseException as error:
            if earlier is not None:
                error.add_note(f"an earlier write on the writer's thread failed too: {type(earlier).__name__}: "
                               f"{earlier}")
            raise
        if earlier is not None:
            raise earlier
        return result

    def stop(self) -> None:
        """Take no more calls; the thread ends once the calls queued so far are done."""
        self._stopped = True
        if self._thread is not None:
            self._calls.append(None)
            self._wake.set()

    def _wait(self) -> None:
        """Until the calls queued so far are done (no lock is shared with the thread otherwise:
        a logging call never waits for a write in progress)."""
        if self._thread is not None:
            done = threading.Event()
            self._calls.append(done)
            self._wake.set()
            done.wait()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._write, name=f"composer_cfg-offload-{self.name}", daemon=True)
                thread.start()
                self._thread = thread

    def _write(self) -> None:
        calls = self._calls
        while True:
            self._wake.wait()
            self._wake.clear()
            while calls:
                item = calls.popleft()
                if item is None:
                    return
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                call, state, args = item
                try:
                    call(state, *args)
                except Exception as error:  # noqa: BLE001 - raised on a logging thread (`later`, `now`)
                    self._failure.keep(error)


def offloaded_methods(name: str, methods: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """A destination's bound methods (`LoggerDestination`'s names), its writing ones made on a
    thread of its own (see above). `Event.INIT` (a destination failing to start fails the
    start), checkpoints and `close` wait for the queued calls and run on the calling thread;
    `close` then ends the thread."""
    offloaded = Offloaded(name)
    log_data, log_hyperparameters = methods["log_data"], methods["log_hyperparameters"]
    run_event, flush = methods["run_event"], methods["flush"]
    checkpoint_saved, close = methods["checkpoint_saved"], methods["close"]

    def event(event: Event, state: State, logger: Any) -> None:
        if event is Event.INIT:
            offloaded.now(run_event, event, state, logger)
        else:
            offloaded.later(lambda snapshot: run_event(event, snapshot, logger), state, wake=True)

    def close_then_stop(state: State, logger: Any) -> None:
        try:
            offloaded.now(close, state, logger)
        finally:
            offloaded.stop()

    return {
        **methods,
        "log_data": lambda state, level, data: offloaded.later(log_data, state, level, data),
        "log_hyperparameters": lambda state, data: offloaded.later(log_hyperparameters, state, data),
        "run_event": event,
        "flush": lambda state, logger: offloaded.later(flush, state, logger, wake=True),
        "checkpoint_saved": lambda state, logger: offloaded.now(checkpoint_saved, state, logger),
        "close": close_then_stop,
    }
