"""`ProgressBarLogger`: tqdm bars for training and evaluation, and console log lines."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import Annotated, Any, Callable, TextIO, Union

from composer_cfg.compat.destination import SinkDestination
from composer_cfg.config.meaning import Meaning
from composer_cfg.config.params import Level
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.events import Event
from composer_cfg.core.formatting import format_log_text
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.media import KINDS, kept_by, summary_line
from composer_cfg.core.record import EventPoint, Kind, Printed, Record
from composer_cfg.core.sink import Sink, SinkContext
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.destinations.capture import uncaptured

BAR_FORMAT = "{l_bar}{bar:25}{r_bar}"
#: The key shown on each bar, as in Composer.
SHOWN_KEYS = {"train": "loss/train", "val": "metrics/eval/Accuracy"}


class StreamName(Meaning):
    """``stdout`` or ``stderr``, any case."""

    def check(self, key: str, value: Any, world_size: int = 1) -> str:
        return stream_name(value, key)


def stream_name(value: str, key: str = "stream") -> str:
    name = value.strip().lower()
    if name not in ("stdout", "stderr"):
        raise ConfigError(f"{key}: expected 'stdout' or 'stderr' (or a text stream), got {value!r}", key=key)
    return name


ConsolePredicate = Callable[[State, LogLevel], bool]


class ProgressBarLogger(SinkDestination):
    """A bar per training epoch and per evaluation, on local rank 0, and console lines.

    Args:
        progress_bar: show bars. On a terminal a bar is live; otherwise (a file, CI) each bar
            is written once, as one line, when it closes: no carriage returns in a redirected log.
        log_to_console: print ``[EPOCH][batch=16]: {...}`` lines for calls that pass
            `console_log_level`; default (None): only when `progress_bar` is off. Read back as
            `console`: ``log_to_console`` is the method that writes a line, as in Composer 0.8.
        console_log_level: the threshold of console lines, or a ``(state, log_level) -> bool``.
        stream: ``stdout``, ``stderr`` or a text stream. Bars write to the stream beneath any
            stdout/stderr capture, so a FileLogger does not record them.

    The train bar's total is ``state.dataloader_len``; it shows the latest ``loss/train``.
    """

    takes_hyperparameters = False
    shows_media = frozenset(KINDS)  # one console line per item, as for data
    keeps_media = False
    event_hooks = frozenset({Event.EPOCH_START, Event.BATCH_END, Event.EPOCH_END, Event.EVAL_START,
                        Event.EVAL_AFTER_FORWARD, Event.EVAL_END})

    def __init__(
        self,
        progress_bar: bool = True,
        log_to_console: bool | None = None,
        console_log_level: Level | ConsolePredicate = LogLevel.EPOCH,
        stream: Union[Annotated[str, StreamName()], TextIO] = "stderr",
    ) -> None:
        self.progress_bar = bool(progress_bar)
        self.console = (not self.progress_bar) if log_to_console is None else bool(log_to_console)
        self.console_predicate: ConsolePredicate = _console_predicate(console_log_level, self.console)
        self._stream_spec: str | TextIO = stream_name(stream) if isinstance(stream, str) else stream

    @property
    def stream(self) -> TextIO:
        """Where bars and lines go (resolved when used, beneath any capture)."""
        spec = self._stream_spec
        return uncaptured(getattr(sys, spec) if isinstance(spec, str) else spec)

    def output_location(self) -> str:
        spec = self._stream_spec
        return f"the console ({spec if isinstance(spec, str) else 'a stream'})"

    def log_to_console(self, log_str: str) -> None:
        """Write one line to the console, above the active bar if there is one (as Composer 0.8's
        method of this name does): in order with everything else the bars draw."""
        channel = self.__dict__.get("_channel")
        if channel is None:  # no bar can be active before the destination runs
            print(log_str, file=self.stream, flush=True)
            return
        channel.put(Record(Kind.PRINTED, None, Timestamp(), time.time(), Printed("console", log_str,
                                                                                 threading.get_ident())))

    def make_sink(self) -> Sink:
        return _BarsSink(self)


class _BarsSink(Sink):
    """Draws a `ProgressBarLogger`'s bars and console lines."""

    def __init__(self, settings: ProgressBarLogger) -> None:
        self._settings = settings
        self._kept_by: dict[str, tuple[str, ...]] = {}  # kind -> the destinations that keep such media
        self._bars: dict[str, _Bar] = {}
        self._active: _Bar | None = None
        self._state: State | None = None
        self._local_rank = 0

    def open(self, context: SinkContext) -> None:
        self._kept_by = kept_by(context)
        self._local_rank = context.run.dist.local_rank
        self._state = State.of(context.run, context.timestamp)

    def write(self, records: Sequence[Record]) -> None:
        for record in records:
            if record.kind is Kind.DATA:
                self._data(record)
            elif record.kind is Kind.EVENT:
                self._event(record.payload, record.timestamp)
            elif record.kind is Kind.PRINTED:
                self._line(record.payload.text)
            elif record.kind is Kind.MEDIA and self._settings.console_predicate(self._state, record.level):
                item = record.payload
                self._line(summary_line(item, record.timestamp.batch, self._kept_by.get(item.kind, ())))

    def close(self, status: RunStatus) -> None:
        for split in list(self._bars):
            self._close(split)

    def location(self) -> str:
        return self._settings.output_location()

    def _line(self, text: str) -> None:
        """One console line, above the active bar if there is one."""
        if self._active is not None:
            self._active.write(text)
        else:
            print(text, file=self._settings.stream, flush=True)

    def _data(self, record: Record) -> None:
        data, bar = record.payload, self._active
        if bar is not None:
            key = SHOWN_KEYS[bar.split]
            if key in data:
                bar.postfix = f"{key}={format_log_text(data[key])}"
        state = self._state
        if state is not None:
            state.timestamp = record.timestamp
        if self._settings.console_predicate(state, record.level):  # type: ignore[arg-type]
            self._line(f"[{record.level.name}][batch={record.timestamp.batch}]: {format_log_text(data)}")  # type: ignore[union-attr]

    def _event(self, point: EventPoint, timestamp: Timestamp) -> None:
        event = point.event
        if event is Event.EPOCH_START:
            self._open("train", timestamp, point.dataloader_len, position=0)
        elif event is Event.EVAL_START:
            self._open("val", timestamp, point.eval_dataloader_len, position=1)
        elif event is Event.BATCH_END or event is Event.EVAL_AFTER_FORWARD:
            train = event is Event.BATCH_END
            bar = self._bars.get("train" if train else "val")
            if bar is not None:  # a loop may learn its length after the epoch started (TrainingLoop.batches)
                bar.update(point.dataloader_len if train else point.eval_dataloader_len)
        else:
            self._close("train" if event is Event.EPOCH_END else "val")

    def _open(self, split: str, timestamp: Timestamp, total: int | None, position: int) -> None:
        if not self._settings.progress_bar or self._local_rank != 0:
            return
        self._close(split)
        description = f"Epoch {timestamp.epoch:>5} {split:<5}"
        self._bars[split] = self._active = _Bar(split, description, total, position, self._settings.stream)

    def _close(self, split: str) -> None:
        bar = self._bars.pop(split, None)
        if bar is not None:
            bar.close()
            self._active = self._bars.get("train")


class _Bar:
    """A live tqdm bar on a terminal; elsewhere a counter written as one line when closed."""

    def __init__(self, split: str, description: str, total: int | None, position: int, stream: TextIO) -> None:
        from tqdm.auto import tqdm

        self.split = split
        self.description = description
        self.total = total
        self.stream = stream
        self.count = 0
        self.postfix = ""
        self.started = time.monotonic()
        self._tqdm = tqdm
        self._position = position
        self._terminal = _is_terminal(stream)
        self._live: Any = None
        if self._terminal and total is not None:  # else drawn at the first step, which may bring the length
            self._show()

    def _show(self) -> None:
        self._live = self._tqdm(total=self.total, desc=self.description, position=self._position, file=self.stream,
                                leave=True, dynamic_ncols=True, bar_format=BAR_FORMAT)

    def update(self, total: int | None = None) -> None:
        """One more step; `total`: the bar's length, if it had none."""
        self.count += 1
        if self.total is None:
            self.total = total
        if self._terminal and self._live is None:
            self._show()
        if self._live is not None:
            self._live.set_postfix_str(self.postfix, refresh=False)
            self._live.update(1)

    def write(self, line: str) -> None:
        if self._live is not None:
            self._tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._terminal and self._live is None:
            self._show()
        if self._live is not None:
            self._live.set_postfix_str(self.postfix, refresh=False)
            self._live.close()
            return
        meter = self._tqdm.format_meter(
            self.count, self.total, time.monotonic() - self.started, prefix=self.description,
            bar_format=BAR_FORMAT, postfix=self.postfix or None, ascii=True,
        )
        print(meter, file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _console_predicate(level: Any, enabled: bool) -> ConsolePredicate:
    if not enabled:
        return lambda state, log_level: False
    if callable(level):
        return level
    threshold = LogLevel.parse(level)
    return lambda state, log_level: log_level <= threshold
