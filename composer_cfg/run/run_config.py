"""The run's configuration, logged once to every destination with where each value came from.

One record per run, secrets masked: the resolved config (with the run's actual name), the
command-line overrides, the config files of the defaults list, each key's source (an override
or a config file), the git commit of the directory the run started in, and the versions of
composer_cfg, Hydra and the back ends installed. It goes

* into ``{run_name}/run-config.yaml`` (rank 0, in the run's directory: `State.path`), published
  with ``Logger.file_artifact`` to every destination that stores files (object store, MLflow, W&B
  with ``log_artifacts``, ...);
* to every destination as hyperparameters ``{"config": <resolved config>}``
  (`Logger.log_hyperparameters`): W&B's nested run config, MLflow parameters and TensorBoard's
  table flattened as ``config/logger/destinations/file/log_level``, a FIT record in JSON Lines,
  `InMemoryLogger.hyperparameters`; the text log and the progress bar leave them out.

>>> sorted(describe_run({"run_name": None, "seed": 1, "api_key": "x"}, "r", overrides=["seed=1"])["config"].items())
[('api_key', '***'), ('run_name', 'r'), ('seed', 1)]
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from composer_cfg.config.provenance import Provenance
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.logger import Logger
from composer_cfg.core.secrets import redact
from composer_cfg.core.templates import literal
from composer_cfg.run.files import replacing

RUN_CONFIG = "{run_name}/run-config.yaml"
GIT_TIMEOUT = 5.0  # seconds: a slow network file system must not hold the run's start
PACKAGES = ("composer_cfg", "hydra-core", "omegaconf", "numpy", "fsspec", "tqdm", "tensorboardX", "tensorboard",
            "mlflow", "mlflow-skinny", "wandb", "s3fs", "torch", "hydra-submitit-launcher", "hydra-joblib-launcher")


def describe_run(
    config: Mapping[str, Any],
    run_name: str,
    *,
    overrides: Sequence[str] = (),
    provenance: Provenance | None = None,
    cwd: str | Path | None = None,
) -> dict[str, Any]:
    """The record of a run whose resolved config (plain containers, no ``hydra`` node) is `config`."""
    resolved = {**config, "run_name": run_name}
    return {
        "run_name": run_name,
        "config": redact(resolved),
        "overrides": redact(list(overrides)),
        "defaults": provenance.defaults if provenance else [],
        "provenance": {key: (provenance.source_of(key) if provenance else "") or "default"
                       for key in _leaf_keys(resolved)},
        "git": git_state(Path(cwd) if cwd is not None else Path.cwd()),
        "versions": versions(),
    }


def describe_hydra_job(cfg: Any, run_name: str) -> dict[str, Any]:
    """`describe_run` for the job of the running Hydra app (inside ``@hydra.main``)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    config = OmegaConf.to_container(cfg, resolve=True)
    return describe_run(config, run_name, overrides=overrides,  # type: ignore[arg-type]
                        provenance=Provenance(overrides, str(hydra_cfg.job.config_name)), cwd=hydra_cfg.runtime.cwd)


def log_run_config(logger: Logger, record: Mapping[str, Any]) -> Path | None:
    """Log `record` (from `describe_run`) to every destination; on rank 0 also save it as
    ``{run_name}/run-config.yaml`` under the run's directory (`State.path`) and publish it. Returns
    the file written (absolute), if any.

    A run resumed past its start keeps the hyperparameters its first attempt logged (trackers'
    parameters can not change); the file is rewritten with the config of the attempt running.
    """
    state = logger.state
    if state.timestamp.batch == 0:
        logger.log_hyperparameters({"config": _text_keys(record["config"])})
    if state.rank != 0:
        return None
    path = state.path(Path(state.run_name) / "run-config.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    from omegaconf import OmegaConf

    with replacing(path) as file:
        file.write(OmegaConf.to_yaml(OmegaConf.create(dict(record))).encode())
    logger.file_artifact(LogLevel.FIT, RUN_CONFIG, literal(str(path)), overwrite=True)
    return path


def git_state(directory: Path) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git work tree holding `directory`, else None."""
    try:
        commit = _git(directory, "rev-parse", "HEAD")
        changes = _git(directory, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.strip(), "dirty": bool(changes.strip())}


def versions() -> dict[str, str]:
    """The installed version of each package the run may use (absent ones left out)."""
    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=True,
                          timeout=GIT_TIMEOUT).stdout


def _leaf_keys(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values in `config` (a list is one value)."""
    keys = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        keys.extend(_leaf_keys(value, path + ".") if isinstance(value, Mapping) and value else [path])
    return keys


def _text_keys(config: Any) -> Any:
    """`config` with every mapping key as text, as trackers name parameters (a config may key a
    mapping by number: ``labels: {0: cat}`` is logged as ``config/labels/0``)."""
    if isinstance(config, Mapping):
        return {str(key): _text_keys(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_text_keys(value) for value in config]
    return config
