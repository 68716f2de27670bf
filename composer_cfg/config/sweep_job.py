"""Whether this run is one job of a Hydra ``-m`` sweep, and which."""

from __future__ import annotations

from dataclasses import dataclass

from composer_cfg.secrets import redact


@dataclass(frozen=True)
class SweepJob:
    """One job of a sweep: the sweep's id (its directory, as configured) and the job's overrides."""

    sweep: str
    overrides: tuple[str, ...]


def current_sweep_job() -> SweepJob | None:
    """The sweep job running in this process (inside a Hydra app started with ``-m``), else None.

    Overrides are given with secrets masked: trackers show them as tags.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode is None or hydra_cfg.mode.name != "MULTIRUN":
        return None
    return SweepJob(str(hydra_cfg.sweep.dir), tuple(redact(list(hydra_cfg.overrides.task))))
