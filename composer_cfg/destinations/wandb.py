"""`WandBLogger`: metrics, config and artifacts in a Weights & Biases run (offline by default)."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Mapping, Sequence

from composer_cfg.background import BackgroundWorker
from composer_cfg.destination import LoggerDestination
from composer_cfg.destinations.wandb_params import check_init_params
from composer_cfg.errors import ConfigError
from composer_cfg.log_level import LogLevel
from composer_cfg.params import DIRECTORY, POSITIVE, Level, PositiveFloat
from composer_cfg.secrets import redact, redact_override
from composer_cfg.state import State
from composer_cfg.status import RunStatus

if TYPE_CHECKING:
    from composer_cfg.logger import Logger

LOG = logging.getLogger("composer_cfg")
MAX_TAG = 64
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class WandBLogger(LoggerDestination):
    """Logs to a W&B run: EPOCH and BATCH data with ``step=batch``, FIT data into the run's config.

    Args (the first eight in Composer 0.8's order):
        project, group, name, entity, tags: the run's W&B fields; `name` defaults to the run
            name. With `rank_zero_only` False every rank has a run, named ``<name> [RANK_<r>]``
            and grouped under `group` (default: the run name).
        log_artifacts: also store file artifacts as single-file W&B artifacts, aliased
            ``latest`` and ``ep<epoch>-ba<batch>``; names are reduced to ``[a-zA-Z0-9_.-]``.
        init_kwargs: any other ``wandb.init`` keyword arguments (they win); `init_params` is
            its Composer 0.7 name, accepted too (not both).
        mode: ``offline`` (default: nothing leaves the machine; ``wandb sync`` uploads later),
            ``online`` or ``disabled``.
        dir: where the run directory is written (default: the working directory).
        timeout: the longest, in seconds, the training thread waits for W&B to finish the run.

    The run is finished with exit code 0 when the run FINISHED, else 1 (FAILED, KILLED).
    Secrets are masked in the ``config`` of `init_kwargs` (`composer_cfg.secrets`); W&B records
    the command line in its run metadata, so when the command line holds a secret, that metadata
    is not collected (W&B's ``x_disable_meta`` setting).
    """

    thread_safe = True
    hyperparameters_as_fit_data = True
    remote = True
    requires = {"wandb": "wandb"}
    aliases = {"init_params": "init_kwargs"}  # Composer 0.7's name

    def __init__(
        self,
        project: str | None = None,
        group: str | None = None,
        name: str | None = None,
        entity: str | None = None,
        tags: Sequence[str] | None = None,
        log_artifacts: bool = False,
        rank_zero_only: bool = True,
        init_kwargs: Mapping[str, Any] | None = None,
        *,
        mode: str = "offline",
        dir: Annotated[str, DIRECTORY] | None = None,  # noqa: A002 - wandb.init's own name
        log_level: Level = LogLevel.BATCH,
        init_params: Mapping[str, Any] | None = None,
        timeout: PositiveFloat = 60.0,
    ) -> None:
        self.check_config({"init_kwargs": init_kwargs, "init_params": init_params}, 1)
        extra = init_kwargs or init_params
        self.init_kwargs: dict[str, Any] = {
            "project": project, "entity": entity, "group": group, "name": name,
            "tags": list(tags) if tags else None, "mode": mode, "dir": dir, **dict(extra or {}),
        }
        self.log_artifacts = bool(log_artifacts)
        self.rank_zero_only = bool(rank_zero_only)
        self.log_level = LogLevel.parse(log_level)
        self.timeout = float(POSITIVE.check("timeout", timeout))
        self.run: Any = None
        self._location: str | None = None  # the run's directory, once it has one
        self._id: str | None = None  # the W&B run's id, once it has one
        self._finished = False
        self._process_hooks: tuple[tuple[Any, Any], tuple[Any, Any]] | None = None  # (before, wandb's)
        self._lock = threading.RLock()

    @classmethod
    def check_config(cls, params: Mapping[str, Any], world_size: int) -> None:
        """`init_kwargs` and its old name `init_params` are one parameter: not both; then W&B's
        own rules for the run's fields and those keyword arguments (see `check_init_params`)."""
        if params.get("init_kwargs") and params.get("init_params"):  # see `aliases`
            raise ConfigError("init_params: give init_kwargs or init_params (its Composer 0.7 name), not both",
                              key="init_params")
        check_init_params(params)

    def can_log_file_artifacts(self) -> bool:
        return self.log_artifacts

    def output_location(self) -> str | None:
        return self._location

    def run_identity(self) -> dict[str, Any]:
        return {"id": self._id} if self._id else {}

    def continue_run(self, identity: Mapping[str, Any]) -> None:
        """Add to the W&B run ``identity["id"]`` (``resume="allow"``; offline, a new run directory
        with the same id, which ``wandb sync`` appends)."""
        if identity.get("id"):
            self.init_kwargs.update(id=identity["id"], resume="allow")

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        with self._lock:
            run = self.run or self._start(state)
            if log_level is LogLevel.FIT:
                run.config.update(data, allow_val_change=True)
            else:
                run.log(data, step=int(state.timestamp.batch))

    def log_file_artifact(
        self, state: State, log_level: LogLevel, artifact_name: str, file_path: Path, *, overwrite: bool
    ) -> None:
        if not self.log_artifacts:
            return
        import wandb

        name = _UNSAFE.sub(".", artifact_name)
        if name != artifact_name:
            LOG.warning("WandBLogger: artifact %r is stored as %r (W&B allows [a-zA-Z0-9_.-])", artifact_name, name)
        kind = name.rpartition(".")[2] if "." in name else "file"
        artifact = wandb.Artifact(name, type=kind)
        artifact.add_file(str(file_path), name=Path(artifact_name).name)
        timestamp = state.timestamp
        with self._lock:
            run = self.run or self._start(state)
            run.log_artifact(artifact, aliases=["latest", f"ep{timestamp.epoch}-ba{timestamp.batch}"])

    def join_sweep(self, sweep: str, overrides: Sequence[str]) -> None:
        """The sweep is the run's group (unless one is configured); each override is a tag (W&B
        keeps tags up to 64 characters)."""
        self.init_kwargs["group"] = self.init_kwargs.get("group") or sweep
        self.init_kwargs["tags"] = [*(self.init_kwargs.get("tags") or []), *(o[:MAX_TAG] for o in overrides)]

    def init(self, state: State, logger: Logger) -> None:
        with self._lock:
            if self.run is None:
                self._start(state)

    def finalize(self, status: RunStatus) -> None:
        """Finish the W&B run, exit code 0 for FINISHED, else 1 (waiting at most `timeout` s)."""
        with self._lock:
            run, self.run, self._finished = self.run, None, True
        if run is not None:
            worker = BackgroundWorker("wandb")
            try:
                worker.call("finishing the W&B run", run.finish, status.exit_code, timeout=self.timeout)
            finally:
                worker.stop()
                self._restore_process_hooks()

    def _restore_process_hooks(self) -> None:
        """Undo wandb's patches of `sys.exit` and `sys.excepthook` (it never does), unless something
        else replaced them since."""
        saved, self._process_hooks = self._process_hooks, None
        if saved is None:
            return
        (exit_before, hook_before), (exit_by_wandb, hook_by_wandb) = saved
        if sys.exit == exit_by_wandb:
            sys.exit = exit_before
        if sys.excepthook == hook_by_wandb:
            sys.excepthook = hook_before

    def _start(self, state: State) -> Any:
        """Start the W&B run (the caller holds the lock)."""
        import wandb

        if self._finished:  # a call still in flight when the Logger closed: no second run
            raise RuntimeError("WandBLogger is closed: its run is finished")
        params = dict(self.init_kwargs)
        # wandb's process-wide settings keep the first working directory: say where, every time
        # (a sweep's next job runs in another directory of the same process).
        params["dir"] = os.path.abspath(params.get("dir") or ".")
        params["name"] = params.get("name") or state.run_name
        params["config"] = redact(params.get("config"))
        if not self.rank_zero_only:
            params["group"] = params.get("group") or params["name"]
            params["name"] = f"{params['name']} [RANK_{state.rank}]"
        secret_in_argv = any(redact_override(arg) != arg for arg in sys.argv[1:])
        # our FileLogger captures the console
        params.setdefault("settings", wandb.Settings(console="off", x_disable_meta=secret_in_argv))
        params.setdefault("reinit", "create_new")  # several loggers in one process: several runs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            before = sys.exit, sys.excepthook
            self.run = wandb.init(**{key: value for key, value in params.items() if value is not None})
            self._process_hooks = before, (sys.exit, sys.excepthook)
        self._location, self._id = self.run.dir, self.run.id
        return self.run
