"""`ThreadChannel`: the calling thread only queues; one worker writes, in order, in batches.

The worker takes what waits when `WAKE_AT` records wait, at a flush point (the destination's
flush schedule, a barrier), or `LINGER` seconds after the first record arrived, whichever comes
first, and hands it to the sink in one `Sink.write` per run of records. Everything the sink
does (open, write, flush, close) happens on that worker, in the order of the calls.

Bounds, all from the destination's `DeliveryPolicy`:

* at most ``queue_size`` records wait; one more waits for room (``block``, at most ``timeout``)
  or is let go (``drop``) to the spool or counted lost (``undelivered``);
* a barrier (INIT, a checkpoint, close) waits at most ``timeout`` (and the deadline it is
  given). A sink that does not answer in time is left behind: what waits for it is given up
  (spooled or counted lost), it is said once, and until the sink finishes something again no
  later wait for it waits at all: an outage costs one wait, not one per call or checkpoint;
* a remote sink's failed write keeps its records, to be sent again, first, with the next write or
  at the next flush point (a server that answered 503 has them still; a tracker whose steps must
  increase gets them in order); a local sink's failed write loses them, counted. A write that
  wrote what it could and refused the rest (`composer_cfg.core.sink.refuse`: a value the back
  end does not take) is never sent again: the refused records are counted failed.

A failure on the worker is kept and raised on a logging thread: at the next call (after that
call's record is queued, so it is not lost) or barrier.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from composer_cfg.core.record import Kind, Record
from composer_cfg.core.sink import SinkContext
from composer_cfg.core.status import RunStatus
from composer_cfg.runtime import workers
from composer_cfg.runtime.channel import Channel
from composer_cfg.runtime.deadline import Deadline
from composer_cfg.runtime.failures import KeptFailure

#: Records waiting that wake the worker (capped by the queue size).
WAKE_AT = 256
#: Seconds a record waits at most before the worker takes it, without a flush point.
LINGER = 1.0


class _Open(NamedTuple):
    context: SinkContext


class _Flush(NamedTuple):
    durable: bool


class _Close(NamedTuple):
    status: RunStatus


class _Held:
    """Held records released to the worker, read from the hold a chunk at a time; whatever a
    give-up leaves is taken by `rest` (from another thread: hence the lock)."""

    def __init__(self, chunks: Iterator[list[Record]]) -> None:
        self._chunks = chunks
        self._lock = threading.Lock()

    def next(self) -> list[Record] | None:
        with self._lock:
            return next(self._chunks, None)

    def rest(self) -> Iterator[list[Record]]:
        with self._lock:
            chunks, self._chunks = self._chunks, iter(())
        return chunks


class ThreadChannel(Channel):
    kind = "thread"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cond = threading.Condition()
        self._spool_lock = threading.Lock()  # spool writes and their counts; never held with the condition
        self._queue: deque[Any] = deque()  # records and markers, in order
        self._size = 0  # records waiting: in the queue, or taken by the worker and not yet given to the sink
        self._taken: deque[Any] = deque()  # what the worker took and has not handled yet
        self._sending: list[Record] = []  # the records inside `Sink.write` right now
        self._retry: list[Record] = []  # a remote sink's records a failed write left, for the next flush point
        self._draining: _Held | None = None  # the held records the worker is writing
        self._urgent = False  # a flush point or a barrier waits: take the queue now
        self._opening = False  # the sink's open is queued (or done)
        self._closing = False
        self._stalled = False  # a wait for the sink timed out and it has finished nothing since
        self._started = False  # the sink's open finished (a close need not wait for one that never did)
        self._abandoned = False  # close gave up on the worker: once the write it is in returns, it writes no more
        self._worker: threading.Thread | None = None
        self._finished = threading.Event()  # the worker closed the sink
        self._kept = KeptFailure()
        self._wake_at = min(WAKE_AT, self.policy.queue_size)

    # -- the logging threads -----------------------------------------------------------------

    def open(self, deadline: Deadline) -> None:
        with self._cond:
            self._open(self.context())
        if not self._barrier(None, deadline):
            raise TimeoutError(f"destination {self._where()} did not start within {self._limit(deadline):.3g} s "
                               f"(its back end did not answer)")
        self._kept.raise_kept()

    def put(self, record: Record) -> None:
        let_go = None
        with self._cond:
            if self._closing:
                raise self._closed_error()
            if not self._opening:
                self._open(self.context())
            if self._held(record):
                return
            if record.kind is Kind.EVENT:
                self._put_event(record)
            elif self._admit():
                self._append(record)
            elif self._closing:  # close started while this call waited for room: refused, as after close
                raise self._closed_error()
            else:
                let_go = record
        if let_go is not None:
            self._give([let_go])
        if self._kept.pending:
            self._kept.raise_kept()
        if self._refuses is not None:
            self._check(record)

    def flush(self, durable: bool, deadline: Deadline) -> None:
        if self._barrier(_Flush(durable), deadline):
            self._kept.raise_kept()

    def checkpoint(self, deadline: Deadline, seal_to: Path | None = None) -> None:
        try:
            self._checkpoint_barrier(deadline)
        finally:  # whatever the flush did: a mark may follow all the same (a failure said before is not raised again)
            with self._cond:
                self._seal(seal_to)

    def release(self, deadline: Deadline) -> None:
        with self._cond:
            self._queue.append(_Held(self._take_sealed()))
            self._wake(urgent=True)
        try:
            self._checkpoint_barrier(deadline)
        finally:
            self._settle_sealed()

    def _checkpoint_barrier(self, deadline: Deadline) -> None:
        """Everything queued so far written and flushed durably: at most the deadline and the
        policy's timeout, after which what waits is given up (and said once); a kept failure raised."""
        if not self._barrier(_Flush(True), deadline):
            given = self._give_up()
            self._say_once("checkpoint", "destination %s did not finish writing within %.3g s at a checkpoint; "
                                         "%d record(s) it had not taken were given up (%s) and training goes on",
                           self._where(), self._limit(deadline), given, self.policy.undelivered)
            return
        self._kept.raise_kept()

    def _settle_sealed(self) -> None:
        """After a barrier or close: the sealed files given to the sink go, as their records were
        delivered or given up (spooled, or dropped as the policy says), unless some wait to be sent
        again (a remote write that failed) or could not be spooled: then a next attempt needs them."""
        with self._cond:
            needed = bool(self._retry) or bool(self.counts.spool_errors)
        if not needed:
            self._remove_delivered()

    def close(self, status: RunStatus, deadline: Deadline) -> None:
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._release(status)
            if not self._opening and not self.sink.open_at_close:  # never opened: nothing to close
                self.closed = True
                return
            self._open(self.context())
            self._queue.append(_Close(status))
            self._wake()
            never_started = self._stalled and not self._started
        # a sink that never started: no second wait; the sink itself closing its Logger: nothing to wait for
        limit = 0.0 if never_started or self._on_worker() else self._limit(deadline)
        interrupted = None
        try:
            finished = self._finished.wait(limit)
        except KeyboardInterrupt as error:  # Ctrl-C while the sink catches up: it stops catching up
            interrupted, finished = error, self._hurry(limit)
        self.closed = True
        given = self._give_up(abandon=not finished)  # unfinished: all that waits; else what a failed write left
        if not finished:
            self._say_once("close", "destination %s did not finish closing within %.3g s; %d record(s) it had "
                                    "not taken were given up (%s)", self._where(), limit, given,
                           self.policy.undelivered)
        self._settle_sealed()
        with self._spool_lock:
            self._settle_spool()
        if interrupted is None:
            self._kept.raise_kept()
        self._say_undelivered()
        if interrupted is not None:
            raise interrupted

    def _hurry(self, limit: float | None) -> bool:
        """Interrupted while closing: as if its wait had timed out, what the sink has not taken is
        given up now (spooled or dropped, counted, said once), but the sink still closes, once the
        call it is in returns (at most `limit`; a second Ctrl-C stops that wait). Whether it closed."""
        given = self._give_up()
        self._say_once("interrupted", "destination %s: interrupted while closing; %d record(s) it had not taken were "
                                      "given up (%s)", self._where(), given, self.policy.undelivered)
        try:
            return self._finished.wait(limit)
        except KeyboardInterrupt:
            return False

    def post_close(self, closed_cleanly: bool) -> None:
        if self._finished.is_set():  # a worker still inside the sink keeps it
            super().post_close(closed_cleanly)

    def report(self) -> dict[str, Any]:
        counts = self.counts
        report: dict[str, Any] = {"queued": self._size + len(self._retry), "peak_queued": counts.peak,
                                  "delivered": counts.delivered, "spooled": counts.spooled, "dropped": counts.dropped,
                                  "failed": counts.failed, "in_doubt": counts.in_doubt, "waits": counts.waits,
                                  "blocked_seconds": counts.blocked_seconds}
        if self._spool is not None:
            report["spool"] = str(self._spool.path)
        if counts.spool_errors:
            report["spool_errors"] = list(counts.spool_errors)
        return {**report, **super().report()}

    def forget(self) -> None:
        super().forget()
        self._cond = threading.Condition()  # a parent thread may have held it at the fork
        self._closing = self._abandoned = True
        self._queue, self._taken = deque(), deque()

    # -- with the condition held -------------------------------------------------------------

    def _open(self, context: SinkContext) -> None:
        if not self._opening:
            self._opening = True
            resent = self._resent(context)
            if resent is not None:  # written first, before anything this attempt logs
                self._queue.appendleft(_Held(resent))
            self._queue.appendleft(_Open(context))
            self._wake()

    def _put_event(self, record: Record) -> None:
        if record.payload.event in self.events:
            self._append(record)
        if self._flush_due(record):
            self._queue.append(_Flush(True))
            self._wake()

    def _release(self, status: RunStatus) -> None:
        """At close, queue the held records to write (`Channel._release_hold`): the worker reads
        them a chunk at a time, so a long hold never comes back into memory at once."""
        if self._hold is not None:
            self._queue.append(_Held(self._release_hold(status)))
            self._wake(urgent=True)

    def _append(self, record: Record) -> None:
        self._queue.append(record)
        self._size += 1
        if self._size > self.counts.peak:
            self.counts.peak = self._size
        if self._size == 1 or self._size >= self._wake_at:
            self._wake()

    def _admit(self) -> bool:
        """Whether one more record may wait: at once when there is room; else, with ``block``,
        after waiting for room (once per outage, never on the worker itself)."""
        policy = self.policy
        if self._size + len(self._retry) < policy.queue_size:
            return True
        self._wake()  # a full queue is a flush point
        if policy.when_full == "block" and not self._stalled and not self._on_worker():
            started = time.monotonic()
            room = self._cond.wait_for(lambda: self._size + len(self._retry) < policy.queue_size or self._closing,
                                       policy.timeout)
            self.counts.waits += 1
            self.counts.blocked_seconds += time.monotonic() - started
            self._stalled = not room
        return self._size + len(self._retry) < policy.queue_size and not self._closing

    def _wake(self, urgent: bool = False) -> None:
        self._urgent = self._urgent or urgent
        if self._worker is None:
            self._worker = workers.start(self.name, self._work)
        self._cond.notify_all()

    # -- barriers ----------------------------------------------------------------------------

    def _limit(self, deadline: Deadline) -> float | None:
        return deadline.seconds(self.policy.timeout)

    def _barrier(self, marker: Any, deadline: Deadline) -> bool:
        """Queue `marker` and wait until the worker has handled everything before it (at most the
        deadline and the policy's timeout; not at all while the sink is stalled). True when done."""
        done = threading.Event()
        with self._cond:
            if self._closing or not self._opening:
                return True
            if marker is not None:
                self._queue.append(marker)
            self._queue.append(done)
            self._urgent = True
            self._wake()
            stalled = self._stalled
        if self._on_worker():
            return False  # the sink itself asked: what it waits for comes after it
        if done.wait(0.0 if stalled else self._limit(deadline)):
            return True
        with self._cond:
            self._stalled = True
        return False

    def _give_up(self, abandon: bool = False) -> int:
        """Let go of everything waiting (and, in doubt, what the sink is being given); with
        `abandon`, the worker writes no more once the write it is in returns (that one may still
        finish: its records are given up in doubt). How many records."""
        with self._cond:
            sending = self._sending
            waiting = [item for item in (*self._retry, *self._taken, *self._queue) if isinstance(item, Record)]
            held = [item for item in (self._draining, *self._taken, *self._queue) if isinstance(item, _Held)]
            self._retry, self._sending = [], []
            self._queue = deque(item for item in self._queue if not isinstance(item, (Record, _Held)))
            self._taken = deque(item for item in self._taken if not isinstance(item, (Record, _Held)))
            self._size = 0
            self._abandoned = self._abandoned or abandon
            self._cond.notify_all()
        given = [*sending, *waiting]
        self._give(given, in_doubt=len(sending))
        count = len(given)
        for marker in held:  # (a sync sends a spool in step order, whatever its order in the file)
            for chunk in marker.rest():
                self._give(chunk)
                count += len(chunk)
        return count

    def _give(self, records: list[Record], in_doubt: int = 0) -> None:
        with self._spool_lock:
            self._let_go(records, in_doubt)

    def _on_worker(self) -> bool:
        worker = self._worker
        return worker is not None and worker.ident == threading.get_ident()

    # -- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._queue and not self._abandoned:
                    cond.wait()
                if not self._urgent and self._size < self._wake_at and not self._closing:
                    cond.wait_for(lambda: self._urgent or self._size >= self._wake_at or self._closing, LINGER)
                if self._abandoned:
                    return
                self._taken.extend(self._queue)
                self._queue.clear()
                self._urgent = False
            if self._handle_taken():
                return

    def _handle_taken(self) -> bool:
        """Handle what was taken, in order; True once the sink is closed (the worker ends)."""
        while True:
            with self._cond:
                if self._abandoned or not self._taken:
                    return self._abandoned
                item = self._taken.popleft()
                if isinstance(item, Record):
                    batch = [*self._retry, item]  # what a failed write left goes first: order is kept
                    self._size += len(self._retry)
                    self._retry = []
                    while self._taken and isinstance(self._taken[0], Record):
                        batch.append(self._taken.popleft())
                    self._sending = batch
            if isinstance(item, Record):
                self._write(batch)
            elif self._handle(item):
                return True

    def _write(self, records: list[Record]) -> None:
        """`Sink.write`; what became of the records is counted unless they were given up meanwhile
        (`_give_up` took them, in doubt, from `_sending`)."""
        try:
            self.sink.write(records)
        except Exception as error:  # noqa: BLE001 - raised on a logging thread
            self._kept.keep(error)
            with self._cond:
                if self._sending is not records:
                    return
                self._sending = []
                self._size -= len(records)
                self._cond.notify_all()  # room for threads waiting to queue
                refused = getattr(error, "refused_records", None)  # `Sink.write` wrote the others: `refuse`
                if self.destination.remote and refused is None:
                    self._retry.extend(records)  # the request failed: sent again at the next flush point
                else:  # what the back end refused would be refused again: counted, never resent
                    counted = sum(1 for record in records if record.kind is not Kind.EVENT)
                    refused = counted if refused is None else min(refused, counted)
                    self.counts.failed += refused
                    self.counts.delivered += counted - refused
            return
        with self._cond:
            self._stalled = False  # the sink took something (even what was given up meanwhile): waiting is worth it again
            if self._sending is records:
                self._sending = []
                self._size -= len(records)
                self.counts.delivered += sum(1 for record in records if record.kind is not Kind.EVENT)
                self._cond.notify_all()

    def _handle(self, marker: Any) -> bool:
        """A marker: open, flush, a barrier's signal or close; True once the sink is closed."""
        if isinstance(marker, threading.Event):
            marker.set()
            return False
        if isinstance(marker, _Held):
            self._write_held(marker)
            return False
        try:
            if isinstance(marker, _Open):
                self.sink.open(marker.context)
                with self._cond:
                    self._started, self._stalled = True, False
            elif isinstance(marker, _Flush):
                self._resend()
                self.sink.flush(marker.durable)
            elif isinstance(marker, _Close):
                self._resend()
                self.sink.close(marker.status)
        except Exception as error:  # noqa: BLE001 - raised on a logging thread
            self._kept.keep(error)
        if isinstance(marker, _Close):
            self._finished.set()
            return True
        return False

    def _write_held(self, held: _Held) -> None:
        with self._cond:
            self._draining = held
        try:
            while (chunk := held.next()) is not None:
                with self._cond:
                    if self._abandoned:
                        return
                    self._size += len(chunk)  # waiting, until this write says what became of them
                    self._sending = chunk
                self._write(chunk)
        finally:
            with self._cond:
                self._draining = None

    def _resend(self) -> None:
        with self._cond:
            retry, self._retry = self._retry, []
            self._sending = retry
            self._size += len(retry)  # waiting again, until this write says what became of them
        if retry:
            self._write(retry)
