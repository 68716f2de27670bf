"""`TensorboardLogger`: scalars and hyperparameters in TensorBoard event files (tensorboardX)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from composer_cfg.core import dist
from composer_cfg.destination import LoggerDestination
from composer_cfg.core.events import Event
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.formatting import format_log_data_value
from composer_cfg.core.hyperparameters import flatten
from composer_cfg.core.log_level import LogLevel
from composer_cfg.config.params import (
    PUBLISHED_DIR,
    Level,
    PositiveFloat,
    PositiveInt,
    PublishedDirTemplate,
    positive_int,
    require_rank_field,
)
from composer_cfg.core.state import State
from composer_cfg.core.templates import DIST_FIELDS, Template, default_artifact_name, literal
from composer_cfg.core.values import scalar

if TYPE_CHECKING:
    from composer_cfg.destinations.tensorboard_events import EventFile
    from composer_cfg.logger import Logger

LOG = logging.getLogger("composer_cfg")
#: Besides every `flush_interval` batches (and every epoch end), event files are flushed here.
FLUSH_EVENTS = (Event.EVAL_END, Event.FIT_END)


class TensorboardLogger(LoggerDestination):
    """Writes scalars with ``global_step=batch``; FIT data as a text table of hyperparameters.

    Args (the first three in Composer 0.8's order):
        log_dir: template of the event files' directory (``{run_name}``, ``{rank}``...).
        flush_interval: flush every n batches (at ``batch_end``); also at ``epoch_end``,
            ``eval_end``, ``fit_end`` and `close`. Each flush publishes the event file.
        rank_zero_only: only global rank 0 writes; with False every rank writes its own
            directory, so `log_dir` must contain ``{rank}`` when there are several ranks.
        log_level: threshold (default BATCH).
        flush_seconds: also flush at the first event once this many seconds have passed since
            the last flush; None: off.

    Each data call is one event holding its scalars, written to the event file when logged (on
    the caller's thread); values that are not scalars (strings, lists, tensors of several
    elements) are skipped, with one warning per key. A flush puts every event logged before it
    on disk. The records are tensorboardX's, imported when first needed.
    """

    thread_safe = True
    hyperparameters_as_fit_data = True
    offloadable = True  # it only writes its own file(s)
    holds_until_checkpoint = True  # readers keep every event of a step written twice
    requires = {"tensorboardX": "tensorboard"}

    def __init__(
        self,
        log_dir: PublishedDirTemplate = "{run_name}/tensorboard",
        flush_interval: PositiveInt = 100,
        rank_zero_only: bool = True,
        *,
        log_level: Level = LogLevel.BATCH,
        flush_seconds: PositiveFloat | None = None,
    ) -> None:
        self._log_dir = PUBLISHED_DIR.check("log_dir", log_dir)
        self.check_config({"log_dir": log_dir, "rank_zero_only": rank_zero_only}, dist.current().world_size)
        self.log_level = LogLevel.parse(log_level)
        self.flush_interval = positive_int("flush_interval", flush_interval)
        self.flush_schedule = FlushSchedule(self.flush_interval, LogLevel.BATCH, at=FLUSH_EVENTS, seconds=flush_seconds)
        self.flush_seconds = self.flush_schedule.seconds
        self.rank_zero_only = bool(rank_zero_only)
        self._writer: EventFile | None = None
        self._directory: Path | None = None
        self._artifact_dir = ""
        self._skipped: set[str] = set()
        self._logger: Logger | None = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def check_config(cls, params: Mapping[str, Any], world_size: int) -> None:
        """Every rank writing needs ``{rank}`` in `log_dir` once there are several."""
        if not params.get("rank_zero_only", True):
            template = Template(params.get("log_dir", "{run_name}/tensorboard"), DIST_FIELDS, key="log_dir")
            require_rank_field(template, world_size, key="log_dir")

    def output_location(self) -> str | None:
        return str(self._directory.resolve()) if self._directory is not None else None

    def run_identity(self) -> dict[str, Any]:
        return {"log_dir": str(self._directory)} if self._directory is not None else {}

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        with self._lock:
            self._write(self._writer or self._open(state), state, log_level, data)

    def _write(self, events: EventFile, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        step = int(state.timestamp.batch)
        if log_level is LogLevel.FIT:
            rows = "".join(f"| {key} | {format_log_data_value(value)} |\n" for key, value in flatten(data).items())
            events.text("hparams", "| key | value |\n|---|---|\n" + rows, step, state.log_time)
            return
        numbers = []
        for key, value in data.items():
            number = scalar(value)
            if number is not None:
                numbers.append((key, number))
            elif key not in self._skipped:
                self._skipped.add(key)
                LOG.warning("TensorboardLogger: %r is not a scalar (%s); its values are not written",
                            key, type(value).__name__)
        if numbers:
            events.scalars(numbers, step, state.log_time)

    def _open(self, state: State) -> EventFile:
        """Create the event file (the caller holds the lock)."""
        from composer_cfg.destinations.tensorboard_events import EventFile

        if self._closed:  # a call still in flight when the Logger closed: no second event file
            raise RuntimeError(f"TensorboardLogger for {self._directory} is closed: it writes no more")
        filled = self._log_dir.fill(state.template_fields())
        self._artifact_dir = default_artifact_name(filled)
        self._directory = Path(filled).absolute()
        # tensorboardX names a file by the second it was created and truncates one of the same name;
        # readers take files in name order. The nanosecond and the process keep a second writer in
        # the same second (a sync, a resumed run) from erasing the first, and sort after it.
        self._writer = EventFile(self._directory, f".{time.time_ns()}.{os.getpid()}.rank{state.rank}")
        return self._writer

    def flush(self, state: State | None = None, logger: Logger | None = None) -> None:
        """Put every event logged so far on disk and publish the event files."""
        with self._lock:
            if self._writer is None or self._directory is None:
                return
            self._writer.flush()
        self._publish(logger or self._logger)

    def _publish(self, logger: Logger | None) -> None:
        if logger is None or self._directory is None:
            return
        for event_file in sorted(self._directory.glob("events.out.tfevents.*")):
            logger.file_artifact(LogLevel.FIT, f"{self._artifact_dir}/{event_file.name}", literal(str(event_file)),
                                 overwrite=True)

    def init(self, state: State, logger: Logger) -> None:
        self._logger = logger
        with self._lock:
            if self._writer is None:
                self._open(state)

    def close(self, state: State, logger: Logger) -> None:
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
            if writer is None:
                return
            writer.close()  # flushes
        self._publish(logger)
