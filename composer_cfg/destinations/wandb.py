"""`WandBLogger`: metrics, config and artifacts in a Weights & Biases run (offline by default)."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Mapping, Sequence

from composer_cfg.background import FINALIZE_RESERVE, wait
from composer_cfg.delivery import Courier, DeliveryPolicy, DeliveryQueue, QueuedDelivery, Record
from composer_cfg.destination import LoggerDestination
from composer_cfg.destinations.wandb_params import check_init_params
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.log_level import LogLevel
from composer_cfg.config.params import DIRECTORY, POSITIVE, Level, PositiveFloat, PositiveInt, Undelivered, WhenFull
from composer_cfg.core.secrets import redact, redact_override
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus

if TYPE_CHECKING:
    from composer_cfg.logger import Logger

LOG = logging.getLogger("composer_cfg")
MAX_TAG = 64
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class WandBLogger(QueuedDelivery, LoggerDestination):
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
        timeout: the longest, in seconds, the training thread waits for W&B: to start the run at
            `Event.INIT`, for room in a full queue, and in all at close (delivering what is
            left, then finishing the run).
        queue_size, when_full, undelivered: the delivery queue (`composer_cfg.delivery`), as
            for `MLFlowLogger`; the spool is ``{run_name}/undelivered-wandb-rank<rank>.jsonl``.

    Every call into W&B (starting the run, logging, artifacts, finishing) runs in order on a
    background thread: logging only enqueues. The run is finished with exit code 0 when the run
    FINISHED, else 1 (FAILED, KILLED).
    Secrets are masked in the ``config`` of `init_kwargs` (`composer_cfg.core.secrets`); W&B records
    the command line in its run metadata, so when the command line holds a secret, that metadata
    is not collected (W&B's ``x_disable_meta`` setting).
    """

    thread_safe = True
    hyperparameters_as_fit_data = True
    remote = True
    holds_until_checkpoint = True  # W&B keeps every point of a step logged twice
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
        queue_size: PositiveInt = 10_000,
        when_full: WhenFull = "drop",
        undelivered: Undelivered = "spool",
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
        self.policy = DeliveryPolicy.checked(queue_size, when_full, undelivered, self.timeout)
        self._queue = DeliveryQueue("W&B", self.policy, self._spool, on_full=lambda: self._courier.deliver_soon())
        self._courier = Courier("wandb", self._send, lambda: len(self._queue) > 0, self.timeout)
        self.run: Any = None
        self._location: str | None = None  # the run's directory, once it has one
        self._id: str | None = None  # the W&B run's id, once it has one
        self._name = "wandb"  # its name in the Logger, known at INIT: the spool's file is named after it
        self._where: tuple[str, int] | None = None  # the run's name and rank, once started
        self._started: Future[Any] | None = None  # starting the run, on the worker
        self._closing = False  # close started: no more data (artifacts still, until finalize)
        self._finished = False
        self._process_hooks: tuple[tuple[Any, Any], tuple[Any, Any]] | None = None  # (before, wandb's)
        self._lock = threading.Lock()

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
        self._start(state, block=False)
        if self._closing:  # a call still in flight when the Logger closed: nothing would send it
            raise RuntimeError("WandBLogger is closed: it takes no more data")
        self._queue.put(Record(log_level, state.timestamp, time.time() if state.log_time is None else state.log_time,
                               data))
        self._courier.deliver_soon()

    def _send(self) -> bool:
        """On the worker: give W&B the oldest waiting call; False when none waits."""
        waiting = self._queue.waiting(1)
        if not waiting:
            return False
        record, run = waiting[0], self._run_or_fail()
        if record.level is LogLevel.FIT:
            run.config.update(record.data, allow_val_change=True)
        else:
            run.log(record.data, step=int(record.timestamp.batch))
        self._queue.delivered(1)
        return True

    def _run_or_fail(self) -> Any:
        if self.run is None:
            raise RuntimeError("there is no W&B run: starting it failed")
        return self.run

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
        self._start(state, block=False)
        self._courier.request(self._log_artifact, artifact, ["latest", f"ep{timestamp.epoch}-ba{timestamp.batch}"])

    def _log_artifact(self, artifact: Any, aliases: list[str]) -> None:
        self._run_or_fail().log_artifact(artifact, aliases=aliases)

    def join_sweep(self, sweep: str, overrides: Sequence[str]) -> None:
        """The sweep is the run's group (unless one is configured); each override is a tag (W&B
        keeps tags up to 64 characters)."""
        self.init_kwargs["group"] = self.init_kwargs.get("group") or sweep
        self.init_kwargs["tags"] = [*(self.init_kwargs.get("tags") or []), *(o[:MAX_TAG] for o in overrides)]

    def init(self, state: State, logger: Logger) -> None:
        self._name = logger.name_of(self)
        self._start(state, block=True)

    def close(self, state: State, logger: Logger) -> None:
        """Take no more data; deliver what is queued. Artifacts are still taken until `finalize`."""
        self._closing = True
        self._courier.start_closing()
        self._courier.deliver_soon()

    def post_close(self) -> None:
        """Wait for the queued calls (at most `timeout` seconds in all with `finalize`)."""
        if self._courier.last_request is None:
            return
        try:
            reserve = min(FINALIZE_RESERVE, self.timeout / 4)  # finishing the run matters most
            wait("delivering the last calls to W&B", self._courier.last_request, self._courier.time_left(reserve),
                 FINALIZE_RESERVE)
        except Exception:  # noqa: BLE001 - a timeout: the worker goes on until finalize; a failure: just below
            pass
        self._courier.raise_failure()

    def finalize(self, status: RunStatus) -> None:
        """Finish the W&B run, exit code 0 for FINISHED, else 1 (the worker delivers what is queued
        first); spool or drop what W&B did not take; undo wandb's process-wide patches."""
        with self._lock:
            started, self._finished = self._started, True
        try:
            if started is not None:
                wait("starting the W&B run", started, self._courier.time_left())
                self._courier.worker.call("finishing the W&B run", self._finish, status.exit_code,
                                          timeout=self._courier.time_left())
                self._courier.raise_failure()
        finally:
            try:
                self._queue.settle()
            finally:
                self._courier.worker.stop()
                self._restore_process_hooks()

    def _finish(self, exit_code: int) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.finish(exit_code)

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

    def _start(self, state: State, block: bool) -> None:
        """Queue the run's start on first use; with `block` (at INIT), wait for it, at most `timeout`
        seconds. Only ever one run: a start that timed out is not queued again."""
        with self._lock:
            if self._finished:  # a call still in flight when the Logger closed: no second run
                raise RuntimeError("WandBLogger is closed: its run is finished")
            if self._started is None:
                self._where = (state.run_name, state.rank)
                self._started = self._courier.request(self._init_run, self._init_params(state))
            started = self._started
        if block:
            wait("starting the W&B run", started, self.timeout)

    def _init_params(self, state: State) -> dict[str, Any]:
        """`wandb.init`'s keyword arguments for this run."""
        import wandb

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
        return {key: value for key, value in params.items() if value is not None}

    def _init_run(self, params: dict[str, Any]) -> None:
        """On the worker: start the W&B run."""
        import wandb

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            before = sys.exit, sys.excepthook
            self.run = wandb.init(**params)
            self._process_hooks = before, (sys.exit, sys.excepthook)
        self._location, self._id = self.run.dir, self.run.id
