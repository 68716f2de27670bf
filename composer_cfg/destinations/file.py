"""`FileLogger`: a text log file per rank, in Composer's line format."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from composer_cfg.destinations import capture
from composer_cfg.destinations.run_file import RunFile, RunFileDestination
from composer_cfg.core.events import Event
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.formatting import format_log_text
from composer_cfg.core.log_interval import LogInterval
from composer_cfg.core.log_level import LogLevel
from composer_cfg.config.params import (
    ArtifactTemplate,
    BufferSize,
    BufferSizeParam,
    FileTemplate,
    Level,
    PositiveFloat,
    PositiveInt,
    positive_int,
)
from composer_cfg.core.state import State

if TYPE_CHECKING:
    from composer_cfg.logger import Logger


_PREFIXES = {level: f"[{level.name}][batch=" for level in LogLevel}
#: Besides every `flush_interval` units of the threshold level, the log is flushed at these events.
FLUSH_EVENTS = (Event.EPOCH_START, Event.EVAL_START, Event.FIT_END)


class FileLogger(RunFileDestination):
    """Writes ``[EPOCH][batch=2]: { "loss": 0.1235, }`` lines to a file per rank.

    Args:
        filename: template of the log file's path (``{run_name}``, ``{rank}`` and the other dist
            fields). Relative paths are relative to the working directory when the file opens.
        artifact_name: template of the name the file is published under on every flush; default:
            `filename` with ``/`` separators and no leading ``/``.
        capture_stdout, capture_stderr: also write what the process prints, as
            ``[stdout]: ...`` / ``[stderr]: ...`` lines, from when the file opens until `close`.
        buffer_size: the file's buffering (1: line buffered; -1: the system default).
        log_level: threshold; calls above it are not written.
        log_interval: at the threshold level, write only every n-th epoch (EPOCH) or batch (BATCH):
            the calls of a unit are kept when ``(epoch + 1) % n == 0`` (resp. ``batch``), decided at
            ``epoch_start``/``batch_start`` as in Composer, or from ``state.timestamp`` at each call
            when those events are not fired (see `LogInterval`). FIT calls are always written.
        flush_interval: with a BATCH threshold, flush every n batches (at ``batch_end``); with
            EPOCH, every n epochs (at ``epoch_end``). Also flushed at ``epoch_start``,
            ``eval_start``, ``fit_end`` and `close`. Each flush publishes the file as an artifact.
        flush_seconds: also flush at the first event once this many seconds have passed since
            the last flush; None: off.
        overwrite: replace an existing log file; when False an existing file is an error.

    The file opens at `Event.INIT` or at the first write, whichever comes first. Every call is
    one whole line, whichever threads log and print at once; a printed line left unfinished is
    ended when the same thread logs data, and at `close`.
    """

    thread_safe = True

    def __init__(
        self,
        filename: FileTemplate = "{run_name}/logs-rank{rank}.txt",
        artifact_name: ArtifactTemplate | None = None,
        *,
        capture_stdout: bool = True,
        capture_stderr: bool = True,
        buffer_size: BufferSize = 1,
        log_level: Level = LogLevel.EPOCH,
        log_interval: PositiveInt = 1,
        flush_interval: PositiveInt = 100,
        flush_seconds: PositiveFloat | None = None,
        overwrite: bool = False,
    ) -> None:
        self.buffer_size = BufferSizeParam().check("buffer_size", buffer_size)
        self._run_file = RunFile("log file", filename, artifact_name, overwrite=overwrite, buffering=buffer_size)
        self.log_level = LogLevel.parse(log_level)
        self.log_interval = positive_int("log_interval", log_interval)
        self._interval = LogInterval(self.log_interval, self.log_level)
        self._sampled_level = self._interval.level  # the one level log_interval thins out
        self.flush_interval = positive_int("flush_interval", flush_interval)
        unit = self.log_level if self.log_level is not LogLevel.FIT else None
        self.flush_schedule = FlushSchedule(self.flush_interval, unit, at=FLUSH_EVENTS, seconds=flush_seconds)
        self.flush_seconds = self.flush_schedule.seconds
        self.overwrite = bool(overwrite)
        self._streams = [name for name, wanted in (("stdout", capture_stdout), ("stderr", capture_stderr)) if wanted]
        # Printed lines are written from the printing thread: data lines written on another would
        # no longer fall between them where they were logged.
        self.offloadable = not self._streams  # type: ignore[misc]
        self._lines = {name: capture.LineAssembler(f"[{name}]: ") for name in self._streams}
        self._captures: list[tuple[Any, Any]] = []
        self._unfinished = 0  # threads with a printed line not yet ended
        self._capture_error: Exception | None = None
        self._lock = threading.RLock()  # re-entrant: a signal handler may close while a write is in progress
        self._file: IO[str] | None = None
        self._closed = False
        self._logger: Logger | None = None

    @property
    def filename(self) -> str:
        """The log file's absolute path; known once the file is open (at INIT or the first write)."""
        return self._run_file.known("filename")

    @property
    def artifact_name(self) -> str:
        """The name the log file is published under."""
        return self._run_file.known("artifact_name")

    def output_location(self) -> str | None:
        return self._run_file.location()

    def run_identity(self) -> dict[str, Any]:
        return {"filename": self._run_file.path} if self._run_file.location() else {}

    def continue_run(self, identity: Mapping[str, Any]) -> None:
        """Append to the log file, after a line saying where the run resumed."""
        self._run_file.append = True

    # -- data --------------------------------------------------------------------------------

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        timestamp = state.timestamp
        if log_level is self._sampled_level and not self._interval.keeps(timestamp):
            return
        line = f"{_PREFIXES[log_level]}{timestamp.batch}]: {format_log_text(data)}\n"
        with self._lock:
            file = self._file or self._open(state)
            if self._unfinished:  # a thread printed part of a line: end this thread's first
                file.write("".join(lines.finish(threading.get_ident()) for lines in self._lines.values()))
                self._count_unfinished()
            file.write(line)

    def _captured(self, name: str, text: str) -> None:
        """What the program printed: whole lines only. Never raises into the program's ``print``;
        a failure to write is raised at the next flush or at close instead."""
        with self._lock:
            file = self._file
            if file is None or self._capture_error is not None:
                return
            try:
                chunk = self._lines[name].feed(text)
                self._count_unfinished()
                if chunk:
                    file.write(chunk)
            except Exception as error:  # noqa: BLE001 - reported by flush/close, not by print
                self._capture_error = error

    def _count_unfinished(self) -> None:
        self._unfinished = sum(lines.waiting for lines in self._lines.values())

    # -- events ------------------------------------------------------------------------------

    def init(self, state: State, logger: Logger) -> None:
        self._logger = logger
        with self._lock:
            if self._file is None:
                self._open(state)

    def epoch_start(self, state: State, logger: Logger) -> None:
        if self._sampled_level is LogLevel.EPOCH:
            self._interval.start(state.timestamp)

    def batch_start(self, state: State, logger: Logger) -> None:
        if self._sampled_level is LogLevel.BATCH:
            self._interval.start(state.timestamp)

    def flush(self, state: State | None = None, logger: Logger | None = None) -> None:
        """Flush and fsync the file, then publish it as an artifact through `logger`."""
        with self._lock:
            if self._file is None:
                return
            self._raise_capture_error()
            self._run_file.sync()
        self._run_file.publish(logger or self._logger)

    def close(self, state: State, logger: Logger) -> None:
        with self._lock:
            self._closed = True
            self._stop_capture()
            if self._file is None:
                return
            try:
                for lines in self._lines.values():
                    self._file.write(lines.finish())
                self._raise_capture_error()
            finally:
                self._file = None
                self._run_file.close()
        self._run_file.publish(logger)

    # -- internals ---------------------------------------------------------------------------

    def _open(self, state: State) -> IO[str]:
        """Open the file and start capturing (the caller holds the lock)."""
        if self._closed:  # a call still in flight when the Logger closed: never reopen (or truncate)
            raise RuntimeError(f"FileLogger for {self._run_file.location()} is closed: it writes no more")
        self._file = self._run_file.open(state)
        if self._run_file.append:
            self._file.write(f"[resumed]: at epoch {state.timestamp.epoch} batch {state.timestamp.batch}; the lines "
                             f"above from that point on were written by an attempt that did not finish\n")
        for name in self._streams:
            handle = capture.start(name, lambda text, name=name: self._captured(name, text))
            if handle is not None:
                self._captures.append(handle)
        return self._file

    def _raise_capture_error(self) -> None:
        error, self._capture_error = self._capture_error, None
        if error is not None:
            raise OSError(f"writing printed output to the log file failed: {type(error).__name__}: {error}") from error

    def _stop_capture(self) -> None:
        for handle in self._captures:
            capture.stop(handle)
        self._captures = []
