"""What Hydra saves in a run's ``.hydra/`` directory, saved by the command instead, secrets masked."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from composer_cfg.config.sweep_job import current_sweep_job
from composer_cfg.core.secrets import redact
from composer_cfg.run.files import replacing


def save_masked_configs(cfg: DictConfig, run_name: str) -> None:
    """``config.yaml`` (with the run's actual name, generated or not), ``hydra.yaml`` and
    ``overrides.yaml``, with secrets masked, written atomically. In a sweep, ``multirun.yaml``
    (which Hydra's sweeper writes itself) is rewritten masked too."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    output = Path(hydra_cfg.runtime.output_dir) / ".hydra"
    output.mkdir(parents=True, exist_ok=True)
    job = OmegaConf.to_container(cfg, resolve=False)
    job["run_name"] = run_name  # type: ignore[index]
    hydra_node = {"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)}
    for name, content in (("config.yaml", job), ("hydra.yaml", hydra_node),
                          ("overrides.yaml", list(hydra_cfg.overrides.task))):
        _write(output / name, redact(content))
    job = current_sweep_job()
    if job is not None:
        mask_saved(job.directory / "multirun.yaml")


def mask_saved(path: Path) -> None:
    """Rewrite the YAML file Hydra saved at `path` (if any) with its secrets masked."""
    if not path.exists():
        return
    saved = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    masked = redact(saved)
    if masked is not saved:
        _write(path, masked)


def _write(path: Path, content: object) -> None:
    with replacing(path) as file:
        file.write(OmegaConf.to_yaml(OmegaConf.create(content)).encode())
