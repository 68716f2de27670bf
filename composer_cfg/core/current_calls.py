"""Composer 0.32's `Logger` methods (`log_metrics`, `log_images`, `log_table`, `upload_file`...)
and `log_histogram`, on the same records and routes as the 2022 ones.

Composer 0.32 has no levels: its calls are records at `LogLevel.BATCH`, so a destination's
threshold applies to them as to `data_batch`. A `step` given explicitly is the x-axis value the
trackers record (the record's ``batch``); without it, the state's batch, as Composer did.

>>> from composer_cfg import InMemoryLogger, Logger, State
>>> memory = InMemoryLogger()
>>> with Logger(State("docs"), {"memory": memory}) as logger:
...     logger.log_metrics({"loss": 0.5}, step=7)
...     logger.log_table(["prompt", "answer"], [["2+2", "4"]], name="samples")
>>> memory.data["loss"][0][0].batch.value, memory.media["table", "samples"][1].rows
(7, (('2+2', '4'),))
"""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer_cfg.core.media import Media
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.record import Kind, Record
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.core.values import normalise, plain
from composer_cfg.runtime.lifecycle import OPEN

if TYPE_CHECKING:
    from composer_cfg.core.routing import Routes
    from composer_cfg.core.state import State
    from composer_cfg.runtime.dispatch import Dispatch
    from composer_cfg.runtime.lifecycle import Lifecycle

_BATCH = LogLevel.BATCH


class CurrentComposerCalls:
    """The methods of Composer 0.32's `Logger` (see the module's docstring); a `Logger` has them."""

    _state: State
    _routes: Routes
    _dispatch: Dispatch
    _lifecycle: Lifecycle

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """`metrics` at `step` (default: the state's batch) to every destination that takes BATCH data."""
        level, channels = self._routes.data[_BATCH]
        if not channels and not self._dispatch.collecting:  # reduced keys: every rank's values are gathered
            return
        held: list[Any] = []
        payload = dict(metrics) if plain(metrics) else normalise(metrics, self._dispatch.keeper(held))
        self._dispatch.send(channels, self._at(step, Kind.DATA, payload), held)

    def log_images(self, images: Any, name: str = "Images", channels_last: bool = False, step: int | None = None,
                   masks: dict[str, Any] | None = None, mask_class_labels: dict[int, str] | None = None,
                   use_table: bool = True) -> None:
        """Images (an array or tensor: HW, CHW or HWC, a batch NCHW or NHWC; or a sequence of them)
        with optional segmentation `masks`, under `name` (`composer_cfg.core.media_input.images`)."""
        if not self._wanted("images"):
            return
        from composer_cfg.core import media_input  # (numpy: imported at the first media call)

        item = media_input.images(images, name, channels_last=channels_last, masks=masks,
                                  mask_class_labels=mask_class_labels, use_table=use_table)
        self.log_media(item, step)

    def log_table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], name: str = "Table",
                  step: int | None = None) -> None:
        """A table: `columns` names and `rows` of numbers and strings (`composer_cfg.core.media_input.table`)."""
        if not self._wanted("table"):
            return
        from composer_cfg.core import media_input

        self.log_media(media_input.table(columns, rows, name), step)

    def log_histogram(self, name: str, values: Any, step: int | None = None, bins: int | None = None) -> None:
        """The distribution of `values` (an array or tensor of numbers, such as a layer's weights)
        in `bins` equal bins (default 64) (`composer_cfg.core.media_input.histogram`)."""
        if not self._wanted("histogram"):
            return
        from composer_cfg.core import media_input

        self.log_media(media_input.histogram(values, name, bins), step)

    def upload_file(self, remote_file_name: str, file_path: str | Path, *, overwrite: bool = False) -> None:
        """`file_artifact(LogLevel.FIT, remote_file_name, file_path, overwrite=overwrite)`."""
        self.file_artifact(LogLevel.FIT, remote_file_name, file_path, overwrite=overwrite)  # type: ignore[attr-defined]

    def has_file_upload_destination(self) -> bool:
        """Whether any destination stores files (`upload_file` reaches it)."""
        return bool(self._routes.artifacts)

    def log_media(self, item: Media, step: int | None = None) -> None:
        """An item already made (`composer_cfg.core.media_input`), as `composer-cfg-sync` replays one."""
        if not self._lifecycle.taking("data"):
            return
        shown = self._routes.media[item.kind]
        if shown.elsewhere and shown.channels:
            shown.not_shown(item.kind)
        if shown.channels:
            self._dispatch.send(shown.channels, self._at(step, Kind.MEDIA, item))

    def media_kept_by(self, kind: str) -> tuple[str, ...]:
        """The names of the destinations that keep media of `kind` (not those that only say a line of it)."""
        return tuple(channel.name for channel in self._routes.media[kind].channels
                     if channel.destination.keeps_media)

    def _wanted(self, kind: str) -> bool:
        """Whether any destination shows media of `kind`; if none does, the call costs nothing (those
        that take data but can not show it are told once and count it)."""
        shown = self._routes.media[kind]
        if not shown.channels and shown.elsewhere and self._lifecycle.taking("data"):
            shown.not_shown(kind)
        return bool(shown.channels) or self._lifecycle.phase != OPEN

    def _at(self, step: int | None, kind: Kind, payload: Any) -> Record:
        """A BATCH record of `payload` at `step` (the state's batch when None)."""
        state = self._state
        timestamp = state.timestamp if step is None else _at_step(state.timestamp, step)
        when = state.log_time
        return Record(kind, _BATCH, timestamp, time.time() if when is None else when, payload)


def _at_step(timestamp: Timestamp, step: Any) -> Timestamp:
    """`timestamp` at batch `step`: an int, a numpy integer or a one-element integer tensor, 0 or more."""
    try:
        batch = operator.index(step.item() if hasattr(step, "item") and not isinstance(step, int) else step)
    except (TypeError, ValueError, RuntimeError):
        batch = -1
    if isinstance(step, bool) or batch < 0:
        raise ValueError(f"step must be a whole number of batches, 0 or more, got {step!r}")
    return timestamp.copy(batch=batch)
