"""Whether this run is one job of a Hydra ``-m`` sweep, and which."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer_cfg.core.secrets import redact


@dataclass(frozen=True)
class SweepJob:
    """One job of a sweep: the sweep's id (its directory, as configured), where that directory is,
    the job's number and its overrides (secrets masked: trackers show them as tags)."""

    sweep: str
    directory: Path
    number: int
    overrides: tuple[str, ...]


def current_sweep_job() -> SweepJob | None:
    """The sweep job running in this process (inside a Hydra app started with ``-m``), else None."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode is None or hydra_cfg.mode.name != "MULTIRUN":
        return None
    return SweepJob(str(hydra_cfg.sweep.dir), sweep_directory(hydra_cfg), int(hydra_cfg.job.num),
                    tuple(redact(list(hydra_cfg.overrides.task))))


def sweep_directory(hydra_cfg: Any) -> Path:
    """The sweep's directory, absolute: jobs run in directories of their own."""
    return Path(str(hydra_cfg.runtime.cwd)) / str(hydra_cfg.sweep.dir)
