"""`KeyedChannel`: artifacts uploaded on several workers, the newest version of each name winning.

Composer's semantics: for each key (an object name) at most one upload is in flight, and of the
versions waiting behind it only the newest is kept (an older one is dropped, with its staged
copy). A slow or retried old version can never land after a newer one, and a log file
republished at every flush costs one upload at a time, not a backlog. At most
``queue_size`` keys wait or upload at once; one more waits for room (``block``, at most
``timeout``, once per outage) or is not uploaded (``drop``: said at once, and raised at close,
naming it). ``overwrite=False`` for a key already waiting or uploading is refused at the call.

The sink's `key` (the object name, or None to skip the artifact) runs on the calling thread; its
`write` runs on a worker, one artifact per call, concurrently for different keys. A failed
upload is raised at every later event the sink acts at (as Composer raised once an upload worker
had died) and at close, which waits for pending uploads at most ``timeout`` (and its deadline).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from composer_cfg.core.record import Kind, Record
from composer_cfg.core.sink import SinkContext
from composer_cfg.core.status import RunStatus
from composer_cfg.runtime import workers
from composer_cfg.runtime.channel import Channel
from composer_cfg.runtime.deadline import Deadline

#: Seconds close gives the sink at most to abort uploads it left unfinished.
ABORT_SECONDS = 1.0


class KeyedChannel(Channel):
    kind = "keyed"

    def __init__(self, *args: Any, concurrency: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._workers = concurrency
        self._cond = threading.Condition()
        self._waiting: dict[str, Record] = {}  # key -> newest version not started, oldest key first
        self._running: set[str] = set()
        self._threads = 0
        self._opened = False
        self._stalled = False
        self.failures: list[Exception] = []
        self.dropped: list[str] = []

    def open(self, deadline: Deadline) -> None:
        with self._cond:
            self._open(self.context())

    def put(self, record: Record) -> None:
        with self._cond:
            if self.closed:
                raise self._closed_error()
            self._open(self.context())
        if record.kind is Kind.EVENT:
            self._raise_failures()
            return
        key = self.sink.key(record)
        if key is not None:
            self._submit(key, record)

    def flush(self, durable: bool, deadline: Deadline) -> None:
        self._drain(deadline)

    def checkpoint(self, deadline: Deadline, seal_to: Path | None = None) -> None:  # (it holds nothing to seal)
        pending = self._drain(deadline)
        if pending:
            self._say_once("checkpoint", "destination %r did not finish its uploads at a checkpoint: %s; they go on "
                                         "in the background", self.name, ", ".join(pending))
        self._raise_failures()

    def close(self, status: RunStatus, deadline: Deadline) -> None:
        with self._cond:
            if self.closed:
                return
            self.closed = True
            opened = self._opened
        if not opened:
            return
        limit = deadline.seconds(self.policy.timeout)
        pending = self._drain(deadline)
        with self._cond:
            self._cond.notify_all()  # idle workers end
        where = self.sink.location() or repr(self.name)
        try:
            if pending:
                self._abort(pending, deadline)
                raise TimeoutError(f"{len(pending)} upload(s) to {where} did not finish within {limit:.3g} s: "
                                   f"{', '.join(pending)}")
            if self.dropped:
                raise RuntimeError(f"{len(self.dropped)} artifact(s) were not uploaded to {where}: the upload queue "
                                   f"was full: {', '.join(self.dropped)}")
            self._raise_failures()
        finally:
            self.sink.close(status)

    def pending(self) -> list[str]:
        """Keys waiting or uploading."""
        with self._cond:
            return sorted({*self._waiting, *self._running})

    def forget(self) -> None:
        super().forget()
        self._cond = threading.Condition()  # a parent thread may have held it at the fork

    def report(self) -> dict[str, Any]:
        with self._cond:
            report = {"queued": len(self._waiting) + len(self._running), "peak_queued": self.counts.peak,
                      "uploaded": self.counts.delivered, "failed": len(self.failures), "dropped": len(self.dropped),
                      "waits": self.counts.waits, "blocked_seconds": self.counts.blocked_seconds}
        return {**report, **super().report()}

    # -- internals ---------------------------------------------------------------------------

    def _open(self, context: SinkContext) -> None:
        """With the condition held."""
        if not self._opened:
            self._opened = True
            self.sink.open(context)

    def _submit(self, key: str, record: Record) -> None:
        with self._cond:
            if not record.payload.overwrite and (key in self._waiting or key in self._running):
                raise FileExistsError(f"{key} is already being uploaded and overwrite is False")
            if key not in self._waiting and not self._admit():
                self.dropped.append(key)
                self._say_once(f"dropped {key}", "%s: the upload queue to %s is full; artifact %r is not uploaded",
                               type(self.destination).__name__, self.sink.location() or repr(self.name),
                               record.payload.name)
                return
            self._waiting.pop(key, None)  # an older version waiting gives way (its staged copy goes with it)
            self._waiting[key] = record
            if self._threads < min(self._workers, len(self._waiting) + len(self._running)):
                self._threads += 1
                workers.start(self.name, self._work)
            self.counts.peak = max(self.counts.peak, len(self._waiting) + len(self._running))
            self._cond.notify()

    def _admit(self) -> bool:
        """With the condition held: whether one more key fits, waiting for room with ``block``."""
        policy, size = self.policy, lambda: len(self._waiting) + len(self._running)
        if size() >= policy.queue_size and policy.when_full == "block" and not self._stalled:
            started = time.monotonic()
            room = self._cond.wait_for(lambda: size() < policy.queue_size, policy.timeout)
            self.counts.waits += 1
            self.counts.blocked_seconds += time.monotonic() - started
            self._stalled = not room
        return size() < policy.queue_size

    def _abort(self, keys: list[str], deadline: Deadline) -> None:
        """Have the sink undo what the unfinished uploads left half done, within what the deadline
        leaves (at most `ABORT_SECONDS`: the back end that did not finish them may not answer this either)."""
        try:
            workers.run_bounded(f"{self.name} aborting unfinished uploads", lambda: self.sink.abort(keys),  # type: ignore[attr-defined]
                                deadline.seconds(ABORT_SECONDS))
        except Exception as error:  # noqa: BLE001 - said; the close goes on
            self._say_once("abort", "destination %r could not abort its unfinished uploads: %s: %s", self.name,
                           type(error).__name__, error)

    def _drain(self, deadline: Deadline) -> list[str]:
        """Wait until nothing waits or uploads (at most the deadline and the timeout); what still does."""
        with self._cond:
            self._cond.wait_for(lambda: not self._waiting and not self._running, deadline.seconds(self.policy.timeout))
            return sorted({*self._waiting, *self._running})

    def _raise_failures(self) -> None:
        """From the first failed upload on, raise the latest (the Logger raises each distinct one once)."""
        with self._cond:
            failures = list(self.failures)
        if failures:
            latest = failures[-1]
            so_far = f" ({len(failures)} failed uploads so far)" if len(failures) > 1 else ""
            raise RuntimeError(f"artifact upload failed: {type(latest).__name__}: {latest}{so_far}") from latest

    def _work(self) -> None:
        while True:
            with self._cond:
                key = self._next()
                while key is None:
                    if self.closed and not self._waiting:
                        self._threads -= 1
                        return
                    self._cond.wait()
                    key = self._next()
                record = self._waiting.pop(key)
                self._running.add(key)
            try:
                self.sink.write([record])
            except Exception as error:  # noqa: BLE001 - raised on a logging thread
                with self._cond:
                    self.failures.append(error)
            else:
                with self._cond:
                    self.counts.delivered += 1
            finally:
                del record
                with self._cond:
                    self._running.discard(key)
                    self._stalled = False
                    self._cond.notify_all()

    def _next(self) -> str | None:
        """The oldest waiting key with no upload in flight."""
        return next((key for key in self._waiting if key not in self._running), None)
