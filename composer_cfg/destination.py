"""`LoggerDestination`: the base class of every place logged data can go."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from composer_cfg.core.events import Event
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus

if TYPE_CHECKING:
    from composer_cfg.logger import Logger


class LoggerDestination:
    """Receives logged data, file artifacts and training events. Every method has a default.

    A destination declares its policies as attributes; the `Logger` reads them once, when it is
    built, and applies them, so no destination re-implements them:

    * `log_level`: the threshold. A ``data`` call at level ``l`` reaches the destination only
      when ``l <= log_level`` (None: every level).
    * `rank_zero_only`: only global rank 0 receives anything (data, artifacts, events, close);
      on the other ranks the destination costs nothing.
    * `thread_safe`: False (the default) makes the Logger serialise every call into the
      destination with a lock of its own, as `logging` does for a handler. A destination that
      locks what it needs itself says True.
    * `flush_schedule`: when `run_event` calls `flush` after an event (see `FlushSchedule`).
    * `remote`: its back end may be slow or unreachable (a server, an object store): it is closed
      after the local destinations, so a hung server never keeps a local file from its last flush.
    * `check_config`: rules across several constructor parameters, checked with the config.
    * `requires`: the modules its back end imports, each with the pip extra that installs it;
      the config validator names the missing ones and the ``pip install`` that adds them.
    * `aliases`: old names of parameters (old name -> name), accepted by the constructor and
      listed in no YAML file (`check_config` refuses both at once).
    * `offloadable`: it only writes files of its own, so with ``Logger(offload_writers=True)``
      its data, hyperparameters and events may be written on a thread of its own
      (`composer_cfg.offload`).
    * `hyperparameters_as_fit_data`: trackers and record files take `log_hyperparameters` as FIT
      data, their native form for hyperparameters; others (a text log, a bar) ignore them.

    The lifecycle: built; ``init`` (`Event.INIT`, or the first call); the run's events and
    calls; then, when the Logger closes, `close` on every destination (a final flush: others
    may still send file artifacts), `post_close` on those whose close succeeded (wait for
    background work such as uploads), and `finalize` on every one, with how the run ended.

    A minimal destination:

    >>> class Printer(LoggerDestination):
    ...     def log_data(self, state, log_level, data):
    ...         print(log_level.name, data)
    """

    log_level: LogLevel | None = None
    rank_zero_only: bool = False
    thread_safe: ClassVar[bool] = False
    remote: ClassVar[bool] = False
    requires: ClassVar[Mapping[str, str]] = {}
    aliases: ClassVar[Mapping[str, str]] = {}
    hyperparameters_as_fit_data: ClassVar[bool] = False
    offloadable: ClassVar[bool] = False
    flush_schedule: FlushSchedule | None = None
    #: Its back end can not take back points a killed attempt sent after its last checkpoint (a
    #: tracker): in a resumable run the Logger holds its data until each checkpoint.
    holds_until_checkpoint: ClassVar[bool] = False

    @classmethod
    def check_config(cls, params: Mapping[str, Any], world_size: int) -> None:
        """Raise `ConfigError` (key first: ``"log_dir: ..."``) for rules that span several parameters.

        Called by the config validator before anything is built, with the node's parameters;
        constructors call it too, so a script and a config meet the same rules.
        """

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        """Receive `data`, already normalised (see `composer_cfg.core.values`) and shared with the other
        destinations: do not modify it. Its values never change after the call; the dict may."""

    def log_file_artifact(
        self, state: State, log_level: LogLevel, artifact_name: str, file_path: Path, *, overwrite: bool
    ) -> None:
        """Receive a file to publish as `artifact_name`. Copy it before returning if you keep it."""

    def join_sweep(self, sweep: str, overrides: Sequence[str]) -> None:
        """Before `init`: this run is one job of the sweep `sweep`, run with `overrides`. Trackers
        put the job in the sweep's group and tag it with its overrides; by default, nothing."""

    def log_hyperparameters(self, state: State, hyperparameters: dict[str, Any]) -> None:
        """Keep the run's hyperparameters (nested, normalised like data) in the destination's own
        form; by default as FIT data when `hyperparameters_as_fit_data`, else not at all."""
        if self.hyperparameters_as_fit_data:
            self.log_data(state, LogLevel.FIT, hyperparameters)

    def flush(self, state: State, logger: Logger) -> None:
        """Write out what is buffered; called when `flush_schedule` says so."""

    def checkpoint_saved(self, state: State, logger: Logger) -> None:
        """A checkpoint was saved: make everything logged so far durable (delivered, on disk),
        so that a run resumed from it continues exactly after it. By default: `flush`."""
        self.flush(state, logger)

    def output_location(self) -> str | None:
        """Where this destination's data went (a path, a URL, "the console"...), if anywhere."""
        return None

    def can_log_file_artifacts(self) -> bool:
        """Whether `log_file_artifact` stores anything (informative; every destination gets the call)."""
        return False

    def get_file_artifact(
        self, artifact_name: str, destination: str | Path, overwrite: bool = False, progress_bar: bool = True
    ) -> None:
        """Download `artifact_name` to `destination`."""
        raise NotImplementedError(f"{type(self).__name__} cannot download artifacts")

    def hooked_events(self) -> frozenset[Event]:
        """The events this destination does something at: those whose hook its class (or the
        instance itself) overrides; every event when it overrides `run_event`. At any other
        event, `run_event` only flushes when due. The `Logger` asks once, when it is built.

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
        """Call the hook named after `event`, then `flush` if the `flush_schedule` says one is due
        (whether the `Logger` fires the event or a caller drives the destination by hand)."""
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
        """Record how the run ended (FINISHED, FAILED, KILLED) and release what is still open;
        called last, once, on every destination, even when its `close` raised."""

    def report(self) -> dict[str, Any]:
        """What this destination can say of its own work so far, as plain JSON numbers: a remote
        one its queue (``queued``, ``delivered``, ``spooled``, ``dropped``...), a file writer its
        ``bytes_written``; {} by default. The Logger adds them to its `Logger.report`."""
        return {}

    def run_identity(self) -> dict[str, Any]:
        """What names this destination's record of the run in its back end (a tracker's run id),
        as plain JSON values; {} when there is nothing to name. Asked once the record exists."""
        return {}

    def continue_run(self, identity: Mapping[str, Any]) -> None:
        """Before `Event.INIT`: add to the record `identity` names (an earlier `run_identity`)
        instead of starting a new one, from the state's timestamp at INIT (the resume point).
        By default there is nothing to continue: a no-op."""

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
