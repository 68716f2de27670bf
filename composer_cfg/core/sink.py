"""`Sink`: a destination's own code, and `Policies`: what a destination declares to the `Logger`.

Between a logging call and a back end everything goes one way (see docs/how-it-works.md):
the `Logger` builds one immutable `Record` per call and routes it, by level and rank, to one
channel per destination (`composer_cfg.runtime.channel`), which calls the destination's sink. A
sink is synchronous and called by one thread at a time: it needs no locks, no threads and no
"closed" flags. The channel does the rest: it writes on the calling thread or on a thread of its
own, batches, bounds its queue, spools what can not be delivered, holds data until checkpoints,
carries the first failure back to a logging thread, and bounds every wait.

A whole destination, in one small class (the `Logger` takes a sink as it is):

>>> from composer_cfg.core.record import Kind
>>> class Lines(Sink):
...     channel_kind = "thread"             # written off the training thread
...     def open(self, context):
...         self.path = f"{context.run.run_name}-lines.txt"
...         self.file = open(self.path, "w")
...     def write(self, records):
...         for record in records:
...             if record.kind is Kind.DATA:
...                 self.file.write(f"{int(record.timestamp.batch)} {record.payload}\\n")
...     def flush(self, durable):
...         self.file.flush()
...     def close(self, status):
...         self.file.close()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from composer_cfg.core.events import Event
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.record import Record, RunFacts
from composer_cfg.core.status import RunStatus
from composer_cfg.core.timestamp import Timestamp

if TYPE_CHECKING:
    from composer_cfg.core.flush_schedule import FlushSchedule
    from composer_cfg.core.logger import Logger

#: ``publish(artifact_name, path, overwrite)``: offer a file to every destination that takes artifacts.
Publish = Callable[[str, Path, bool], None]
#: The channel kinds (`composer_cfg.runtime.channel`).
CHANNELS = ("inline", "thread", "keyed")


class DeliveryPolicy(NamedTuple):
    """What a channel does when its sink does not keep up.

    * `queue_size`: records that may wait (``keyed``: artifacts waiting or uploading).
    * `when_full`: ``block`` (the logging thread waits for room, at most `timeout`; after one wait
      that timed out, not again until the sink takes something) or ``drop`` (never waits: the
      record goes where `undelivered` says).
    * `undelivered`: what becomes of a record given up (overflow with ``drop``, or still waiting
      when a barrier or close gives up after `timeout`): ``spool`` (appended to
      ``{run_name}/undelivered-<destination>-rank<rank>.jsonl``, which ``composer-cfg-sync``
      delivers later) or ``drop`` (counted, lost, said at close).
    * `timeout`: the longest, in seconds, a barrier (INIT, a checkpoint, close) waits for the sink;
      None: until it is done (local files). A sink that does not answer in time is left behind:
      what it holds is given up, counted and said once; training goes on.
    """

    queue_size: int = 10_000
    when_full: str = "block"
    undelivered: str = "drop"
    timeout: float | None = None


class SinkContext(NamedTuple):
    """What a sink is given when it opens."""

    run: RunFacts
    timestamp: Timestamp  # where the run is: with `resumed`, the point it continues from
    # None: a new run; else what `Sink.identity` said last time ({} if nothing), and for a run's
    # records files ``kept_bytes``: each one's size at the last checkpoint (what stays of it), by path
    resumed: Mapping[str, Any] | None
    publish: Publish
    submit: Callable[[Record], None]  # add a record of the sink's own to its channel (a text log's captured prints)
    logger: Logger | None  # the Logger it belongs to (Composer-style destinations call back into it)
    run_key: str | None = None  # a resumable run's own id, the same in every attempt; None otherwise


class Policies:
    """What a destination declares; the `Logger` reads it once, when it is built, and applies it.

    * `log_level`: the threshold: a DATA record of level ``l`` reaches the sink only when
      ``l <= log_level`` (None: every level); `takes_data` False: no data at all (an artifact store);
      `takes_hyperparameters` False: no hyperparameters (a text log).
    * `shows_media`: the kinds of media it shows (``images``, ``table``, ``histogram``:
      `composer_cfg.core.media`); media of another kind are not sent to it: the Logger says so
      once and counts them in its report (``media_not_shown``). `keeps_media` False: it only
      says a line of each (a text log, the console); the others are named in that line.
    * `rank_zero_only`: only global rank 0 has the destination; elsewhere it costs nothing.
    * `channel_kind`: ``inline`` (written on the calling thread: a reader sees it at once),
      ``thread`` (written in order on a thread of its own) or ``keyed`` (artifacts: the newest
      version of each name wins, on several threads).
    * `delivery_policy`: the channel's `DeliveryPolicy`; `upload_workers`: a keyed channel's threads.
    * `event_hooks`: the events the sink acts at; other events never reach it.
    * `flush_schedule`: the events after which the channel calls ``flush(durable=True)``
      (`channel_flushes` False: the destination applies it itself, as Composer-style ones do).
    * `remote`: its back end may be slow or unreachable: closed after the local destinations.
    * `holds_until_checkpoint`: its back end can not take back what a killed attempt sent after
      its last checkpoint, so in a resumable run its data waits (bounded) for each checkpoint.
    * `writes_records`: its file (`Sink.identity`'s ``filename``) is the run's JSON Lines records:
      listed in the run's manifest, so that readers, the plot and sync read it and never a copy of it.
    * `rolls_back`: its file (`Sink.identity`'s ``filename``) is cut back, when a resumable run
      continues, to its size at the last checkpoint (a file made after it is removed), so what a
      killed attempt wrote after its last checkpoint goes: its data need not wait for checkpoints.
      The size is the identity's ``flushed_bytes`` at the checkpoint if it says it (the file's size
      after its last flush, when the sink writes it from another thread), else the file's size.
    * `requires`: modules its back end imports, each with the pip extra that installs it.
    * `aliases`: old names of constructor parameters (old -> new), accepted and never listed.
    * `check_config`: rules across several constructor parameters, checked with the config.
    * `resume_identity`: the identity of a record to add to (a tracker run's id), given before the run
      starts (`continue_run`); a resumed run's manifest gives it otherwise.
    """

    log_level: LogLevel | None = None
    takes_data: ClassVar[bool] = True
    takes_hyperparameters: ClassVar[bool] = True
    shows_media: frozenset[str] = frozenset()
    keeps_media: ClassVar[bool] = True
    rank_zero_only: bool = False
    channel_kind: str = "inline"
    delivery_policy: DeliveryPolicy = DeliveryPolicy()
    upload_workers: int = 1
    event_hooks: frozenset[Event] = frozenset()
    flush_schedule: FlushSchedule | None = None
    channel_flushes: ClassVar[bool] = True
    remote: ClassVar[bool] = False
    holds_until_checkpoint: ClassVar[bool] = False
    writes_records: ClassVar[bool] = False
    rolls_back: ClassVar[bool] = False
    requires: ClassVar[Mapping[str, str]] = {}
    aliases: ClassVar[Mapping[str, str]] = {}
    resume_identity: Mapping[str, Any] | None = None

    @classmethod
    def check_config(cls, params: Mapping[str, Any], world_size: int) -> None:
        """Raise `ConfigError` (key first: ``"log_dir: ..."``) for rules that span several parameters.

        Called by the config validator before anything is built; constructors call it too, so a
        script and a config meet the same rules."""

    def sync_target(self, run: RunFacts) -> str:
        """Where the destination would put `run`'s records (a store, a directory, a project), as
        text without secrets: ``composer-cfg-sync`` keeps its progress per target, so a sync into
        another target sends everything. '' when there is one target only."""
        return ""

    def can_log_file_artifacts(self) -> bool:
        """Whether the destination stores file artifacts."""
        return False

    def takes_artifacts(self) -> bool:
        """Whether ARTIFACT records are routed to it (by default: when it stores them)."""
        return self.can_log_file_artifacts()

    def refuses(self, record: Record) -> str | None:
        """On the logging thread, as a DATA record is handed over: why part of it can not be stored
        (a name the back end refuses), or None. The record is written all the same, without that
        part; the caller gets a `ValueError` saying why. Called only when a destination defines it."""
        return None

    def join_sweep(self, sweep: str, overrides: Sequence[str]) -> None:
        """Before the run starts: this run is one job of the sweep `sweep`, run with `overrides`.
        Trackers group and tag the job; by default, nothing."""

    def sink(self) -> Sink:
        """The sink that writes this destination's records (made once)."""
        raise NotImplementedError

    def continue_run(self, identity: Mapping[str, Any]) -> None:
        """Before the run starts: add to the record `identity` names (an earlier `Sink.identity`)
        instead of starting a new one."""
        self.resume_identity = dict(identity)


class Sink(Policies):
    """A destination's own code (see the module's docstring). Every method runs on one thread at a
    time, in the order of the calls; a method that raises is reported by the channel to a logging
    thread (a failed `write` loses those records, or, for a `remote` sink, keeps them to be sent
    again at the next flush point)."""

    #: Opened at close when it never was, to be closed (a Composer-style destination is closed
    #: whether it was used or not); otherwise a sink never opened is never closed.
    open_at_close: ClassVar[bool] = False

    def sink(self) -> Sink:
        return self

    def open(self, context: SinkContext) -> None:
        """Start: open files, start the tracker run (continue ``context.resumed`` when it is not None)."""

    def write(self, records: Sequence[Record]) -> None:
        """Write `records`, in order (those of `Policies.log_level` and the kinds routed to it).

        A sink that can write the rest of a batch after one record fails should, then raise the
        first error with its `refused_records` set (`refuse`): the channel counts only those as
        failed. Otherwise an error counts the whole batch as failed."""

    def flush(self, durable: bool) -> None:
        """Hand what is buffered to the OS or the back end; `durable`: also make it survive the
        machine (fsync) or wait until the back end has it."""

    def close(self, status: RunStatus) -> None:
        """The run ended with `status`: write what is left, end the tracker run, release everything."""

    def post_close(self, closed_cleanly: bool) -> None:
        """After every sink of the Logger has closed (`closed_cleanly`: this one's `close` did not
        raise); by default nothing. Composer-style destinations drain their uploads here."""

    def identity(self) -> dict[str, Any]:
        """What names this sink's record of the run (a tracker's run id, a file's path), as plain
        JSON values: given back as ``context.resumed`` when the run is resumed."""
        return {}

    def report(self) -> dict[str, Any]:
        """What the sink says of its own work so far, as plain numbers (``bytes_written``...)."""
        return {}

    def location(self) -> str | None:
        """Where its data went (a path, a URL, "the console"), once known."""
        return None


class KeyedSink(Sink):
    """The sink of a ``keyed`` channel: artifacts, each stored under a key (an object name), the
    newest version of a key winning. `write` gets one artifact at a time and runs on several
    threads at once, never two for the same key; `key` runs on the calling thread."""

    def key(self, record: Record) -> str | None:
        """The key of an ARTIFACT record, or None to leave it out."""
        raise NotImplementedError

    def abort(self, keys: Sequence[str]) -> None:
        """These keys' writes are left unfinished (close gave up on them): undo what they left
        half done, if anything."""


def refuse(first: Exception | None, error: Exception) -> Exception:
    """For a `Sink.write` that writes every record it can: the error to raise once the batch is
    done (the first), counting in its `refused_records` how many records raised."""
    kept = error if first is None else first
    kept.refused_records = getattr(kept, "refused_records", 0) + 1  # type: ignore[attr-defined]
    return kept
