"""`DeliveryQueue`: the records a remote destination has not delivered yet: bounded, counted, and
kept in a local spool when they can not be delivered.

A remote destination (a tracker) puts each logged call on its queue from the training thread
and sends the queue from a background thread. Its `DeliveryPolicy` says what happens when the
back end does not keep up:

* ``queue_size``: records that may wait in memory.
* ``when_full``: ``drop`` (the new record leaves at once, never waiting) or ``block`` (the
  logging thread waits for room, at most ``block_seconds``; after one wait that timed out it no
  longer waits until a delivery succeeds, so an outage costs one wait, not one per call).
* ``undelivered``: what becomes of a record that leaves that way, or that is still waiting when
  the destination gives up at close: ``spool`` (appended to
  ``{run_name}/undelivered-<destination>-rank<rank>.jsonl``, a JSON Lines records file that
  ``composer-cfg-sync`` delivers later into the same tracker run) or ``drop`` (counted, lost).

Nothing leaves silently: `report` gives the counts, the destination says them at close, and the
Logger writes them to the run manifest.

>>> from composer_cfg.core.log_level import LogLevel
>>> from composer_cfg.core.timestamp import Timestamp
>>> queue = DeliveryQueue("docs", DeliveryPolicy(queue_size=1, when_full="drop", undelivered="drop"))
>>> for batch in (1, 2):
...     queue.put(Record(LogLevel.BATCH, Timestamp(batch=batch), 0.0, {"loss": 0.5}))
>>> [record.timestamp.batch for record in queue.waiting()], queue.report()["dropped"]
([1], 1)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from composer_cfg.background import BackgroundWorker, KeptFailure, budget
from composer_cfg.core.log_level import LogLevel
from composer_cfg.manifest import manifest_path, read_manifest, write_manifest
from composer_cfg.config.params import POSITIVE_INT, UNDELIVERED, WHEN_FULL
from composer_cfg.run.records import record_line
from composer_cfg.core.timestamp import Timestamp

LOG = logging.getLogger("composer_cfg")


class DeliveryPolicy(NamedTuple):
    """How a remote destination's queue behaves when its back end does not keep up (see above)."""

    queue_size: int = 10_000
    when_full: str = "drop"
    undelivered: str = "spool"
    block_seconds: float = 30.0

    @classmethod
    def checked(cls, queue_size: Any, when_full: Any, undelivered: Any, block_seconds: float) -> DeliveryPolicy:
        """The policy, each value checked as the config validator checks it (`ConfigError` naming its key)."""
        return cls(POSITIVE_INT.check("queue_size", queue_size), WHEN_FULL.check("when_full", when_full),
                   UNDELIVERED.check("undelivered", undelivered), block_seconds)


@dataclass(frozen=True)
class Record:
    """One logged call as a remote destination keeps it until it is delivered."""

    level: LogLevel
    timestamp: Timestamp
    time: float  # wall-clock seconds of the call
    data: dict[str, Any]


class Spool:
    """Records a destination could not deliver, appended as JSON Lines beside the run's manifest.

    Its entry in the manifest names the destination the file belongs to and the identity of its
    tracker run (as soon as there is one: `close` records it if the first write came before),
    so that ``composer-cfg-sync`` sends the file to that destination alone and adds to that run.
    Each write reaches the OS before it returns (it survives the process); `close` fsyncs.
    """

    def __init__(self, destination: str, run_name: str, rank: int, identity: Callable[[], dict[str, Any]]) -> None:
        directory = Path(run_name).absolute()
        self.path = directory / f"undelivered-{destination}-rank{rank}.jsonl"
        self._manifest = manifest_path(directory, rank)
        self._destination = destination
        self._header = (json.dumps(run_name), rank)
        self._identity = identity
        self._identified = False  # the manifest names the tracker run
        self._file: IO[str] | None = None

    def write(self, records: Sequence[Record]) -> None:
        """Append `records`, flushed to the OS before returning."""
        run_name, rank = self._header
        text = "".join(record_line(r.level, run_name, rank, r.timestamp, r.time, r.data) for r in records)
        if self._file is None:
            self._register()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open until close
        self._file.write(text)
        self._file.flush()

    def close(self) -> None:
        """Fsync and close the file; record the tracker run's identity if it was not known before."""
        if self._file is None:
            return
        try:
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
        if not self._identified:
            self._register()

    def _register(self) -> None:
        manifest = read_manifest(self._manifest)
        manifest.setdefault("spools", {})[self.path.name] = self._destination
        entry = manifest.setdefault("sync", {}).setdefault(self.path.name, {}).setdefault(self._destination, {})
        identity = self._identity()
        if identity and not entry.get("identity"):
            entry["identity"] = identity
        self._identified = bool(entry.get("identity"))
        write_manifest(self._manifest, manifest)


class Admission:
    """The `when_full` half of a `DeliveryPolicy`, for any queue guarded by a `Condition`: whether
    one more item may wait, waiting for room (``block``) at most ``block_seconds``, and once per
    outage: after a wait that timed out, none until the back end takes something again.

    >>> queue, cond = [1, 2], threading.Condition()
    >>> admission = Admission(DeliveryPolicy(queue_size=2, when_full="drop"), cond)
    >>> with cond:
    ...     admission.admit(lambda: len(queue))
    False
    """

    def __init__(self, policy: DeliveryPolicy, cond: threading.Condition) -> None:
        self.policy = policy
        self._cond = cond
        self._stalled = False  # a wait for room timed out and nothing was taken since
        self.waits = 0
        self.blocked_seconds = 0.0

    def admit(self, size: Callable[[], int]) -> bool:
        """With the condition's lock held: whether one more item fits, `size` being how many wait."""
        policy = self.policy
        if size() >= policy.queue_size and policy.when_full == "block" and not self._stalled:
            started = time.monotonic()
            room = self._cond.wait_for(lambda: size() < policy.queue_size, budget(policy.block_seconds))
            self.waits += 1
            self.blocked_seconds += time.monotonic() - started
            self._stalled = not room
        return size() < policy.queue_size

    def taken(self) -> None:
        """With the lock held: the back end took something; room may follow, and waiting is worth it again."""
        self._stalled = False
        self._cond.notify_all()


@dataclass
class _Counts:
    delivered: int = 0
    spooled: int = 0
    dropped: int = 0
    in_doubt: int = 0
    peak: int = 0
    spool_errors: list[str] = field(default_factory=list)


class DeliveryQueue:
    """Records waiting for delivery, oldest first, under a `DeliveryPolicy`.

    The logging thread calls `put`; the delivering thread reads `waiting` and, once the back end
    has taken the first n, calls `delivered(n)`. `give_up` empties the queue into the spool (or
    drops it). Thread-safe.
    """

    def __init__(self, what: str, policy: DeliveryPolicy, spool: Callable[[], Spool | None] | None = None,
                 on_full: Callable[[], None] | None = None) -> None:
        self.what = what
        self.policy = policy
        self._spool_factory = spool
        self._on_full = on_full
        self._spool: Spool | None = None
        self._spool_lock = threading.Lock()  # writing the spool never holds the queue
        self._records: list[Record] = []
        self._sending = 0  # of the oldest records, how many the back end is being sent
        self._cond = threading.Condition()
        self._admission = Admission(policy, self._cond)
        self._counts = _Counts()

    def __len__(self) -> int:
        return len(self._records)

    def put(self, record: Record) -> None:
        """Queue `record`; when the queue is full, have it delivered (`on_full`), and wait or let
        the record go as the policy says."""
        if len(self._records) >= self.policy.queue_size and self._on_full is not None:
            self._on_full()  # a full queue is a flush point: the back end may simply not have been asked
        with self._cond:
            if self._admission.admit(self._records.__len__):
                self._records.append(record)
                self._counts.peak = max(self._counts.peak, len(self._records))
                return
        self._let_go([record])

    def waiting(self, limit: int | None = None) -> list[Record]:
        """The oldest `limit` records waiting (all of them by default), still in the queue: the
        back end is being sent them until `delivered`."""
        with self._cond:
            waiting = self._records[:limit]
            self._sending = len(waiting)
            return waiting

    def delivered(self, count: int) -> None:
        """The back end has the `count` oldest records: they leave the queue."""
        with self._cond:
            count = min(count, len(self._records))  # those given up meanwhile count as given up
            del self._records[:count]
            self._counts.delivered += count
            self._sending = 0
            self._admission.taken()

    def give_up(self, first: Sequence[Record] = ()) -> int:
        """Let `first` and then every waiting record go (to the spool, or dropped); return how many."""
        with self._cond:
            self._counts.in_doubt += min(self._sending, len(self._records))
            records, self._records, self._sending = [*first, *self._records], [], 0
            self._cond.notify_all()
        if records:
            self._let_go(records)
        return len(records)

    def report(self) -> dict[str, Any]:
        """What became of the records so far: ``queued`` (waiting now), ``peak_queued``,
        ``delivered``, ``spooled``, ``dropped``, ``in_doubt`` (of those spooled or dropped, how
        many were being sent when they were given up: the back end may have them too),
        ``waits`` and ``blocked_seconds`` (the logging threads' waits for room: how many, how
        long in all), and ``spool`` (the spool file, when there is one). Every record put is
        queued, delivered, spooled or dropped (and so is each record `give_up` is handed)."""
        counts, admission = self._counts, self._admission
        report: dict[str, Any] = {"queued": len(self._records), "peak_queued": counts.peak,
                                  "delivered": counts.delivered, "spooled": counts.spooled, "dropped": counts.dropped,
                                  "in_doubt": counts.in_doubt, "waits": admission.waits,
                                  "blocked_seconds": admission.blocked_seconds}
        if self._spool is not None:
            report["spool"] = str(self._spool.path)
        if counts.spool_errors:
            report["spool_errors"] = list(counts.spool_errors)
        return report

    def summary(self) -> str | None:
        """One sentence on what was not delivered, for the end of the run; None when nothing."""
        counts = self._counts
        parts = []
        if counts.spooled:
            parts.append(f"{counts.spooled} record(s) were not delivered to {self.what} and wait in "
                         f"{self._spool.path if self._spool else 'the spool'}: `composer-cfg-sync <run dir> --to "
                         f"<destination>` delivers them")
        if counts.dropped:
            why = f" (spool failed: {counts.spool_errors[-1]})" if counts.spool_errors else ""
            parts.append(f"{counts.dropped} record(s) were not delivered to {self.what} and are lost{why}")
        return "; ".join(parts) or None

    def settle(self, first: Sequence[Record] = ()) -> None:
        """At the end: `give_up` (`first`, then what waits), then say it: a warning naming the
        spool when everything left was spooled, a `RuntimeError` when records were lost."""
        self.give_up(first)
        with self._spool_lock:
            if self._spool is not None:
                try:
                    self._spool.close()
                except OSError as error:  # its records reached the OS; only the fsync failed
                    self._counts.spool_errors.append(f"{type(error).__name__}: {error}")
        summary = self.summary()
        if summary and self._counts.dropped:
            raise RuntimeError(summary)
        if summary:
            LOG.warning("%s", summary)

    def _let_go(self, records: list[Record]) -> None:
        with self._spool_lock:  # one writer of the spool and of these counts at a time
            if self.policy.undelivered == "spool":
                try:
                    if self._spool is None and self._spool_factory is not None:
                        self._spool = self._spool_factory()
                    if self._spool is None:
                        raise RuntimeError("no spool: the run's name is not known yet")
                    self._spool.write(records)
                    self._counts.spooled += len(records)
                    return
                except Exception as error:  # noqa: BLE001 - a full disk: the records are counted lost, and why
                    self._counts.spool_errors.append(f"{type(error).__name__}: {error}")
            self._counts.dropped += len(records)


class Courier:
    """A remote destination's requests, run in order on one background thread: deliveries of its
    `DeliveryQueue` (at most one queued or running at a time) and any other request (starting a
    run, an upload). A request that fails is kept, to be raised on a logging thread
    (`raise_failure`) rather than lost on the worker.

    `send` delivers some of what waits and returns whether it sent anything; `pending` says
    whether anything waits. A delivery sends until nothing does. Closing may take `timeout`
    seconds in all (`time_left`).
    """

    def __init__(self, name: str, send: Callable[[], bool], pending: Callable[[], bool], timeout: float) -> None:
        self.worker = BackgroundWorker(name)
        self.timeout = timeout
        self._send = send
        self._pending = pending
        self._lock = threading.Lock()
        self._delivering = False
        self._failure = KeptFailure()
        #: The request queued last: once it is done, every earlier one is.
        self.last_request: Future[Any] | None = None
        self._close_by: float | None = None  # time.monotonic() by which closing must be done

    def start_closing(self) -> None:
        """Closing starts now and may take `timeout` seconds in all (see `time_left`)."""
        self._close_by = time.monotonic() + self.timeout

    def time_left(self, reserve: float = 0.0) -> float:
        """Seconds left for closing, keeping `reserve` of them for later (the clock starts at
        `start_closing`, or now)."""
        if self._close_by is None:
            self.start_closing()
        return max(0.0, self._close_by - reserve - time.monotonic())  # type: ignore[operator]

    def request(self, call: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `call(*args)` on the worker; a failure is kept for `raise_failure`."""
        future = self.worker.submit(call, *args)
        future.add_done_callback(self._remember_failure)
        self.last_request = future
        return future

    def deliver_soon(self) -> None:
        """Queue a delivery, unless one is queued or running (it will send what waits now too)."""
        with self._lock:
            if self._delivering or not self._pending():
                return
            self._delivering = True
        self.request(self._deliver)

    def wait(self, timeout: float | None) -> None:
        """Wait until every request queued so far is done, at most `timeout` seconds (its failure is
        kept for `raise_failure`)."""
        request = self.last_request
        if request is not None:
            futures.wait([request], timeout)

    def raise_failure(self) -> None:
        """Raise the first request failure since the last call, if any."""
        self._failure.raise_kept()

    def _deliver(self) -> None:
        try:
            while True:
                if not self._send():
                    with self._lock:  # with deliver_soon's lock: a record queued now is not left behind
                        if not self._pending():
                            self._delivering = False
                            return
        except BaseException:
            with self._lock:
                self._delivering = False
            raise

    def _remember_failure(self, future: Future[Any]) -> None:
        error = future.exception()
        if error is not None:
            self._failure.keep(error)


class QueuedDelivery:
    """What a destination that delivers through a `DeliveryQueue` and a `Courier` shares: its
    report, waiting for its requests, and its spool. It sets `_queue`, `_courier`, `_name` (its
    name in the Logger) and `_where` (the run's name and rank, once started)."""

    _queue: DeliveryQueue
    _courier: Courier
    _name: str
    _where: tuple[str, int] | None

    run_identity: Callable[[], dict[str, Any]]  # the destination's (`LoggerDestination.run_identity`)

    def report(self) -> dict[str, Any]:
        """The delivery queue's counts (`DeliveryQueue.report`)."""
        return self._queue.report()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until the requests queued so far are done (at most `timeout` seconds); return how
        many logged calls are still queued."""
        self._courier.wait(timeout)
        return len(self._queue)

    def _spool(self) -> Spool | None:
        """The spool of this run and rank, once the run has started."""
        return None if self._where is None else Spool(self._name, *self._where, identity=self.run_identity)
