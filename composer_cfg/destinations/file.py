"""`FileLogger`: a text log file per rank, in Composer's line format."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from composer_cfg.compat.destination import SinkDestination
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
from composer_cfg.core.events import Event
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.formatting import format_log_text
from composer_cfg.core.log_interval import LogInterval
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.media import KINDS, kept_by, summary_line
from composer_cfg.core.record import Kind, Printed, Record
from composer_cfg.core.sink import Sink, SinkContext, refuse
from composer_cfg.core.status import RunStatus
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.destinations import capture
from composer_cfg.destinations.run_file import RunFile, RunFileParams, RunFileSink

_PREFIXES = {level: f"[{level.name}][batch=" for level in LogLevel}
#: Besides every `flush_interval` units of the threshold level, the log is flushed at these events.
FLUSH_EVENTS = (Event.EPOCH_START, Event.EVAL_START, Event.FIT_END)
_NO_TIME = Timestamp()


class FileLogger(RunFileParams, SinkDestination):
    """Writes ``[EPOCH][batch=2]: { "loss": 0.1235, }`` lines to a file per rank.

    Args:
        filename: template of the log file's path (``{run_name}``, ``{rank}`` and the other dist
            fields). A relative path is in the run's directory (`State.directory`; None: the
            working directory when the file opens).
        artifact_name: template of the name the file is published under on every flush; default:
            `filename` with ``/`` separators and no leading ``/``.
        capture_stdout, capture_stderr: also write what the process prints, as
            ``[stdout]: ...`` / ``[stderr]: ...`` lines, from when the file opens until it closes.
        buffer_size: the file's buffering. 1 (line buffered, the default): each line is written on
            the thread that logs it, and is in the file when the call returns. Otherwise (-1: the
            system's default, or a size in bytes) lines are written on a thread of the log's own,
            in order; when the file captures printed output it stays on the logging threads, so
            each thread's prints and data lines keep their order.
        log_level: threshold; calls above it are not written.
        log_interval: at the threshold level, write only every n-th epoch (EPOCH) or batch (BATCH):
            the calls of a unit are kept when ``(epoch + 1) % n == 0`` (resp. ``batch``), decided at
            ``epoch_start``/``batch_start`` as in Composer, or from the timestamp at each call when
            those events are not fired (see `LogInterval`). FIT calls are always written.
        flush_interval: with a BATCH threshold, flush every n batches (at ``batch_end``); with
            EPOCH, every n epochs (at ``epoch_end``). Also flushed at ``epoch_start``,
            ``eval_start``, ``fit_end`` and at close. Each flush publishes the file as an artifact.
        flush_seconds: also flush at the first event once this many seconds have passed since
            the last flush; None: off.
        overwrite: replace an existing log file; when False an existing file is an error.

    The file opens at `Event.INIT` or at the first write, whichever comes first. Every call is
    one whole line, whichever threads log and print at once; a printed line left unfinished is
    ended when the same thread logs data, and at close.
    """

    takes_hyperparameters = False  # a text log shows data, not the run's config
    shows_media = frozenset(KINDS)  # one summary line per item
    keeps_media = False

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
        self._file = (filename, artifact_name)
        RunFile("log file", filename, artifact_name, overwrite=overwrite, buffering=buffer_size)  # checks the names
        self.log_level = LogLevel.parse(log_level)
        self.log_interval = positive_int("log_interval", log_interval)
        self.flush_interval = positive_int("flush_interval", flush_interval)
        unit = self.log_level if self.log_level is not LogLevel.FIT else None
        self.flush_schedule = FlushSchedule(self.flush_interval, unit, at=FLUSH_EVENTS, seconds=flush_seconds)
        self.flush_seconds = self.flush_schedule.seconds
        self.overwrite = bool(overwrite)
        self.streams = tuple(name for name, wanted in (("stdout", capture_stdout), ("stderr", capture_stderr))
                             if wanted)
        self.channel_kind = "inline" if self.buffer_size == 1 or self.streams else "thread"
        sampled = LogInterval(self.log_interval, self.log_level).level
        self.event_hooks = frozenset({Event.EPOCH_START} if sampled is LogLevel.EPOCH else
                                {Event.BATCH_START} if sampled is LogLevel.BATCH else ())

    def make_sink(self) -> Sink:
        return FileSink(self)


class FileSink(RunFileSink):
    """Writes a `FileLogger`'s records (see there)."""

    def __init__(self, settings: FileLogger) -> None:
        filename, artifact_name = settings._file
        self.run_file = RunFile("log file", filename, artifact_name, overwrite=settings.overwrite,
                                buffering=settings.buffer_size)
        self._interval = LogInterval(settings.log_interval, settings.log_level)
        self._sampled = self._interval.level  # the one level log_interval thins out
        self._streams = settings.streams
        self._lines = {name: capture.LineAssembler(f"[{name}]: ") for name in self._streams}
        self._captures: list[Any] = []
        self._kept_by: dict[str, tuple[str, ...]] = {}  # kind -> the destinations that keep such media
        self._capture_error: Exception | None = None
        self._unfinished = 0  # threads with a printed line not yet ended
        self._file: IO[str] | None = None
        self._publish: Any = None

    def open(self, context: SinkContext) -> None:
        self._publish = context.publish
        self._kept_by = kept_by(context)
        self._file = self.run_file.open(context.run, append=context.resumed is not None)
        if context.resumed is not None:
            at = context.timestamp
            self._file.write(f"[resumed]: at epoch {at.epoch} batch {at.batch}; the lines above from that point on "
                             f"were written by an attempt that did not finish\n")
        for name in self._streams:
            handle = capture.start(name, self._captured(name, context.submit))
            if handle is not None:
                self._captures.append(handle)

    def write(self, records: Sequence[Record]) -> None:
        file, refused = self._file, None
        for record in records:
            try:
                kind = record.kind
                if kind is Kind.DATA:
                    level, timestamp = record.level, record.timestamp
                    if level is self._sampled and not self._interval.keeps(timestamp):
                        continue
                    if self._unfinished:  # this thread printed part of a line: end it first
                        file.write("".join(lines.finish(threading.get_ident()) for lines in self._lines.values()))
                        self._count_unfinished()
                    file.write(f"{_PREFIXES[level]}{timestamp.batch}]: {format_log_text(record.payload)}\n")
                elif kind is Kind.PRINTED:
                    printed = record.payload
                    chunk = self._lines[printed.stream].feed(printed.text, printed.thread)
                    self._count_unfinished()
                    if chunk:
                        file.write(chunk)
                elif kind is Kind.EVENT:
                    self._interval.start(record.timestamp)
                elif kind is Kind.MEDIA:
                    item = record.payload
                    file.write(summary_line(item, record.timestamp.batch, self._kept_by.get(item.kind, ())) + "\n")
            except Exception as error:  # the other records are written all the same
                refused = refuse(refused, error)
        if refused is not None:
            raise refused

    def flush(self, durable: bool) -> None:
        """Flush and fsync the file, then publish it as an artifact."""
        self._raise_capture_error()
        self.run_file.sync()
        self.run_file.publish(self._publish)

    def close(self, status: RunStatus) -> None:
        for handle in self._captures:
            capture.stop(handle)
        self._captures = []
        if self._file is None:
            return
        try:
            self._file.write("".join(lines.finish() for lines in self._lines.values()))
            self._raise_capture_error()
        finally:
            self._file = None
            self.run_file.close()
        self.run_file.publish(self._publish)

    # -- printed output ------------------------------------------------------------------------

    def _captured(self, name: str, submit: Any) -> Any:
        """What the program prints on `name`, as records of this log's own. Never raises into the
        program's ``print``; a failure is raised at the next flush or close instead."""

        def sink(text: str) -> None:
            if self._capture_error is not None:
                return
            try:
                submit(Record(Kind.PRINTED, None, _NO_TIME, time.time(), Printed(name, text, threading.get_ident())))
            except Exception as error:  # noqa: BLE001 - reported by flush/close, not by print
                self._capture_error = error

        return sink

    def _count_unfinished(self) -> None:
        self._unfinished = sum(lines.waiting for lines in self._lines.values())

    def _raise_capture_error(self) -> None:
        error, self._capture_error = self._capture_error, None
        if error is not None:
            raise OSError(f"writing printed output to the log file failed: {type(error).__name__}: {error}") from error

