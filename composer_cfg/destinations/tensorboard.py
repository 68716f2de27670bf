"""`TensorboardLogger`: scalars, hyperparameters, images, tables and histograms in TensorBoard
event files (tensorboardX)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from composer_cfg.compat.destination import SinkDestination
from composer_cfg.config.params import (
    PUBLISHED_DIR,
    Level,
    PositiveFloat,
    PositiveInt,
    PublishedDirTemplate,
    positive_int,
    require_rank_field,
)
from composer_cfg.core import dist
from composer_cfg.core.events import Event
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.formatting import format_log_data_value
from composer_cfg.core.hyperparameters import flatten
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.media import KINDS, Histogram, Images, Media, Table
from composer_cfg.core.record import Kind, Record, RunFacts
from composer_cfg.core.sink import Sink, SinkContext, refuse
from composer_cfg.core.status import RunStatus
from composer_cfg.core.templates import DIST_FIELDS, Template, default_artifact_name
from composer_cfg.core.values import scalar
from composer_cfg.destinations.steps import refused_step, storable

if TYPE_CHECKING:
    from composer_cfg.destinations.tensorboard_events import EventFile

LOG = logging.getLogger("composer_cfg")
#: Besides every `flush_interval` batches (and every epoch end), event files are flushed here.
FLUSH_EVENTS = (Event.EVAL_END, Event.FIT_END)


class TensorboardLogger(SinkDestination):
    """Writes scalars with ``global_step=batch``; FIT data as a text table of hyperparameters;
    images, tables and histograms as TensorBoard shows them (below).

    Args (the first three in Composer 0.8's order):
        log_dir: template of the event files' directory (``{run_name}``, ``{rank}``...).
        flush_interval: flush every n batches (at ``batch_end``); also at ``epoch_end``,
            ``eval_end``, ``fit_end`` and at close. Each flush publishes the event file.
        rank_zero_only: only global rank 0 writes; with False every rank writes its own
            directory, so `log_dir` must contain ``{rank}`` when there are several ranks.
        log_level: threshold (default BATCH).
        flush_seconds: also flush at the first event once this many seconds have passed since
            the last flush; None: off.

    Events are encoded and written on a thread of the destination's own, in order: a data call
    is one event holding its scalars; values that are not scalars (strings, lists, tensors of
    several elements) are skipped, with one warning per key. A checkpoint waits until every event
    logged before it is on disk; a scheduled flush puts them there when the writer reaches it.
    The records are tensorboardX's, imported when first needed.

    In a resumable run (``resume=auto|must``) events are written as they are logged, and an attempt
    writes an event file of its own; when the run continues, the files of earlier attempts are cut
    back to their size at the last checkpoint (a file made after it is removed), so a reader never
    sees a step that a killed attempt logged and the next one logs again.

    Media, at ``step`` = the call's batch (`Logger.log_images`, `log_table`, `log_histogram`), each
    name made a tag as scalars' keys are:

    * images: one event per call, with a PNG image per image under ``<name>/<index>`` (``/0``
      when there is one: a series keeps its tags whatever the number of images), at its size, grayscale,
      RGB or RGBA as logged; each of its masks under ``<name>/<index>/mask/<mask name>``, an RGB
      image with each class id in its colour of PASCAL VOC's palette (0 black, 1 dark red, 2 dark
      green...: `composer_cfg.destinations.mask_colours`; ids taken mod 256). `mask_class_labels`
      and `use_table` are not shown (TensorBoard's images have no legend);
    * a table: a markdown table, as ``add_text(<name>, ...)`` writes it (tag
      ``<name>/text_summary``): a header row of the columns, then one row per row; a cell is its
      ``str`` (``nan``, ``True``...), None an empty cell; ``\\`` and ``|`` are escaped, line breaks
      are ``<br>``;
    * a histogram: TensorBoard's histogram under ``<name>``: the logged count, minimum, maximum,
      sum, sum of squares and bin counts, the bucket limits being the bins' right edges.
    """

    hyperparameters_as_fit_data = True
    shows_media = frozenset(KINDS)
    channel_kind = "thread"
    rolls_back = True  # readers keep every event of a step written twice: a resumed run cuts its files back
    requires = {"tensorboardX": "tensorboard", "PIL": "tensorboard"}  # PIL: PNG images

    def __init__(
        self,
        log_dir: PublishedDirTemplate = "{run_name}/tensorboard",
        flush_interval: PositiveInt = 100,
        rank_zero_only: bool = True,
        *,
        log_level: Level = LogLevel.BATCH,
        flush_seconds: PositiveFloat | None = None,
    ) -> None:
        self.log_dir = PUBLISHED_DIR.check("log_dir", log_dir)
        self.check_config({"log_dir": log_dir, "rank_zero_only": rank_zero_only}, dist.current().world_size)
        self.log_level = LogLevel.parse(log_level)
        self.flush_interval = positive_int("flush_interval", flush_interval)
        self.flush_schedule = FlushSchedule(self.flush_interval, LogLevel.BATCH, at=FLUSH_EVENTS, seconds=flush_seconds)
        self.flush_seconds = self.flush_schedule.seconds
        self.rank_zero_only = bool(rank_zero_only)

    @classmethod
    def check_config(cls, params: Mapping[str, Any], world_size: int) -> None:
        """Every rank writing needs ``{rank}`` in `log_dir` once there are several."""
        if not params.get("rank_zero_only", True):
            template = Template(params.get("log_dir", "{run_name}/tensorboard"), DIST_FIELDS, key="log_dir")
            require_rank_field(template, world_size, key="log_dir")

    def refuses(self, record: Record) -> str | None:
        return refused_step(record)

    def make_sink(self) -> Sink:
        return TensorboardSink(self.log_dir)

    def sync_target(self, run: RunFacts) -> str:
        return str(run.path(self.log_dir.fill(run.template_fields())))


class TensorboardSink(Sink):
    """Writes a `TensorboardLogger`'s records into one event file (see there)."""

    def __init__(self, log_dir: Template) -> None:
        self._log_dir = log_dir
        self._events: EventFile | None = None
        self._directory: Path | None = None
        self._filename: str | None = None
        self._flushed = 0  # the event file's size at its last flush: whole records
        self._artifact_dir = ""
        self._skipped: set[str] = set()
        self._publish: Any = None

    def open(self, context: SinkContext) -> None:
        from composer_cfg.destinations.tensorboard_events import EventFile

        self._publish = context.publish
        filled = self._log_dir.fill(context.run.template_fields())
        self._artifact_dir = default_artifact_name(filled)
        self._directory = context.run.path(filled)
        # The file's name sorts after every event file already there (`EventFile`); the nanosecond and
        # the process keep two writers that start at the same moment from sharing one.
        self._events = EventFile(self._directory, f".{time.time_ns()}.{os.getpid()}.rank{context.run.rank}")
        self._filename = self._events.path
        self._flushed = os.path.getsize(self._filename)

    def write(self, records: Sequence[Record]) -> None:
        refused = None
        for record in filter(storable, records):
            try:
                if record.kind is Kind.HYPERPARAMETERS or record.level is LogLevel.FIT:
                    self._hyperparameters(record)
                elif record.kind is Kind.DATA:
                    self._scalars(record)
                elif record.kind is Kind.MEDIA:
                    self._media(record.payload, int(record.timestamp.batch), record.time)
            except Exception as error:  # the other records are written all the same
                refused = refuse(refused, error)
        if refused is not None:
            raise refused

    def flush(self, durable: bool) -> None:
        """Put every event written so far on disk and publish the event files."""
        self._events.flush()  # type: ignore[union-attr]
        self._flushed = os.path.getsize(self._filename)  # type: ignore[arg-type]  # (whole records: this thread writes them)
        self._publish_files()

    def close(self, status: RunStatus) -> None:
        events, self._events = self._events, None
        if events is not None:
            events.close()  # flushes
            self._publish_files()

    def identity(self) -> dict[str, Any]:
        if self._directory is None:
            return {}
        return {"log_dir": str(self._directory), "filename": self._filename, "flushed_bytes": self._flushed}

    def location(self) -> str | None:
        return str(self._directory.resolve()) if self._directory is not None else None

    def _scalars(self, record: Record) -> None:
        numbers = []
        for key, value in record.payload.items():
            number = scalar(value)
            if number is not None:
                numbers.append((key, number))
            elif key not in self._skipped:
                self._skipped.add(key)
                LOG.warning("TensorboardLogger: %r is not a scalar (%s); its values are not written",
                            key, type(value).__name__)
        if numbers:
            self._events.scalars(numbers, int(record.timestamp.batch), record.time)  # type: ignore[union-attr]

    def _media(self, item: Media, step: int, wall_time: float) -> None:
        """An image, table or histogram record (see `TensorboardLogger`)."""
        from composer_cfg.destinations.mask_colours import mask_colours

        events: EventFile = self._events  # type: ignore[assignment]
        if isinstance(item, Images):
            values = []
            for index, image in enumerate(item.images):
                tag = f"{item.name}/{index}"
                values.append((events.tag(tag), image.pixels))
                values.extend((events.tag(f"{tag}/mask/{name}"), mask_colours(mask))
                              for name, mask in image.masks.items())
            events.images(values, step, wall_time)
        elif isinstance(item, Table):
            header = _markdown_row(item.columns) + "|---" * len(item.columns) + "|\n"
            events.text(events.tag(item.name), header + "".join(map(_markdown_row, item.rows)), step, wall_time)
        elif isinstance(item, Histogram):
            events.histogram(events.tag(item.name), item, step, wall_time)

    def _hyperparameters(self, record: Record) -> None:
        rows = "".join(f"| {key} | {format_log_data_value(value)} |\n" for key, value in flatten(record.payload).items())
        self._events.text("hparams", "| key | value |\n|---|---|\n" + rows, int(record.timestamp.batch),  # type: ignore[union-attr]
                          record.time)

    def _publish_files(self) -> None:
        directory = self._directory
        if directory is None:
            return
        for event_file in sorted(directory.glob("events.out.tfevents.*")):
            self._publish(f"{self._artifact_dir}/{event_file.name}", event_file, True)


def _markdown_row(cells: Sequence[Any]) -> str:
    """One row of a markdown table, newline included (see `TensorboardLogger`)."""
    texts = ("" if cell is None else str(cell) for cell in cells)
    return "| " + " | ".join("<br>".join(text.replace("\\", "\\\\").replace("|", "\\|").splitlines())
                             for text in texts) + " |\n"
