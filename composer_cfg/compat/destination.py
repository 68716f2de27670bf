"""`LoggerDestination`: Composer's destination API (0.7/0.8, and 0.32), run on composer_cfg's records
and channels.

A destination written for Composer 0.8 overrides some of `log_data(state, log_level, data)`,
`log_file_artifact(...)`, the event hooks (``epoch_end(state, logger)``...), `run_event`, `close`
and `post_close`; one written for 0.32 overrides `log_metrics(metrics, step)`,
`log_hyperparameters(hyperparameters)`, `log_images(...)`, `log_table(...)`,
`upload_file(state, remote_file_name, file_path, *, overwrite)`, `can_upload_files()`. Every
method has a default. Given to a `Logger`, it is driven through an
adapter (`composer_cfg.compat.composer_sink.ComposerSink`) on an inline channel: each record
becomes the call Composer made, with a state whose timestamp is the record's.

The built-in destinations are `SinkDestination`s: their records are written by a `Sink` of their
own, and Composer 0.8's methods (`log_data`, `log_hyperparameters`, `log_file_artifact`,
`run_event`, `flush`, `close`), called by hand (as Composer's own tests drive a destination),
build records and send them through the destination's channel: the one its Logger uses, or an
inline one of its own. (0.32's, which take no state, are for a Logger to call: a built-in
destination takes media and `log_metrics` through its Logger.)

>>> class Printer(LoggerDestination):
...     def log_data(self, state, log_level, data):
...         print(log_level.name, data)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from composer_cfg.core.events import Event
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.media import Histogram
from composer_cfg.core.record import EventPoint, Kind, Record
from composer_cfg.core.secrets import redact
from composer_cfg.core.sink import Policies, Sink, SinkContext
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus
from composer_cfg.core.templates import literal
from composer_cfg.core.values import normalise
from composer_cfg.runtime.channel import Channel
from composer_cfg.runtime.deadline import Deadline
from composer_cfg.runtime.inline_channel import InlineChannel
from composer_cfg.runtime.staging import Staging

if TYPE_CHECKING:
    from composer_cfg.core.logger import Logger


class LoggerDestination(Policies):
    """Receives logged data, file artifacts and training events, as Composer's destinations did.

    Besides the `Policies` every destination declares, `hyperparameters_as_fit_data`: trackers
    and record files take `log_hyperparameters` as FIT data; others ignore them. Its
    `flush_schedule` is applied by `run_event` (whether the Logger fires the event or a caller
    drives the destination by hand): after an event at which a flush is due, `flush` is called.

    The lifecycle: built; ``init`` (`Event.INIT`); the run's events and calls; then, when the
    Logger closes, `close` on every destination (a final flush: others may still send file
    artifacts), `post_close` on those whose close succeeded (wait for background work such as
    uploads), and `finalize` on every one, with how the run ended.
    """

    hyperparameters_as_fit_data: ClassVar[bool] = False
    channel_flushes: ClassVar[bool] = False  # `run_event` applies the flush schedule itself

    @property
    def event_hooks(self) -> frozenset[Event]:  # type: ignore[override]
        """Every event: the adapter calls `run_event` at those `hooked_events` names, and at any
        event after which the flush schedule (read then: it may be set at INIT) is due."""
        return frozenset(Event)

    def sink(self) -> Sink:
        """The adapter that drives this destination from records (made once)."""
        from composer_cfg.compat.composer_sink import ComposerSink

        sink = self.__dict__.get("_composer_sink")
        if sink is None:
            sink = self.__dict__["_composer_sink"] = ComposerSink(self)
        return sink

    def takes_artifacts(self) -> bool:
        """Whether file artifacts are routed to it: when its class handles them (Composer called
        every destination's `log_file_artifact`, or 0.32's `upload_file`; one that ignores them
        costs nothing)."""
        return overrides(self, "log_file_artifact") or overrides(self, "upload_file")

    @property
    def shows_media(self) -> frozenset[str]:  # type: ignore[override]
        """The media its class shows: images with `log_images`, tables with `log_table`,
        histograms with `log_histogram` (others are said once and counted, never sent)."""
        return frozenset(kind for kind, method in _MEDIA_METHODS.items() if overrides(self, method))

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        """Receive `data`, normalised and shared with no one: its values never change after the call."""

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Composer 0.32's `log_data`: `metrics` at `step`; called instead of `log_data` when a
        class overrides it and not `log_data`."""

    def log_images(self, images: Any, name: str = "Images", channels_last: bool = False, step: int | None = None,
                   masks: dict[str, Any] | None = None, mask_class_labels: dict[int, str] | None = None,
                   use_table: bool = True) -> None:
        """Receive images: a list of H x W x C uint8 arrays (``channels_last=True``), `masks` a
        mapping of mask names to one H x W class-id array per image (`composer_cfg.core.media`)."""

    def log_table(self, columns: list[str], rows: list[list[Any]], name: str = "Table", step: int | None = None) -> None:
        """Receive a table: `columns` names and `rows`, each a list of one value per column."""

    def log_histogram(self, name: str, histogram: Histogram, step: int) -> None:
        """Receive a histogram: counts, bin edges and the moments of the values (`Histogram`)."""

    def upload_file(self, state: State, remote_file_name: str, file_path: Path, *, overwrite: bool) -> None:
        """Composer 0.32's `log_file_artifact`; called instead of it when a class overrides it."""

    def can_upload_files(self) -> bool:
        """Composer 0.32's `can_log_file_artifacts` (which asks this one)."""
        return False

    def can_log_file_artifacts(self) -> bool:
        return self.can_upload_files()

    def log_file_artifact(self, state: State, log_level: LogLevel, artifact_name: str, file_path: Path, *,
                          overwrite: bool) -> None:
        """Receive a file to publish as `artifact_name`. Copy it before returning if you keep it."""

    def log_hyperparameters(self, state: State, hyperparameters: dict[str, Any]) -> None:
        """Keep the run's hyperparameters (nested, normalised like data) in the destination's own
        form; by default as FIT data when `hyperparameters_as_fit_data`, else not at all."""
        if self.hyperparameters_as_fit_data:
            self.log_data(state, LogLevel.FIT, hyperparameters)

    def flush(self, state: State | None = None, logger: Logger | None = None) -> None:
        """Write out what is buffered; called when `flush_schedule` says so, and at checkpoints."""

    def output_location(self) -> str | None:
        """Where this destination's data went (a path, a URL, "the console"...), if anywhere."""
        return None

    def get_file_artifact(self, artifact_name: str, destination: str | Path, overwrite: bool = False,
                          progress_bar: bool = True) -> None:
        """Download `artifact_name` to `destination`."""
        raise NotImplementedError(f"{type(self).__name__} cannot download artifacts")

    def hooked_events(self) -> frozenset[Event]:
        """The events this destination does something at: those whose hook its class (or the
        instance itself) overrides; every event when it overrides `run_event`.

        >>> class Flusher(LoggerDestination):
        ...     def epoch_end(self, state, logger): ...
        >>> sorted(event.value for event in Flusher().hooked_events())
        ['epoch_end']
        """
        own, base = getattr(self, "__dict__", {}), LoggerDestination
        if type(self).run_event is not base.run_event or "run_event" in own:
            return frozenset(Event)
        return frozenset(event for event in Event
                         if event.value in own or getattr(type(self), event.value) is not getattr(base, event.value))

    def run_event(self, event: Event | str, state: State, logger: Logger) -> None:
        """Call the hook named after `event`, then `flush` if the `flush_schedule` says one is due."""
        event = Event(event)
        getattr(self, event.value)(state, logger)
        schedule = self.flush_schedule
        if schedule is not None and schedule.due(event, state.timestamp):
            schedule.restart()
            self.flush(state, logger)

    def close(self, state: State, logger: Logger) -> None:
        """Final flush, once, when the run ends (normally or not). Other destinations may still
        send file artifacts until `post_close`."""

    def post_close(self) -> None:
        """Wait for background work (uploads); called after every destination's `close`, for
        those whose `close` did not raise. Must return within a bounded time."""

    def finalize(self, status: RunStatus) -> None:
        """Record how the run ended (FINISHED, FAILED, KILLED); called last, once, on every destination."""

    def report(self) -> dict[str, Any]:
        """What this destination can say of its own work so far, as plain JSON numbers; {} by default."""
        return {}

    def run_identity(self) -> dict[str, Any]:
        """What names this destination's record of the run in its back end, as plain JSON values."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    # One hook per Event, each a no-op by default.
    def init(self, state: State, logger: Logger) -> None: ...
    def fit_start(self, state: State, logger: Logger) -> None: ...
    def epoch_start(self, state: State, logger: Logger) -> None: ...
    def after_dataloader(self, state: State, logger: Logger) -> None: ...
    def batch_start(self, state: State, logger: Logger) -> None: ...
    def before_train_batch(self, state: State, logger: Logger) -> None: ...
    def before_forward(self, state: State, logger: Logger) -> None: ...
    def after_forward(self, state: State, logger: Logger) -> None: ...
    def before_loss(self, state: State, logger: Logger) -> None: ...
    def after_loss(self, state: State, logger: Logger) -> None: ...
    def before_backward(self, state: State, logger: Logger) -> None: ...
    def after_backward(self, state: State, logger: Logger) -> None: ...
    def after_train_batch(self, state: State, logger: Logger) -> None: ...
    def batch_end(self, state: State, logger: Logger) -> None: ...
    def batch_checkpoint(self, state: State, logger: Logger) -> None: ...
    def epoch_end(self, state: State, logger: Logger) -> None: ...
    def epoch_checkpoint(self, state: State, logger: Logger) -> None: ...
    def fit_end(self, state: State, logger: Logger) -> None: ...
    def eval_start(self, state: State, logger: Logger) -> None: ...
    def eval_batch_start(self, state: State, logger: Logger) -> None: ...
    def eval_before_forward(self, state: State, logger: Logger) -> None: ...
    def eval_after_forward(self, state: State, logger: Logger) -> None: ...
    def eval_batch_end(self, state: State, logger: Logger) -> None: ...
    def eval_end(self, state: State, logger: Logger) -> None: ...
    def predict_start(self, state: State, logger: Logger) -> None: ...
    def predict_batch_start(self, state: State, logger: Logger) -> None: ...
    def predict_before_forward(self, state: State, logger: Logger) -> None: ...
    def predict_after_forward(self, state: State, logger: Logger) -> None: ...
    def predict_batch_end(self, state: State, logger: Logger) -> None: ...
    def predict_end(self, state: State, logger: Logger) -> None: ...


_MEDIA_METHODS = {"images": "log_images", "table": "log_table", "histogram": "log_histogram"}


def overrides(destination: LoggerDestination, method: str) -> bool:
    """Whether `destination`'s class (or the instance itself) defines `method` anew."""
    return (method in getattr(destination, "__dict__", {})
            or getattr(type(destination), method) is not getattr(LoggerDestination, method))


class SinkDestination(LoggerDestination):
    """A destination whose records its own `Sink` writes (the built-in ones): configured and
    checked here, written there. Its Composer 0.8 methods, called by hand, become records on the
    destination's channel (see the module's docstring)."""

    channel_flushes: ClassVar[bool] = True
    event_hooks: frozenset[Event] = frozenset()  # type: ignore[assignment]
    shows_media: frozenset[str] = frozenset()  # type: ignore[assignment]  # what its sink shows

    def sink(self) -> Sink:
        sink = self.__dict__.get("_sink")
        if sink is None:
            sink = self.__dict__["_sink"] = self.make_sink()
        return sink

    def make_sink(self) -> Sink:
        """A new sink for this destination's settings."""
        raise NotImplementedError

    def takes_artifacts(self) -> bool:
        return self.can_log_file_artifacts()

    def can_log_file_artifacts(self) -> bool:
        return False

    def can_upload_files(self) -> bool:
        return self.can_log_file_artifacts()

    def attach(self, channel: Channel) -> None:
        """The channel a Logger made for this destination: calls by hand go through it too."""
        self.__dict__["_channel"] = channel

    def wait(self, timeout: float | None = None) -> Any:
        """Wait until everything logged so far is written (at most `timeout` seconds); how many
        records still wait (a tracker's queue after an outage, for example)."""
        channel = self.__dict__.get("_channel")
        if channel is None:
            return 0
        channel.flush(False, Deadline.after(timeout))
        return int(channel.report().get("queued", 0))

    # -- Composer's methods, by hand ---------------------------------------------------------

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        level, threshold = LogLevel.parse(log_level), self.log_level
        if threshold is not None and level > LogLevel.parse(threshold):
            return
        payload = normalise(data)
        self._put(state, None, Kind.DATA, level, redact(payload) if level is LogLevel.FIT else payload)

    def log_hyperparameters(self, state: State, hyperparameters: dict[str, Any]) -> None:
        self._put(state, None, Kind.HYPERPARAMETERS, LogLevel.FIT, redact(normalise(dict(hyperparameters))))

    def log_file_artifact(self, state: State, log_level: LogLevel, artifact_name: str, file_path: Path, *,
                          overwrite: bool) -> None:
        if not self.takes_artifacts():
            return
        channel = self.__dict__.get("_channel") or self._channel(state, None)
        if channel.closed:  # before copying anything
            raise RuntimeError(f"destination {channel.name!r} is closed: it takes no more records")
        staging = self.__dict__.setdefault("_staging", Staging())
        self._put(state, None, Kind.ARTIFACT, LogLevel.parse(log_level),
                  staging.artifact(artifact_name, Path(file_path), overwrite))

    def run_event(self, event: Event | str, state: State, logger: Logger) -> None:
        point = EventPoint(Event(event), state.dataloader_len, state.eval_dataloader_len)
        self._put(state, logger, Kind.EVENT, None, point)

    def flush(self, state: State | None = None, logger: Logger | None = None) -> None:
        channel = self.__dict__.get("_channel")
        if channel is not None:
            channel.flush(True, Deadline.never())

    def close(self, state: State, logger: Logger) -> None:
        channel = self.__dict__.get("_channel") or self._channel(state, logger)
        try:
            channel.close(RunStatus.FINISHED, Deadline.never())
        except Exception as error:
            if not self.remote:
                raise
            self.__dict__["_failure"] = error  # as Composer's uploaders did: said by post_close

    def post_close(self) -> None:
        failure = self.__dict__.pop("_failure", None)
        if failure is not None:
            raise failure

    def output_location(self) -> str | None:
        return self.sink().location()

    def report(self) -> dict[str, Any]:
        """What its channel and sink say of their work so far (`composer_cfg.core.logger.Logger.report`)."""
        channel = self.__dict__.get("_channel")
        return channel.report() if channel is not None else self.sink().report()

    def run_identity(self) -> dict[str, Any]:
        return self.sink().identity()

    def _put(self, state: State, logger: Logger | None, kind: Kind, level: LogLevel | None, payload: Any) -> None:
        when = time.time() if state.log_time is None else state.log_time
        channel = self.__dict__.get("_channel") or self._channel(state, logger)
        channel.put(Record(kind, level, state.timestamp, when, payload))

    def _channel(self, state: State, logger: Logger | None) -> Channel:
        """An inline channel of this destination's own, for calls by hand without a Logger."""

        def publish(name: str, path: Path, overwrite: bool) -> None:
            if logger is not None:
                logger.file_artifact(LogLevel.FIT, literal(name), literal(str(path)), overwrite=overwrite)

        def context() -> SinkContext:
            return SinkContext(state.facts(), state.timestamp, None, publish, channel.put,
                               logger)

        channel = InlineChannel(type(self).__name__, self, self.sink(), context=context)
        self.attach(channel)
        return channel
