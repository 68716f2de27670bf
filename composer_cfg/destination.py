"""`LoggerDestination`: the base class of every place logged data can go."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer_cfg.events import Event
from composer_cfg.log_level import LogLevel
from composer_cfg.state import State

if TYPE_CHECKING:
    from composer_cfg.logger import Logger


class LoggerDestination:
    """Receives logged data, file artifacts and training events. Every method has a default.

    `log_level` is the threshold: the `Logger` sends a `data` call made at level ``l`` only when
    ``l <= log_level`` (``None`` means every level). It is read once, when the Logger is built.

    A minimal destination:

    >>> class Printer(LoggerDestination):
    ...     def log_data(self, state, log_level, data):
    ...         print(log_level.name, data)
    """

    log_level: LogLevel | None = None

    #: Optional: ``check_config(params, world_size)``, a classmethod raising `ConfigError` for rules
    #: that span several parameters; the config validator calls it before anything is built.

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        """Receive `data`. The dict is shared with other destinations: copy what you keep."""

    def log_file_artifact(
        self, state: State, log_level: LogLevel, artifact_name: str, file_path: Path, *, overwrite: bool
    ) -> None:
        """Receive a file to publish as `artifact_name`. Copy it before returning if you keep it."""

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

    def run_event(self, event: Event | str, state: State, logger: Logger) -> None:
        """Call the hook named after `event`."""
        getattr(self, Event(event).value)(state, logger)

    def close(self, state: State, logger: Logger) -> None:
        """Flush and release resources; called once when the run ends, normally or not."""

    def post_close(self) -> None:
        """Called after every destination's `close`, for those whose `close` did not raise."""

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
