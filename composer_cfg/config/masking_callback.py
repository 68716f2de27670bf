"""`MaskSecrets`: the Hydra callback that keeps a job's secrets out of what it prints, logs and returns.

At ``on_multirun_start`` it masks the secrets of the sweep's own config where they are: each job
composes its config afresh from the files and overrides, while the sweep's is what Hydra saves as
``multirun.yaml`` and a launcher may pickle to disk with itself (submitit's ``_submitted.pkl``).
Only the job's part is masked; the ``hydra`` node, which launchers read, is left as it is.

At ``on_job_start``, in whatever process the launcher runs the job (the command's own, a joblib
worker, a submitit process), it remembers the secrets of the job's config, resolved (so an
``${oc.env:...}`` reference counts by the value it gives), masks the process's output
(`composer_cfg.cli.masked_output`) until the process ends (Hydra prints a failed job's overrides and
traceback after the last callback), and rewrites masked the ``.hydra/`` files Hydra saved just
before (in an app of your own; the ``composer-cfg`` command saves them masked itself). At
``on_job_end`` it masks what the job hands back to the launcher (the `JobReturn`'s overrides and
configs, which submitit pickles to disk).

In a Hydra app of your own, list it in the primary config::

    hydra:
      callbacks:
        mask_secrets:
          _target_: composer_cfg.config.masking_callback.MaskSecrets
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from composer_cfg.cli.masked_output import mask_output
from composer_cfg.config.saved_configs import mask_saved
from composer_cfg.core.secrets import MASK, is_reference, is_secret_key, redact, remember, secret_values


class MaskSecrets(Callback):
    """Masks the job's secrets in its output and in the `JobReturn` its launcher keeps."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with read_write(config), open_dict(config):
            for key in [key for key in config if key != "hydra"]:
                _mask_in_place(config, key)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        remember(config_secrets(config))
        mask_output()
        if config.hydra.output_subdir is not None:
            saved = Path(config.hydra.runtime.output_dir) / str(config.hydra.output_subdir)
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                mask_saved(saved / name)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        job_return.overrides = redact(job_return.overrides)
        job_return.cfg = _masked(job_return.cfg)
        job_return.hydra_cfg = _masked(job_return.hydra_cfg)


def config_secrets(cfg: DictConfig) -> set[str]:
    """The secrets a composed config holds, each reference resolved where it resolves here."""
    return secret_values(_resolved(cfg))


def _resolved(node: DictConfig | ListConfig) -> Any:
    """`node` as plain containers, each value resolved if it can be (else as written)."""
    keys = list(node.keys()) if isinstance(node, DictConfig) else list(range(len(node)))
    values = []
    for key in keys:
        try:
            value = node[key]
        except OmegaConfBaseException:  # missing, or resolvable only inside the job
            value = OmegaConf.to_container(node, resolve=False)[key]  # type: ignore[index]
        values.append(_resolved(value) if isinstance(value, (DictConfig, ListConfig)) else value)
    return dict(zip(keys, values)) if isinstance(node, DictConfig) else values


def _mask_in_place(node: DictConfig | ListConfig, key: Any) -> None:
    """Mask the value at `key` of `node` if its key names a secret, else the secrets inside it
    (URL passwords included)."""
    value = OmegaConf.to_container(node, resolve=False)[key]  # type: ignore[index]
    if isinstance(key, str) and value is not None and not is_reference(value) and is_secret_key(key):
        masked = MASK
    elif isinstance(value, (dict, list)):
        child = node[key]
        for inner in list(child.keys()) if isinstance(child, DictConfig) else range(len(child)):
            _mask_in_place(child, inner)
        return
    else:
        masked = redact(value)  # a URL's password, a secret query parameter
    if masked is not value:
        with contextlib.suppress(OmegaConfBaseException):  # a typed node that can not hold text
            node[key] = masked


def _masked(cfg: DictConfig | None) -> DictConfig | None:
    return None if cfg is None else OmegaConf.create(redact(OmegaConf.to_container(cfg, resolve=False)))
