"""`ComposerSink`: drives a Composer-style `LoggerDestination` from records.

Each record becomes the call Composer made: ``log_data(state, level, data)`` (0.32:
``log_metrics(metrics, step)``), ``log_hyperparameters``, ``log_file_artifact(...)`` (0.32:
``upload_file``; with the path the caller gave: Composer's destinations copy what they keep
before returning), ``log_images``, ``log_table``, ``log_histogram``, ``run_event(event, state,
logger)`` (at the events the destination has a hook for, or after which its flush schedule is
due), then ``close``, ``post_close`` and ``finalize``. Each call is made in the form the
destination's class overrides: 0.32's where it overrides 0.32's method and not 0.8's.

The state it is given is a copy of the Logger's, kept up to date with the live one, whose
timestamp and wall-clock time are the record's: a call delivered later (after its tensors crossed
to the host) still reads the time it was logged at.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from composer_cfg.compat.destination import overrides
from composer_cfg.core.events import Event
from composer_cfg.core.media import Histogram, Images, Table
from composer_cfg.core.record import Kind, Record
from composer_cfg.core.sink import Sink, SinkContext
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus

if TYPE_CHECKING:
    from composer_cfg.compat.destination import LoggerDestination


class ComposerSink(Sink):
    open_at_close = True  # Composer closed every destination, used or not

    def __init__(self, destination: LoggerDestination) -> None:
        self.destination = destination
        self._hooked = destination.hooked_events()
        self._live: State | None = None
        self._state: State | None = None
        self._logger: Any = None
        self._status = RunStatus.FINISHED
        self._metrics = overrides(destination, "log_metrics") and not overrides(destination, "log_data")
        self._uploads = overrides(destination, "upload_file") and not overrides(destination, "log_file_artifact")
        self._stateless_hyperparameters = _positional(destination.log_hyperparameters) == 1  # 0.32's form

    def open(self, context: SinkContext) -> None:
        logger = context.logger
        self._logger = logger
        self._live = logger.state if logger is not None else State.of(context.run, context.timestamp)
        self._state = copy.copy(self._live)
        if context.resumed is not None and context.resumed is not self.destination.resume_identity:
            self.destination.continue_run(context.resumed)

    def write(self, records: Sequence[Record]) -> None:
        destination = self.destination
        for record in records:
            state = self._state_at(record)
            kind = record.kind
            if kind is Kind.DATA:  # its own dict: Composer's destinations may rename keys in place
                if self._metrics:
                    destination.log_metrics(dict(record.payload), step=int(record.timestamp.batch))
                else:
                    destination.log_data(state, record.level, dict(record.payload))
            elif kind is Kind.EVENT:
                self._event(record.payload.event, state, record)
            elif kind is Kind.ARTIFACT:
                self._artifact(record.payload, state, record)
            elif kind is Kind.HYPERPARAMETERS:
                if self._stateless_hyperparameters:
                    destination.log_hyperparameters(dict(record.payload))
                else:
                    destination.log_hyperparameters(state, dict(record.payload))
            elif kind is Kind.MEDIA:
                _show(destination, record.payload, int(record.timestamp.batch))

    def flush(self, durable: bool) -> None:
        self.destination.flush(self._state, self._logger)

    def close(self, status: RunStatus) -> None:
        self._status = status
        self.destination.close(self._state, self._logger)

    def post_close(self, closed_cleanly: bool) -> None:
        try:
            if closed_cleanly:
                self.destination.post_close()
        finally:
            self.destination.finalize(self._status)

    def identity(self) -> dict[str, Any]:
        return self.destination.run_identity()

    def report(self) -> dict[str, Any]:
        return self.destination.report()

    def location(self) -> str | None:
        return self.destination.output_location()

    def _state_at(self, record: Record) -> State:
        """The state as of `record`: the live one's attributes, with the record's time."""
        state = self._state
        state.__dict__.update(self._live.__dict__)  # type: ignore[union-attr]
        state.timestamp, state.log_time = record.timestamp, record.time  # type: ignore[union-attr]
        if record.kind is Kind.EVENT:
            point = record.payload
            state.dataloader_len, state.eval_dataloader_len = point.dataloader_len, point.eval_dataloader_len  # type: ignore[union-attr]
        return state  # type: ignore[return-value]

    def _artifact(self, artifact: Any, state: State, record: Record) -> None:
        if self._uploads:
            self.destination.upload_file(state, remote_file_name=artifact.name, file_path=artifact.source,
                                         overwrite=artifact.overwrite)
        else:
            self.destination.log_file_artifact(state=state, log_level=record.level, artifact_name=artifact.name,
                                               file_path=artifact.source, overwrite=artifact.overwrite)

    def _event(self, event: Event, state: State, record: Record) -> None:
        schedule = self.destination.flush_schedule  # read now: a destination may set it at INIT
        if event in self._hooked or (schedule is not None and schedule.due(event, record.timestamp)):
            self.destination.run_event(event, state, self._logger)


def _show(destination: LoggerDestination, item: Images | Table | Histogram, step: int) -> None:
    """An image, table or histogram record as the destination's Composer 0.32 call."""
    if isinstance(item, Images):
        names = sorted({name for image in item.images for name in image.masks})
        masks = {name: [image.masks[name] for image in item.images] for name in names}
        destination.log_images([image.pixels for image in item.images], name=item.name, channels_last=True, step=step,
                               masks=masks or None, mask_class_labels=item.mask_class_labels, use_table=item.use_table)
    elif isinstance(item, Table):
        destination.log_table(list(item.columns), [list(row) for row in item.rows], name=item.name, step=step)
    else:
        destination.log_histogram(item.name, item, step)


def _positional(method: Any) -> int:
    """How many positional parameters a bound method takes (-1 when it can not be told)."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return -1
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return -1
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
