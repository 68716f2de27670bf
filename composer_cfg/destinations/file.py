"""`FileLogger`: a text log file per rank, in Composer's line format."""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

from composer_cfg.destination import LoggerDestination
from composer_cfg.destinations import capture
from composer_cfg.destinations.run_file import RunFile
from composer_cfg.formatting import format_log_data_value
from composer_cfg.log_level import LogLevel
from composer_cfg.params import ArtifactTemplate, FileTemplate, Level, PositiveInt, positive_int
from composer_cfg.state import State

if TYPE_CHECKING:
    from composer_cfg.logger import Logger


_PREFIXES = {level: f"[{level.name}][batch=" for level in LogLevel}


class FileLogger(LoggerDestination):
    """Writes ``[EPOCH][batch=2]: { "loss": 0.1235, }`` lines to a file per rank.

    Args:
        filename: template of the log file's path (``{run_name}``, ``{rank}`` and the other dist
            fields). Relative paths are relative to the working directory.
        artifact_name: template of the name the file is published under on every flush; default:
            `filename` with ``/`` separators and no leading ``/``.
        capture_stdout, capture_stderr: also write what the process prints, as
            ``[stdout]: ...`` / ``[stderr]: ...`` lines; undone at `close`.
        buffer_size: the file's buffering (1: line buffered; -1: the system default).
        log_level: threshold; calls above it are not written.
        log_interval: at the threshold level, write only every n-th epoch (EPOCH) or batch (BATCH),
            counted from ``state.timestamp``: a call is kept when ``(batch + 1) % n == 0`` (resp.
            ``epoch``), the batch or epoch in progress. FIT calls are always written.
        flush_interval: with a BATCH threshold, flush every n batches (at ``batch_end``); with
            EPOCH, every n epochs (at ``epoch_end``). Also flushed at ``epoch_start``,
            ``eval_start``, ``fit_end`` and `close`.
        overwrite: replace an existing log file; when False an existing file is an error.

    The file is opened at `Event.INIT` or at the first write, whichever comes first; text
    printed before that is kept and written first.
    """

    def __init__(
        self,
        filename: FileTemplate = "{run_name}/logs-rank{rank}.txt",
        artifact_name: ArtifactTemplate | None = None,
        *,
        capture_stdout: bool = True,
        capture_stderr: bool = True,
        buffer_size: int = 1,
        log_level: Level = LogLevel.EPOCH,
        log_interval: PositiveInt = 1,
        flush_interval: PositiveInt = 100,
        overwrite: bool = False,
    ) -> None:
        self._run_file = RunFile("log file", filename, artifact_name, overwrite=overwrite, buffering=buffer_size)
        self.buffer_size = buffer_size
        self.log_level = LogLevel.parse(log_level)
        self.log_interval = positive_int("log_interval", log_interval)
        # The one level whose calls log_interval thins out (FIT calls are always written).
        sampled = self.log_interval > 1 and self.log_level is not LogLevel.FIT
        self._sampled_level = self.log_level if sampled else None
        self.flush_interval = positive_int("flush_interval", flush_interval)
        self.overwrite = bool(overwrite)
        self._file: IO[str] | None = None  # the open RunFile's file, kept here for the hot path
        self._queue: list[str] = []
        self._at_line_start = True
        self._logger: Logger | None = None
        self._tees = [
            (name, capture.capture(name, lambda text, tag=f"[{name}]: ": self.write(tag, text)))
            for name, wanted in (("stdout", capture_stdout), ("stderr", capture_stderr))
            if wanted
        ]

    @property
    def filename(self) -> str:
        """The log file's path; known once the run name is (at INIT or the first write)."""
        return self._run_file.known("filename")

    @property
    def artifact_name(self) -> str:
        """The name the log file is published under."""
        return self._run_file.known("artifact_name")

    def output_location(self) -> str | None:
        return self._run_file.location()

    # -- data --------------------------------------------------------------------------------

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        timestamp = state.timestamp
        if log_level is self._sampled_level:
            count = timestamp.batch if log_level is LogLevel.BATCH else timestamp.epoch
            if (count + 1) % self.log_interval:
                return
        line = f"{_PREFIXES[log_level]}{timestamp.batch}]: {format_log_data_value(data)}\n"
        if self._at_line_start and self._file is not None:
            self._file.write(line)
            return
        if self._file is None:
            self._open(state)
        self.write("", line)

    def write(self, prefix: str, text: str) -> None:
        """Write `text`, putting `prefix` at the start of every line it begins.

        A line that is only a line break gets no prefix; text continuing a line gets none either.
        """
        pieces = []
        for line in text.splitlines(keepends=True):
            if prefix and self._at_line_start and line not in ("\n", os.linesep):
                pieces.append(prefix)
            pieces.append(line)
            self._at_line_start = line.endswith("\n")
        chunk = "".join(pieces)
        if self._file is None:
            self._queue.append(chunk)
        else:
            self._file.write(chunk)

    # -- events ------------------------------------------------------------------------------

    def init(self, state: State, logger: Logger) -> None:
        self._logger = logger
        if self._file is None:
            self._open(state)

    def epoch_start(self, state: State, logger: Logger) -> None:
        self.flush(logger)

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.log_level == LogLevel.BATCH and state.timestamp.batch % self.flush_interval == 0:
            self.flush(logger)

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.log_level == LogLevel.BATCH or (
            self.log_level == LogLevel.EPOCH and state.timestamp.epoch % self.flush_interval == 0
        ):
            self.flush(logger)

    def eval_start(self, state: State, logger: Logger) -> None:
        self.flush(logger)

    def fit_end(self, state: State, logger: Logger) -> None:
        self.flush(logger)

    def close(self, state: State, logger: Logger) -> None:
        for name, tee in self._tees:
            capture.release(name, tee)
        self._tees = []
        if self._file is None and self._queue:
            self._open(state)
        self._run_file.close(logger)
        self._file = None

    # -- internals ---------------------------------------------------------------------------

    def flush(self, logger: Logger | None = None) -> None:
        """Flush and fsync the file, then publish it as an artifact through `logger`."""
        self._run_file.flush(logger or self._logger)

    def _open(self, state: State) -> None:
        self._file = self._run_file.open(state)
        queued, self._queue = self._queue, []
        self._file.write("".join(queued))
