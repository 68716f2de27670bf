"""`Channel`: the one place for everything between the `Logger` and a destination's sink.

The Logger hands each record to one channel per destination (`put`) and synchronises with it at
barriers only: `open` (INIT), `flush`, `checkpoint` and `close`, each bounded by a `Deadline`.
Three kinds share this base:

* `composer_cfg.runtime.inline_channel.InlineChannel`: the sink writes on the calling thread,
  under the channel's lock (a reader sees the record the moment the call returns);
* `composer_cfg.runtime.thread_channel.ThreadChannel`: the calling thread only queues; one worker
  writes in order, in batches; the queue is bounded, and what can not be delivered is spooled or
  dropped as the destination's `DeliveryPolicy` says;
* `composer_cfg.runtime.keyed_channel.KeyedChannel`: artifacts, the newest version of each name
  winning, on several workers.

What every kind does the same way lives here: the flush schedule applied after events, the hold
of a resumable run's tracker data until the next checkpoint (`Hold`), the spool, the counts of
what became of each record, and what is said once.

A checkpoint has two phases (`composer_cfg.runtime.dispatch.Dispatch.checkpoint`): `checkpoint`
makes everything the channel was given durable and seals what it holds in a file (`sealed`);
once the run's mark names that file (`marked`), `release` delivers it, and the file is removed
once the sink has all of it. A kill before that leaves the file to the next attempt, whose
channel delivers it again first, when it opens (MLflow keeps one copy of an identical point).
Sealed records no mark names yet are held records like the others: at a close that is not
FINISHED they are withdrawn, and their file is left to the next attempt, which sends it if the
mark names it after all, and removes it if not.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from composer_cfg.core.events import Event
from composer_cfg.core.record import Kind, Record
from composer_cfg.core.sink import Policies, Sink, SinkContext
from composer_cfg.core.status import RunStatus
from composer_cfg.run.spool import Spool
from composer_cfg.runtime.deadline import Deadline
from composer_cfg.runtime.failures import FailureLedger

LOG = logging.getLogger("composer_cfg")
SpoolFactory = Callable[[], Spool]
#: Records a `Hold` keeps in memory, and bytes of their images and tables; past either they wait on disk.
HELD_IN_MEMORY = 10_000
HELD_BYTES_IN_MEMORY = 64 * 2**20
#: Held records written in one go when released (what a release has in memory at once).
HELD_CHUNK = 256
#: The kinds of record that are points of a series (a step on a tracker's x-axis): held until
#: checkpoints, and checked against what the destination refuses.
_POINTS = frozenset({Kind.DATA, Kind.MEDIA})


@dataclass
class Counts:
    """What became of a channel's records so far (every record put is queued, held, delivered,
    spooled, dropped, failed (lost to a write that failed, its failure raised) or withdrawn (held
    when the run ended without finishing: its next attempt logs them again))."""

    delivered: int = 0
    spooled: int = 0
    dropped: int = 0
    failed: int = 0
    withdrawn: int = 0
    in_doubt: int = 0  # of those spooled or dropped, how many were being written when they were given up
    peak: int = 0
    waits: int = 0  # waits of logging threads for room
    blocked_seconds: float = 0.0
    spool_errors: list[str] = field(default_factory=list)


def _pickled(record: Record) -> bytes:
    """`record` for the hold's file; a value pickle refuses is kept as its text (what a tracker, the
    only kind of destination that holds, would make of it anyway)."""
    try:
        return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - a value of a class pickle can not name
        payload = {key: value if _picklable(value) else str(value) for key, value in record.payload.items()}
        return pickle.dumps(record._replace(payload=payload), protocol=pickle.HIGHEST_PROTOCOL)


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001
        return False
    return True


class Hold:
    """Data and media records waiting for the next checkpoint, in order; past `limit` records (or
    `HELD_BYTES_IN_MEMORY` of media) in memory they wait in an anonymous temporary file (gone with
    the process, whatever ends it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._bytes = 0  # of the media held in memory
        self._records: list[Record] = []
        self._spilled: IO[bytes] | None = None
        self._spilled_count = 0

    def __len__(self) -> int:
        return len(self._records) + self._spilled_count

    def add(self, record: Record) -> None:
        self._records.append(record)
        if record.kind is Kind.MEDIA:
            self._bytes += record.payload.nbytes()
        if len(self._records) >= self.limit or self._bytes >= HELD_BYTES_IN_MEMORY:
            self._bytes = 0
            if self._spilled is None:
                self._spilled = tempfile.TemporaryFile(prefix="composer_cfg-held-")  # noqa: SIM115 - kept until taken
            records, self._records = self._records, []
            for index, held in enumerate(records):
                try:
                    self._spilled.write(_pickled(held))
                except BaseException:  # a full disk: what is not written stays in memory, in order
                    self._records = records[index:]
                    raise
                self._spilled_count += 1

    def take(self, size: int) -> Iterator[list[Record]]:
        """Every held record, oldest first, in lists of at most `size` (so that no more than that
        is in memory at once); the hold is empty afterwards."""
        spilled, count, records = self._spilled, self._spilled_count, self._records
        self._spilled, self._spilled_count, self._records, self._bytes = None, 0, [], 0
        if spilled is not None:
            with spilled:
                spilled.seek(0)
                while count:
                    chunk = [pickle.load(spilled) for _ in range(min(size, count))]  # noqa: S301 - our own file
                    count -= len(chunk)
                    yield chunk
        for start in range(0, len(records), size):
            yield records[start:start + size]

    def seal(self, path: Path, before: Path | None = None) -> None:
        """Write every held record, oldest first, into a new file at `path`, on disk when this
        returns (after those of the file `before`, an earlier seal not yet released, which is then
        removed); the hold is empty afterwards. On a failure (a full disk) the hold is unchanged
        and no file is left at `path`."""
        try:
            with open(path, "xb") as file:
                if before is not None:
                    with open(before, "rb") as earlier:
                        shutil.copyfileobj(earlier, file)
                if self._spilled is not None:
                    self._spilled.seek(0)
                    shutil.copyfileobj(self._spilled, file)
                    self._spilled.seek(0, os.SEEK_END)
                for record in self._records:
                    file.write(_pickled(record))
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self.drop()
        if before is not None:
            before.unlink(missing_ok=True)

    def drop(self) -> int:
        """Forget every held record; how many there were."""
        count = len(self)
        if self._spilled is not None:
            self._spilled.close()
        self._spilled, self._spilled_count, self._records, self._bytes = None, 0, [], 0
        return count


def read_held(path: Path, size: int) -> Iterator[list[Record]]:
    """The records a `Hold` sealed in `path`, oldest first, in lists of at most `size`. A file
    that can not be read (damaged, gone, a value whose class is gone) gives the records before
    the damage, and a warning says so."""
    chunk: list[Record] = []
    count = 0
    try:
        with open(path, "rb") as file:
            while True:
                try:
                    chunk.append(pickle.load(file))  # noqa: S301 - our own file
                except EOFError:
                    break
                count += 1
                if len(chunk) == size:
                    yield chunk
                    chunk = []
    except Exception as error:  # noqa: BLE001 - a record that can not be read is never delivered
        LOG.warning("%s: the records after the first %d could not be read (%s: %s); they are not delivered",
                    path, count, type(error).__name__, error)
    if chunk:
        yield chunk


class Channel:
    """The base of the three kinds (see the module's docstring).

    `context` makes the `SinkContext` when the sink opens without INIT (at the first record);
    `spool` makes the spool of undelivered records on first need; `hold`: hold DATA records
    until each checkpoint (a resumable run's tracker).
    """

    kind = "base"

    def __init__(self, name: str, destination: Policies, sink: Sink, *, context: Callable[[], SinkContext],
                 spool: SpoolFactory | None = None, hold: bool = False) -> None:
        self.name = name
        self.destination = destination
        self.sink = sink
        self.policy = destination.delivery_policy
        self.events = frozenset(destination.event_hooks)
        self.schedule = destination.flush_schedule if destination.channel_flushes else None
        self._refuses = destination.refuses if type(destination).refuses is not Policies.refuses else None
        self.ledger = FailureLedger(name)
        self.counts = Counts()
        self.closed = False
        self.context = context  # what the sink opens with (`SinkContext`), built when asked
        self._spool_factory = spool
        self._spool: Spool | None = None
        self._hold = Hold(HELD_IN_MEMORY) if hold else None
        self.sealed: Path | None = None  # the file of what a checkpoint's first phase took from the hold
        self._sealed_count = 0  # records in it
        self._marked = False  # the run's mark names it
        self._delivered: list[Path] = []  # sealed files given to the sink: removed once it has all of them
        self._said: set[str] = set()

    # -- what the Logger calls ---------------------------------------------------------------

    def open(self, deadline: Deadline) -> None:
        """Open the sink now (INIT) with the `context` it is given, waiting at most the deadline;
        raise what it raised."""
        raise NotImplementedError

    def put(self, record: Record) -> None:
        """Take one record (from any thread); raise a failure kept from earlier work, if any."""
        raise NotImplementedError

    def flush(self, durable: bool, deadline: Deadline) -> None:
        """Barrier: every record put so far is written and flushed (`Sink.flush`)."""
        raise NotImplementedError

    def checkpoint(self, deadline: Deadline, seal_to: Path | None = None) -> None:
        """Barrier, a checkpoint's first phase: everything put so far is written and flushed
        durably, and what the hold has is sealed in a new file at `seal_to` (`sealed`)."""
        raise NotImplementedError

    def held_files(self) -> list[Path]:
        """The files of held records a next attempt would need, oldest first: those given to the
        sink and not yet settled (`_remove_delivered`), then `sealed`."""
        return [*self._delivered, *([self.sealed] if self.sealed is not None else [])]

    def marked(self) -> None:
        """The run's mark names `sealed`: its records are delivered from now on, whatever happens."""
        self._marked = self.sealed is not None

    def release(self, deadline: Deadline) -> None:
        """Barrier, a checkpoint's second phase (once the mark names `sealed`): deliver the sealed
        records, flush durably, and remove the file if the sink took them all."""
        raise NotImplementedError

    def close(self, status: RunStatus, deadline: Deadline) -> None:
        """Write what is left (held data a mark did not name only when `status` is FINISHED), close
        the sink; idempotent."""
        raise NotImplementedError

    def post_close(self, closed_cleanly: bool) -> None:
        """After every channel of the Logger closed: the sink's `Sink.post_close` (Composer's
        contract: uploads that drain once every destination's last file is published)."""
        self.sink.post_close(closed_cleanly)

    def identity(self) -> dict[str, Any]:
        """What names the sink's record of the run (`Sink.identity`), once it is open."""
        return dict(self.sink.identity())

    def flushes_at(self, event: Event, record_timestamp: Any) -> bool:
        """Whether the flush schedule flushes after `event` (asked before it is put; changes nothing)."""
        return self.schedule is not None and self.schedule.due(event, record_timestamp)

    def report(self) -> dict[str, Any]:
        """What the sink says of its work (`Sink.report`); of a resumable run's tracker, also what
        waits for the next checkpoint (``held``) and what a run that did not finish withdrew."""
        figures: dict[str, Any] = {}
        if self._hold is not None:
            figures.update(held=self._held_count(), withdrawn=self.counts.withdrawn)
        try:
            return {**figures, **self.sink.report()}
        except Exception as error:  # noqa: BLE001 - a report never breaks a run
            return {**figures, "report_error": f"{type(error).__name__}: {error}"}

    def forget(self) -> None:
        """In a forked child: never touch the sink, the queue or the spool again."""
        self.closed = True
        self._spool = None

    # -- shared by the kinds -----------------------------------------------------------------

    def _flush_due(self, record: Record) -> bool:
        """After the event `record`: whether the schedule flushes now (its clock restarts)."""
        schedule = self.schedule
        if schedule is not None and schedule.due(record.payload.event, record.timestamp):
            schedule.restart()
            return True
        return False

    def _check(self, record: Record) -> None:
        """Raise, once `record` is handed over, what the destination refuses in it (`Policies.refuses`)."""
        if self._refuses is not None and record.kind in _POINTS:
            reason = self._refuses(record)
            if reason:
                raise ValueError(reason)

    def _where(self) -> str:
        """The destination in a message: its name, and where its sink writes once that is known."""
        try:
            location = self.sink.location()
        except Exception:  # noqa: BLE001 - a message never fails
            location = None
        return f"{self.name!r} at {location}" if location else repr(self.name)

    def _closed_error(self) -> RuntimeError:
        return RuntimeError(f"destination {self.name!r} is closed: it takes no more records")

    def _held(self, record: Record) -> bool:
        """Hold `record` if this channel holds data (and media) until checkpoints; whether it did."""
        if self._hold is not None and record.kind in _POINTS:
            self._hold.add(record)
            return True
        return False

    def _seal(self, path: Path | None) -> None:
        """A checkpoint's first phase (with the kind's lock): move what is held into the file `path`."""
        if path is not None and self._hold is not None and len(self._hold):
            count = len(self._hold)
            self._hold.seal(path, before=self.sealed)
            self.sealed, self._sealed_count, self._marked = path, self._sealed_count + count, False

    def _take_sealed(self) -> Iterator[list[Record]]:
        """The sealed records to write now, in lists of at most `HELD_CHUNK`; their file is removed by
        `_remove_delivered`, once the sink has them."""
        path, self.sealed, self._sealed_count, self._marked = self.sealed, None, 0, False
        if path is None:
            return iter(())
        self._delivered.append(path)
        return read_held(path, HELD_CHUNK)

    def _held_count(self) -> int:
        """Records waiting for a checkpoint: held, or sealed and not yet delivered."""
        return (len(self._hold) if self._hold is not None else 0) + self._sealed_count

    def _resent(self, context: SinkContext) -> Iterator[list[Record]] | None:
        """For a continued run: the records sealed at its checkpoints that its attempt may not have
        delivered (it was killed before it removed their files), to write first; else None."""
        files = [Path(name) for name in (context.resumed or {}).get("held_files", ()) if Path(name).is_file()]
        if not files:
            return None
        self._delivered.extend(files)
        return itertools.chain.from_iterable(read_held(path, HELD_CHUNK) for path in files)

    def _remove_delivered(self) -> None:
        """The sink has every record of the sealed files given to it: they go."""
        files, self._delivered = self._delivered, []
        for path in files:
            path.unlink(missing_ok=True)

    def _release_hold(self, status: RunStatus) -> Iterator[list[Record]]:
        """The held records to write at close, in lists of at most `HELD_CHUNK`: those a mark named
        (`marked`), then, when `status` is FINISHED, the rest; the rest are withdrawn when the run
        did not finish (the next attempt logs them again)."""
        if self.sealed is not None and not self._marked and status is not RunStatus.FINISHED:
            # Not sent: if the mark names the file after all (a close from another thread while the mark
            # was written), the next attempt sends it; if not, the next attempt removes it (`RunAttempt.begin`).
            self.counts.withdrawn += self._sealed_count
            self.sealed, self._sealed_count = None, 0
        sealed = self._take_sealed()
        if self._hold is None:
            return sealed
        if status is RunStatus.FINISHED:
            return itertools.chain(sealed, self._hold.take(HELD_CHUNK))
        self.counts.withdrawn += self._hold.drop()
        return sealed

    def _let_go(self, records: Sequence[Record], in_doubt: int = 0) -> None:
        """Records this channel gives up on: spooled when the policy says so and it can, else dropped
        (events are not data: they are let go without a count)."""
        records = [record for record in records if record.kind is not Kind.EVENT]
        if not records:
            return
        counts = self.counts
        counts.in_doubt += in_doubt
        if self.policy.undelivered == "spool" and self._spool_factory is not None:
            try:
                if self._spool is None:
                    self._spool = self._spool_factory()
                counts.spooled += self._spool.write(records)
                counts.dropped += sum(1 for record in records if not Spool.keeps(record))
                return
            except Exception as error:  # noqa: BLE001 - a full disk: the records are counted lost, and why
                counts.spool_errors.append(f"{type(error).__name__}: {error}")
        counts.dropped += len(records)

    def _settle_spool(self) -> None:
        """At close: fsync the spool and name the tracker run in its entry."""
        if self._spool is None:
            return
        try:
            self._spool.close(self.sink.identity())
        except OSError as error:  # its records reached the OS; only the fsync failed
            self.counts.spool_errors.append(f"{type(error).__name__}: {error}")

    def _say_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._said:
            self._said.add(key)
            LOG.warning(message, *args)

    def _undelivered_summary(self) -> str | None:
        """One sentence on what was not delivered, for the end of the run; None when nothing."""
        counts, parts = self.counts, []
        if counts.spooled:
            where = self._spool.path if self._spool is not None else "the spool"
            parts.append(f"{counts.spooled} record(s) were not delivered to {self._where()} and wait in {where}: "
                         f"`composer-cfg-sync <run dir> --to <destination>` delivers them")
        if counts.dropped:
            why = f" (spool failed: {counts.spool_errors[-1]})" if counts.spool_errors else ""
            parts.append(f"{counts.dropped} record(s) were not delivered to {self._where()} and are lost{why}")
        return "; ".join(parts) or None

    def _say_undelivered(self) -> None:
        """At close: a warning when records wait in the spool, an error when records were lost."""
        summary = self._undelivered_summary()
        if summary and self.counts.dropped:
            raise RuntimeError(summary)
        if summary:
            LOG.warning("%s", summary)
