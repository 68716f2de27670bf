"""Where a run's job runs, so that every rank, and every attempt, finds the same directory.

Hydra names a run's directory by the time by default (``outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}``):
new at every launch, and possibly a different second on each rank of a multi-process run. So, in
the command and in an app run by `composer_cfg.hydra_main`, when the run directory (as the config
writes it, through any interpolation) depends on the time and is not given on the command line:

* every rank of a multi-process run agrees on the run's name (`resolve_run_name`) and runs in
  ``outputs/<run_name>``;
* a run that may be continued (``resume`` auto or must) with a known name runs in
  ``outputs/<run_name>``: a second attempt with the same line finds the first one's files.

Ranks sharing a directory each write a job log of their own, and only rank 0 saves the config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf

from composer_cfg.core import dist
from composer_cfg.core.dist import DistInfo
from composer_cfg.core.errors import ConfigError

_INTERPOLATION = re.compile(r"\$\{([^${}]*)\}")


class Placement(NamedTuple):
    """Overrides for Hydra, and whether the run's files go in the job's directory (False: ranks
    that can only agree on a run name once their process group exists keep them in the working
    directory, where a name agreed later finds them)."""

    overrides: list[str]
    in_job_directory: bool = True


def place_run(overrides: Sequence[str], config_name: str, *, agree_later: bool = False) -> Placement:
    """Where the run's job runs (see the module), for a single run (not ``-m``) inside an
    initialised Hydra. Nothing to add when the config does not compose or its values can not be
    read (composing it again, with the checks, says why). Ranks that can not agree on a run name
    now: a `ConfigError`, or with `agree_later` (an app that may start a process group first) the
    working directory."""
    from hydra import compose

    try:
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
        configured = cfg.get("run_name")
        resume = cfg.get("resume")
    except Exception:  # noqa: BLE001 - composing again, with the checks, reports it
        return Placement([])
    movable = _named_by_time(cfg) and not any(o.lstrip("+").startswith("hydra.run.dir=") for o in overrides)
    info = dist.current()
    if info.world_size > 1:
        return _ranks(cfg, configured, info, movable, agree_later)
    name = _resumable_name(configured, resume)
    return Placement([f"hydra.run.dir={quoted('outputs/' + name)}"] if name and movable else [])


def _ranks(cfg: DictConfig, configured: object, info: DistInfo, movable: bool, agree_later: bool) -> Placement:
    from composer_cfg.core.run_name import resolve_run_name

    job = [f"hydra.job.name={quoted(str(cfg.hydra.job.name) + f'-rank{info.rank}')}",
           *(["hydra.output_subdir=null"] if info.rank != 0 else [])]
    try:
        run_name = resolve_run_name(configured if isinstance(configured, str) else None, info)
    except ConfigError:
        if agree_later:
            return Placement(job, in_job_directory=False)
        raise
    named = [f"run_name={quoted(run_name)}"] if "run_name" in cfg and configured != run_name else []
    return Placement([*named, *job, *([f"hydra.run.dir={quoted('outputs/' + run_name)}"] if movable else [])])


def _resumable_name(configured: object, resume: object) -> str | None:
    """The run's name, if it may be continued (``resume`` auto or must) and a name is known."""
    from composer_cfg.core.run_name import given_run_name, launcher_run_name
    from composer_cfg.run.resume import Resume

    try:
        if Resume.parse(resume or Resume.NEVER) is Resume.NEVER:
            return None
        return given_run_name(configured) or launcher_run_name(os.environ)  # type: ignore[arg-type]
    except ConfigError:  # the checks report a bad value
        return None


def _named_by_time(cfg: DictConfig) -> bool:
    """``hydra.run.dir``, as the config writes it, reaches ``${now:...}`` (directly or through the
    keys it interpolates)."""
    pending, seen = ["hydra.run.dir"], set()
    while pending:
        key = pending.pop()
        seen.add(key)
        for inner in _INTERPOLATION.findall(_as_written(cfg, key)):
            if inner.startswith("now:"):
                return True
            if ":" not in inner and not inner.startswith(".") and inner not in seen:  # another key
                pending.append(inner)
    return False


def _as_written(cfg: DictConfig, key: str) -> str:
    """The text at `key`, interpolations unresolved ("" if it is not text)."""
    parent, _, last = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
    if not isinstance(node, DictConfig) or last not in node:
        return ""
    value = OmegaConf.to_container(node, resolve=False).get(last)  # type: ignore[union-attr]
    return value if isinstance(value, str) else ""


def quoted(value: str) -> str:
    """`value` as one quoted Hydra override value: commas, equals signs, quotes and ``${`` kept as text.

    >>> quoted("lr=0.1,bs=2")
    "'lr=0.1,bs=2'"
    """
    escaped = value.replace("'", "\\'").replace("${", "\\${")  # (a run name has no backslash)
    return f"'{escaped}'"
