"""`build_logger`: compose, validate and instantiate a `Logger` from the Hydra configs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from composer_cfg.config.compose import compose_config, node_path, raise_logger_problems
from composer_cfg.config.imports import allowing
from composer_cfg.config.params import job_directory, job_directory_given
from composer_cfg.config.sweep_job import current_sweep_job
from composer_cfg.config.validate import LOGGER_KEYS
from composer_cfg.core import dist
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.events import Event
from composer_cfg.core.logger import Logger
from composer_cfg.core.run_name import resolve_run_name
from composer_cfg.core.sink import Policies
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus
from composer_cfg.run.resume import Resume
from composer_cfg.runtime.exit_hooks import close_at_exit

__all__ = ["build_logger", "compose_config", "instantiate_logger"]
LOG = logging.getLogger("composer_cfg")


def build_logger(
    state: State | None = None,
    overrides: Sequence[str] = (),
    config_name: str = "config",
    config_dir: str | Path | None = None,
    *,
    resume: Resume | str | None = None,
) -> Logger:
    """Compose the config, validate it, and return the `Logger` it declares, ready to use.

    `overrides` take Hydra's command-line syntax; `config_dir` is searched before the packaged
    configs. `Event.INIT` has already been fired (firing it again is harmless). A given `state`
    wins over the config's ``run_name``. Relative paths resolve as `instantiate_logger` says.
    `resume` (never, auto, must) wins over the config's ``resume``.

    >>> logger = build_logger(overrides=["run_name=docs", "logger/destinations=[in_memory]"])
    >>> logger.data_batch({"loss": 0.25})
    >>> logger.close()
    """
    if resume is not None:
        overrides = [*overrides, f"resume={Resume.parse(resume).value}"]
    cfg = compose_config(overrides, config_name, config_dir)
    return instantiate_logger(cfg.get("logger"), state, run_name=cfg.get("run_name"), resume=cfg.get("resume"))


def instantiate_logger(
    logger_cfg: DictConfig | Mapping[str, Any] | None, state: State | None = None, *, run_name: str | None = None,
    resume: Resume | str | None = None,
) -> Logger:
    """Validate an already-composed ``logger`` node, build its `Logger`, guard it, fire `Event.INIT`.

    The way a Hydra app of your own builds composer_cfg's logger (``instantiate_logger(cfg.logger)``)
    or a script that made its config some other way: the same checks and errors as the command,
    no second composition. The run's name: `state`'s, else `run_name`, else ``COMPOSER_RUN_NAME``
    or ``RUN_NAME``, else one generated and agreed by every rank. ``None`` (``logger=null``,
    ``logger=none``) means no logging: a Logger with no destinations. `resume` (never, the
    default; auto; must): what to do when the run already exists (see `composer_cfg.run.resume`).
    Relative paths of the run's files resolve in `state.directory` if set, else in the job's
    directory inside an app run by `hydra_main` (and the command), else in the working directory.

    If a destination fails to build or to start, every destination built is closed (status
    FAILED: files flushed, stream captures undone, hooks removed) before the error is raised.
    """
    from hydra.utils import instantiate

    node = None if logger_cfg is None else logger_cfg if isinstance(logger_cfg, DictConfig) else OmegaConf.create(dict(logger_cfg))
    policy = Resume.parse(resume or Resume.NEVER)
    directory = state.directory if state is not None and state.directory is not None else job_directory_given()
    with job_directory(directory):  # relative paths: checked, and later written, there
        if node is not None:  # the files checked are those of the run's name: a given state's wins
            raise_logger_problems(node, run_name if state is None else state.run_name, policy)
        if state is None:
            dist_info = dist.current()
            state = State(resolve_run_name(run_name, dist_info), dist_info=dist_info)
        state.directory = directory
        built: dict[str, Policies] = {}
        if node is None:
            logger = Logger(state, resume=policy)
        else:
            if not any(destination is not None for destination in node.destinations.values()):
                LOG.warning("%s.destinations: no destination is selected, so nothing will be logged; choose some with "
                            "'logger/destinations=[file,jsonl]', or say logger=none", node_path(node))
            try:
                instantiate_destinations(node, into=built)
                job = current_sweep_job()
                for destination in built.values() if job is not None else ():
                    destination.join_sweep(job.sweep, job.overrides)
                logger_node = OmegaConf.masked_copy(node, [key for key in node if key not in LOGGER_KEYS])
                logger = instantiate(logger_node, state, destinations=built, resume=policy, _convert_="all")
            except BaseException:
                Logger(state, built).close(RunStatus.FAILED)
                raise
        close_at_exit(logger).run_event(Event.INIT)  # closes the logger itself if a destination fails
    return logger


def instantiate_destinations(
    node: DictConfig, into: dict[str, Policies], only: Sequence[str] | None = None
) -> dict[str, Policies]:
    """Build, into `into` (by name, in order), each destination a validated ``logger`` node
    selects (or those of them named in `only`); none is started. A destination that fails to
    build is a `ConfigError` naming it."""
    from hydra.utils import instantiate

    with allowing(node.get("allowed_modules") or ()):  # what a constructor imports by name, too
        for name, destination in node.destinations.items():
            if destination is not None and (only is None or name in only):
                into[name] = _instantiate(instantiate, f"{node_path(node)}.destinations.{name}", destination)
    return into


def _instantiate(instantiate: Any, path: str, node: DictConfig) -> Any:
    from hydra.errors import InstantiationException

    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"{path}: cannot build {node.get('_target_')}: {type(cause).__name__}: {cause}") from cause
