"""The run's name: given, taken from the environment, or generated."""

from __future__ import annotations

import os
import time
from typing import Mapping

from composer_cfg.core.dist import DistInfo
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.formatting import has_control_character
from composer_cfg.core.templates import check_name_length

ENV_VARIABLES = ("COMPOSER_RUN_NAME", "RUN_NAME")


def resolve_run_name(configured: str | None, dist_info: DistInfo, environ: Mapping[str, str] | None = None) -> str:
    """The run's name, the same on every rank. In order:

    1. `configured` (the config's ``run_name``);
    2. ``COMPOSER_RUN_NAME``, then ``RUN_NAME``;
    3. with an initialised ``torch.distributed`` group: rank 0 generates one and broadcasts it;
    4. the launcher's job id: ``slurm-<SLURM_JOB_ID>``, ``torchrun-<first 8 of TORCHELASTIC_RUN_ID>``;
    5. a single process generates one, like ``1764031234-electric-zebra``.

    Several ranks with none of these could only disagree: that is a `ConfigError`.
    """
    env = os.environ if environ is None else environ
    given = given_run_name(configured, env)
    if given is not None:
        return given
    if dist_info.source == "torch.distributed" and dist_info.world_size > 1:
        return _broadcast_from_rank_zero(generate_run_name() if dist_info.rank == 0 else None)
    launched = launcher_run_name(env)
    if launched is not None:
        return launched
    if dist_info.world_size > 1:
        raise ConfigError(
            f"run_name: not set, and the {dist_info.world_size} ranks of this run can not agree on a generated "
            f"one; set run_name in the config or COMPOSER_RUN_NAME in every rank's environment"
        )
    return generate_run_name()


def given_run_name(configured: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The name the config gives, else ``COMPOSER_RUN_NAME``, else ``RUN_NAME`` (checked), or None."""
    env = os.environ if environ is None else environ
    if configured is not None:
        return check_run_name(configured)
    for variable in ENV_VARIABLES:
        if env.get(variable):
            return check_run_name(env[variable], key=variable)
    return None


def launcher_run_name(environ: Mapping[str, str]) -> str | None:
    """A name every rank of a launched job shares, from the launcher's job id (or None)."""
    if environ.get("SLURM_JOB_ID"):
        return check_run_name(f"slurm-{environ['SLURM_JOB_ID']}", key="SLURM_JOB_ID")
    if environ.get("TORCHELASTIC_RUN_ID"):
        return check_run_name(f"torchrun-{environ['TORCHELASTIC_RUN_ID'][:8]}", key="TORCHELASTIC_RUN_ID")
    return None


def _broadcast_from_rank_zero(name: str | None) -> str:
    import torch.distributed

    box = [name]
    torch.distributed.broadcast_object_list(box, src=0)
    return check_run_name(box[0])


def generate_run_name() -> str:
    """``<unix time>-<adjective>-<noun>``."""
    import coolname

    return f"{int(time.time())}-{coolname.generate_slug(2)}"


def check_run_name(name: object, key: str = "run_name") -> str:
    """`name` if it can name a directory and artifacts safely, whatever its source (config,
    environment, launcher, `State`): at most 255 bytes, no path separator, not ``.`` or ``..``,
    no control character; else `ConfigError` naming `key`."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {name!r}", key=key)
    check_name_length(name, key=key)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"{key}: {name!r} must not contain '/' or '\\\\' or be '.' or '..': it names a directory",
                          key=key)
    if has_control_character(name):
        raise ConfigError(f"{key}: {name!r} contains a control character", key=key)
    return name
