"""`JSONLinesLogger`: one JSON object per logged call per rank, for plots and tools."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from composer_cfg.destinations.run_file import RunFile, RunFileDestination
from composer_cfg.core.events import Event
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.log_level import LogLevel
from composer_cfg.config.params import ArtifactTemplate, FileTemplate, Level, PositiveFloat, PositiveInt, positive_int
from composer_cfg.run.records import record_line, resume_record
from composer_cfg.core.state import State

if TYPE_CHECKING:
    from composer_cfg.logger import Logger

#: The file is fsynced and published at these events (and at close).
FLUSH_EVENTS = (Event.EPOCH_END, Event.EVAL_END, Event.FIT_END)


class JSONLinesLogger(RunFileDestination):
    """Writes each call as one line of JSON (see `composer_cfg.run.records` for the format).

    Args:
        filename: template of the file's path, one per rank.
        artifact_name: name the file is published under on each flush (default: the filename).
        log_level: threshold (default BATCH: everything).
        flush_interval: records are written and handed to the OS in groups of this many (what a
            killed process loses at most); at ``epoch_end``, ``eval_end``, ``fit_end`` and `close`
            the file is also fsynced and published. Only whole lines are written, one per call,
            whichever threads log at once.
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

    thread_safe = True
    hyperparameters_as_fit_data = True
    offloadable = True  # it only writes its own file(s)

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
        self._run_file = RunFile("metrics file", filename, artifact_name, overwrite=overwrite)
        self.log_level = LogLevel.parse(log_level)
        self.flush_interval = positive_int("flush_interval", flush_interval)
        self.flush_schedule = FlushSchedule(None, None, at=FLUSH_EVENTS, seconds=flush_seconds)
        self.flush_seconds = self.flush_schedule.seconds
        self._timed = self.flush_seconds is not None
        self._pending: list[str] = []
        self._header: tuple[str, int] | None = None  # JSON of the run name, and the rank
        self._lock = threading.Lock()
        self._closed = False
        self._logger: Logger | None = None

    def output_location(self) -> str | None:
        return self._run_file.location()

    def run_identity(self) -> dict[str, Any]:
        return {"filename": self._run_file.path} if self._run_file.location() else {}

    def continue_run(self, identity: Mapping[str, Any]) -> None:
        """Append to the file, after a resume record: `read_records` drops the records before it
        at or after its timestamp (written by an attempt that did not finish)."""
        self._run_file.append = True

    @property
    def filename(self) -> str:
        """The file's absolute path; known once it is open (at INIT or the first record)."""
        return self._run_file.known("filename")

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        header = self._header
        if header is None:
            self._run_file.resolve(state)
            header = self._header = (json.dumps(state.run_name), state.rank)
        when = state.log_time
        record = record_line(log_level, header[0], header[1], state.timestamp, time.time() if when is None else when, data)
        with self._lock:
            if self._closed:  # a call still in flight when the Logger closed
                raise RuntimeError(f"JSONLinesLogger for {self._run_file.path} is closed: it writes no more")
            self._pending.append(record)
            if len(self._pending) >= self.flush_interval:
                self.flush_schedule.restart()
                self._write_pending(state).flush()
            elif self._timed and self.flush_schedule.seconds_due():
                self.flush_schedule.restart()
                self._write_pending(state).flush()

    def _write_pending(self, state: State) -> IO[str]:
        """Write the pending records as whole lines (the caller holds the lock); return the file."""
        file = self._run_file.file or self._open(state)
        if self._pending:
            # Taken before writing: after a failed write (a full disk) these records are reported
            # lost, never written twice.
            records, self._pending = self._pending, []
            file.write("".join(records))
        return file

    def _open(self, state: State) -> IO[str]:
        file = self._run_file.open(state)
        if self._run_file.append:
            file.write(resume_record(state.run_name, state.rank, state.timestamp))
        return file

    def flush(self, state: State, logger: Logger | None = None) -> None:
        """Write the pending records, then flush, fsync and publish the file."""
        with self._lock:
            if self._run_file.file is None and not self._pending:
                return
            self._write_pending(state)
            self._run_file.sync()
        self._run_file.publish(logger or self._logger)

    def init(self, state: State, logger: Logger) -> None:
        self._logger = logger
        with self._lock:
            if self._run_file.file is None:
                self._open(state)

    def close(self, state: State, logger: Logger) -> None:
        with self._lock:
            self._closed = True
            try:
                if self._pending:
                    self._write_pending(state)
            finally:
                was_open = self._run_file.file is not None
                self._run_file.close()
        if was_open:
            self._run_file.publish(logger)
