"""Where a run's job runs, so that every rank, and every attempt, finds the same directory.

Hydra names a run's directory by the time by default (``outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}``):
new at every launch, and possibly a different second on each rank of a multi-process run. So, in
the command and in an app run by `composer_cfg.hydra_main`:

* every rank of a multi-process run agrees on the run's name (`resolve_run_name`) and runs in
  ``outputs/<run_name>``, each with a job log of its own; only rank 0 saves the composed config;
* a run that may be continued (``resume`` auto or must) with a known name runs in
  ``outputs/<run_name>``: a second attempt with the same line finds the first one's files.

A ``hydra.run.dir`` given on the command line is left as it is, and so is one in the config that
does not depend on the time (in the second case; the first always needs one directory).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from composer_cfg.core import dist
from composer_cfg.core.dist import DistInfo


def run_directory_overrides(overrides: Sequence[str], config_name: str) -> list[str]:
    """The overrides that put the run's job where every rank and attempt finds it (see the module),
    for a single run (not ``-m``) inside an initialised Hydra. Nothing when the config does not
    compose: composing it again, with the checks, says why. A `ConfigError` when several ranks
    can not agree on a run name."""
    from hydra import compose

    try:
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    except Exception:  # noqa: BLE001 - composing again, with the checks, reports it
        return []
    given = any(override.lstrip("+").startswith("hydra.run.dir=") for override in overrides)
    info = dist.current()
    if info.world_size > 1:
        return _one_directory_for_all_ranks(cfg, info, given)
    name = _resumable_name(cfg)
    return [f"hydra.run.dir=outputs/{name}"] if name and not given and _named_by_time(cfg) else []


def _one_directory_for_all_ranks(cfg: DictConfig, info: DistInfo, given: bool) -> list[str]:
    from composer_cfg.core.run_name import resolve_run_name

    run_name = resolve_run_name(cfg.get("run_name"), info)
    job = OmegaConf.select(cfg, "hydra.job.name", throw_on_missing=False)
    extra = [f"run_name={run_name}"] if "run_name" in cfg else []  # the name every rank agreed on
    extra.append(f"hydra.job.name={job}-rank{info.rank}")
    if not given:
        extra.append(f"hydra.run.dir=outputs/{run_name}")
    if info.rank != 0:
        extra.append("hydra.output_subdir=null")
    return extra


def _resumable_name(cfg: DictConfig) -> str | None:
    """The run's name, if it may be continued (``resume`` auto or must) and a name is known."""
    from composer_cfg.core.run_name import given_run_name, launcher_run_name
    from composer_cfg.run.resume import Resume

    try:
        if Resume.parse(cfg.get("resume") or Resume.NEVER) is Resume.NEVER:
            return None
        return given_run_name(cfg.get("run_name")) or launcher_run_name(os.environ)
    except Exception:  # noqa: BLE001 - the checks report a bad value
        return None


def _named_by_time(cfg: DictConfig) -> bool:
    """The config's run directory, as written, depends on the time of the launch."""
    return "${now:" in str(cfg.hydra.run._get_node("dir")._value())
