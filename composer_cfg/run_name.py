"""The run's name: given, taken from the environment, or generated."""

from __future__ import annotations

import os
import time
from typing import Mapping

from composer_cfg.dist import DistInfo
from composer_cfg.errors import ConfigError

ENV_VARIABLES = ("COMPOSER_RUN_NAME", "RUN_NAME")


def resolve_run_name(configured: str | None, dist_info: DistInfo, environ: Mapping[str, str] | None = None) -> str:
    """`configured` if set, else ``COMPOSER_RUN_NAME``/``RUN_NAME``, else a new name.

    A generated name looks like ``1764031234-electric-zebra``. Several ranks can not each make
    one up (they would disagree), so without a given name a multi-rank run is an error.
    """
    env = os.environ if environ is None else environ
    if configured is not None:
        return check_run_name(configured)
    for variable in ENV_VARIABLES:
        if env.get(variable):
            return check_run_name(env[variable], key=variable)
    if dist_info.world_size > 1:
        raise ConfigError(
            f"run_name: not set, and the {dist_info.world_size} ranks of this run can not agree on a generated "
            f"one; set run_name in the config or COMPOSER_RUN_NAME in every rank's environment"
        )
    return generate_run_name()


def generate_run_name() -> str:
    """``<unix time>-<adjective>-<noun>``."""
    import coolname

    return f"{int(time.time())}-{coolname.generate_slug(2)}"


def check_run_name(name: object, key: str = "run_name") -> str:
    """`name` if it can name directories and artifacts safely; else `ConfigError`."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {name!r}")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"{key}: {name!r} must not contain '/' or '\\\\' or be '.' or '..': it names a directory")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ConfigError(f"{key}: {name!r} contains a control character")
    return name
