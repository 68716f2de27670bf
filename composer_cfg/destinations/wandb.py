"""`WandBLogger`: metrics, config and artifacts in a Weights & Biases run (offline by default)."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from composer_cfg.background import BackgroundWorker
from composer_cfg.destination import LoggerDestination
from composer_cfg.log_level import LogLevel
from composer_cfg.params import POSITIVE, Level, PositiveFloat
from composer_cfg.secrets import redact, redact_override
from composer_cfg.state import State
from composer_cfg.status import RunStatus

if TYPE_CHECKING:
    from composer_cfg.logger import Logger

LOG = logging.getLogger("composer_cfg")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class WandBLogger(LoggerDestination):
    """Logs to a W&B run: EPOCH and BATCH data with ``step=batch``, FIT data into the run's config.

    Args:
        project, entity, group, name, tags: the run's W&B fields; `name` defaults to the run
            name. With `rank_zero_only` False every rank has a run, named ``<name> [RANK_<r>]``
            and grouped under `group` (default: the run name).
        mode: ``offline`` (default: nothing leaves the machine; ``wandb sync`` uploads later),
            ``online`` or ``disabled``.
        dir: where the run directory is written (default: the working directory).
        log_artifacts: also store file artifacts as single-file W&B artifacts, aliased
            ``latest`` and ``ep<epoch>-ba<batch>``; names are reduced to ``[a-zA-Z0-9_.-]``.
        init_params: any other ``wandb.init`` keyword arguments (they win).
        timeout: the longest, in seconds, the training thread waits for W&B to finish the run.

    The run is finished with exit code 0 when the run FINISHED, else 1 (FAILED, KILLED).
    Secrets are masked in the ``config`` of `init_params` (`composer_cfg.secrets`); W&B records
    the command line in its run metadata, so when the command line holds a secret, that metadata
    is not collected (W&B's ``x_disable_meta`` setting).
    """

    thread_safe = True
    remote = True
    requires = {"wandb": "wandb"}

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        group: str | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        *,
        mode: str = "offline",
        dir: str | None = None,  # noqa: A002 - wandb.init's own name
        log_artifacts: bool = False,
        rank_zero_only: bool = True,
        log_level: Level = LogLevel.BATCH,
        init_params: Mapping[str, Any] | None = None,
        timeout: PositiveFloat = 60.0,
    ) -> None:
        self.init_params: dict[str, Any] = {
            "project": project, "entity": entity, "group": group, "name": name,
            "tags": list(tags) if tags else None, "mode": mode, "dir": dir, **dict(init_params or {}),
        }
        self.log_artifacts = bool(log_artifacts)
        self.rank_zero_only = bool(rank_zero_only)
        self.log_level = LogLevel.parse(log_level)
        self.timeout = float(POSITIVE.check("timeout", timeout))
        self.run: Any = None
        self._location: str | None = None  # the run's directory, once it has one
        self._finished = False
        self._lock = threading.RLock()

    def can_log_file_artifacts(self) -> bool:
        return self.log_artifacts

    def output_location(self) -> str | None:
        return self._location

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        with self._lock:
            run = self.run or self._start(state)
            if log_level is LogLevel.FIT:
                run.config.update(data, allow_val_change=True)
            else:
                run.log(data, step=state.timestamp.batch)

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

    def _start(self, state: State) -> Any:
        """Start the W&B run (the caller holds the lock)."""
        import wandb

        if self._finished:  # a call still in flight when the Logger closed: no second run
            raise RuntimeError("WandBLogger is closed: its run is finished")
        params = dict(self.init_params)
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
            self.run = wandb.init(**{key: value for key, value in params.items() if value is not None})
        self._location = self.run.dir
        return self.run
