"""`build_logger`: compose, validate and instantiate a `Logger` from the Hydra configs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from composer_cfg import dist
from composer_cfg.config.compose import compose_config
from composer_cfg.destination import LoggerDestination
from composer_cfg.errors import ConfigError
from composer_cfg.events import Event
from composer_cfg.exit_hooks import close_at_exit
from composer_cfg.logger import Logger
from composer_cfg.run_name import resolve_run_name
from composer_cfg.state import State
from composer_cfg.status import RunStatus

__all__ = ["build_logger", "compose_config", "instantiate_logger"]


def build_logger(
    state: State | None = None,
    overrides: Sequence[str] = (),
    config_name: str = "config",
    config_dir: str | Path | None = None,
) -> Logger:
    """Compose the config, validate it, and return the `Logger` it declares, ready to use.

    `overrides` take Hydra's command-line syntax; `config_dir` is searched before the packaged
    configs. `Event.INIT` has already been fired (firing it again is harmless). A given `state`
    wins over the config's ``run_name``. Relative paths resolve in the working directory.

    >>> logger = build_logger(overrides=["run_name=docs", "logger/destinations=[in_memory]"])
    >>> logger.data_batch({"loss": 0.25})
    >>> logger.close()
    """
    return instantiate_logger(compose_config(overrides, config_name, config_dir), state)


def instantiate_logger(cfg: DictConfig, state: State | None = None) -> Logger:
    """Build the `Logger` of a validated config, guard it (`close_at_exit`), then fire `Event.INIT`.

    If a destination fails to build or to start, every destination built is closed (status
    FAILED: files flushed, stream captures undone, hooks removed) before the error is raised.
    """
    from hydra.utils import instantiate

    if state is None:
        dist_info = dist.current()
        state = State(resolve_run_name(cfg.get("run_name"), dist_info), dist_info=dist_info)
    built: dict[str, LoggerDestination] = {}
    try:
        for name, node in cfg.logger.destinations.items():
            if node is not None:
                built[name] = _instantiate(instantiate, f"logger.destinations.{name}", node)
        logger_node = OmegaConf.masked_copy(cfg.logger, [k for k in cfg.logger if k != "destinations"])
        logger: Logger = instantiate(logger_node, state, destinations=built, _convert_="all")
    except BaseException:
        Logger(state, built).close(RunStatus.FAILED)
        raise
    close_at_exit(logger).run_event(Event.INIT)  # closes the logger itself if a destination fails
    return logger


def _instantiate(instantiate: Any, path: str, node: DictConfig) -> Any:
    from hydra.errors import InstantiationException

    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"{path}: cannot build {node.get('_target_')}: {type(cause).__name__}: {cause}") from cause
