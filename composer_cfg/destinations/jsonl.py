"""`JSONLinesLogger`: one JSON object per logged call per rank, for plots and tools."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from composer_cfg.compat.destination import SinkDestination
from composer_cfg.config.params import ArtifactTemplate, FileTemplate, Level, PositiveFloat, PositiveInt, positive_int
from composer_cfg.core.events import Event
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.media import KINDS
from composer_cfg.core.record import Kind, Record
from composer_cfg.core.sink import Sink, SinkContext, refuse
from composer_cfg.core.status import RunStatus
from composer_cfg.destinations.run_file import RunFile, RunFileParams, RunFileSink
from composer_cfg.run.media_files import FOLDER, media_line, sync_files
from composer_cfg.run.records import record_line, resume_record

#: The file is fsynced and published at these events (and at close).
FLUSH_EVENTS = (Event.EPOCH_END, Event.EVAL_END, Event.FIT_END)


class JSONLinesLogger(RunFileParams, SinkDestination):
    """Writes each call as one line of JSON (see `composer_cfg.run.records` for the format); images
    and tables with their pixels and cells in files beside it (`composer_cfg.run.media_files`).

    Args:
        filename: template of the file's path, one per rank.
        artifact_name: name the file is published under on each flush (default: the filename).
        log_level: threshold (default BATCH: everything).
        flush_interval: records are handed to the OS in groups of this many, on the thread that
            logs the last of them (what a killed process loses at most); at ``epoch_end``,
            ``eval_end``, ``fit_end`` and close the file is also fsynced and published. Only whole
            lines are written, one per call, whichever threads log at once.
        flush_seconds: also write the pending records at the first record or event once this
            many seconds have passed since the last write (at an event: also fsync and publish);
            None: off.
        overwrite: replace an existing file; when False an existing file is an error.

    >>> from composer_cfg import Logger, State
    >>> from composer_cfg.run.records import read_records
    >>> with Logger(State("docs"), JSONLinesLogger("docs.jsonl", overwrite=True)) as logger:
    ...     logger.data_batch({"loss": 0.25})
    >>> [(r["level"], r["batch"], r["data"]) for r in read_records("docs.jsonl")]
    [('BATCH', 0, {'loss': 0.25})]
    """

    hyperparameters_as_fit_data = True
    writes_records = True
    shows_media = frozenset(KINDS)

    def __init__(
        self,
        filename: FileTemplate = "{run_name}/metrics-rank{rank}.jsonl",
        artifact_name: ArtifactTemplate | None = None,
        *,
        log_level: Level = LogLevel.BATCH,
        flush_interval: PositiveInt = 100,
        flush_seconds: PositiveFloat | None = None,
        overwrite: bool = False,
    ) -> None:
        self._file = (filename, artifact_name)
        RunFile("metrics file", filename, artifact_name, overwrite=overwrite)  # checks the names
        self.overwrite = bool(overwrite)
        self.log_level = LogLevel.parse(log_level)
        self.flush_interval = positive_int("flush_interval", flush_interval)
        self.flush_schedule = FlushSchedule(None, None, at=FLUSH_EVENTS, seconds=flush_seconds)
        self.flush_seconds = self.flush_schedule.seconds

    def make_sink(self) -> Sink:
        return JSONLinesSink(self)


class JSONLinesSink(RunFileSink):
    """Writes a `JSONLinesLogger`'s records (see there)."""

    def __init__(self, settings: JSONLinesLogger) -> None:
        filename, artifact_name = settings._file
        self.run_file = RunFile("metrics file", filename, artifact_name, overwrite=settings.overwrite)
        self._flush_interval = settings.flush_interval
        self._schedule = settings.flush_schedule
        self._timed = settings.flush_seconds is not None
        self._pending: list[str] = []
        self._unsynced: list[Path] = []  # media files written since the last flush
        self._published: set[str] = set()  # media files offered to the artifact stores by this attempt
        self._header = ("", 0)  # JSON of the run name, and the rank
        self._file: IO[str] | None = None
        self._publish: Any = None

    def open(self, context: SinkContext) -> None:
        self._publish = context.publish
        self._header = (json.dumps(context.run.run_name), context.run.rank)
        self._file = self.run_file.open(context.run, append=context.resumed is not None)
        if context.resumed is not None:
            kept = context.resumed.get("kept_bytes", {}).get(self.run_file.path)  # (an absolute path)
            self._file.write(resume_record(context.run.run_name, context.run.rank, context.timestamp, kept))

    def write(self, records: Sequence[Record]) -> None:
        run_name, rank = self._header
        pending = self._pending
        refused = None
        for record in records:
            kind = record.kind
            try:
                if kind is Kind.DATA or kind is Kind.HYPERPARAMETERS:
                    pending.append(record_line(record.level, run_name, rank, record.timestamp, record.time,
                                               record.payload))
                elif kind is Kind.MEDIA:
                    pending.append(media_line(run_name, rank, record, Path(self.run_file.path).parent,
                                              self._media_file))
            except Exception as error:  # the other records are written all the same
                refused = refuse(refused, error)
        if len(pending) >= self._flush_interval or (self._timed and pending and self._schedule.seconds_due()):
            self._schedule.restart()
            self._write_pending().flush()
        if refused is not None:
            raise refused

    def _media_file(self, path: Path, written: bool) -> None:
        """A media file a record uses: made durable at the next flush if written now; offered to
        the artifact stores, beside the records file's own artifact, the first time this attempt uses it."""
        if written:
            self._unsynced.append(path)
        if path.name not in self._published:
            self._published.add(path.name)
            folder = posixpath.dirname(self.run_file.artifact_name)  # type: ignore[arg-type]
            self._publish(posixpath.join(folder, FOLDER, path.name), path, True)

    def flush(self, durable: bool) -> None:
        """Write the pending records, then flush, fsync (with the media files written since the
        last flush, first) and publish the file."""
        self._write_pending()
        unsynced, self._unsynced = self._unsynced, []
        sync_files(unsynced)
        self.run_file.sync()
        self.run_file.publish(self._publish)

    def close(self, status: RunStatus) -> None:
        if self._file is None:
            return
        try:
            self._write_pending()
            unsynced, self._unsynced = self._unsynced, []
            sync_files(unsynced)
        finally:
            self._file = None
            self.run_file.close()
        self.run_file.publish(self._publish)

    def _write_pending(self) -> IO[str]:
        """Write the pending records as whole lines; return the file. Taken before writing: after
        a failed write (a full disk) these records are reported lost, never written twice."""
        file = self._file
        if self._pending:
            records, self._pending = self._pending, []
            file.write("".join(records))  # type: ignore[union-attr]
        return file  # type: ignore[return-value]
