"""Where a run that may be continued runs: a directory a second attempt finds again.

A run directory named by the time (Hydra's default, ``outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}``)
is new at every launch, so a run started with ``resume=auto`` or ``must`` and a known name runs in
``outputs/<run_name>`` instead, in the command and in an app run by `composer_cfg.hydra_main`: a
second attempt with the same line finds the first one's files. A ``hydra.run.dir`` given on the
command line, or one in the config that does not depend on the time, is left as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def resumable_run_directory(overrides: Sequence[str], config_name: str) -> list[str]:
    """``["hydra.run.dir=outputs/<run_name>"]`` for a run that may continue an earlier one, inside
    an initialised Hydra; nothing when the directory is chosen already, or the config does not
    compose (composing it again, with the checks, says why)."""
    from hydra import compose

    from composer_cfg.core.run_name import given_run_name, launcher_run_name
    from composer_cfg.run.resume import Resume

    if any(override.lstrip("+").startswith("hydra.run.dir=") for override in overrides):
        return []
    try:
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
        resumable = Resume.parse(cfg.get("resume") or Resume.NEVER) is not Resume.NEVER
        name = given_run_name(cfg.get("run_name")) or launcher_run_name(os.environ)
        by_time = "${now:" in str(cfg.hydra.run._get_node("dir")._value())  # as written, not resolved
    except Exception:  # noqa: BLE001 - composing again, with the checks, reports it
        return []
    return [f"hydra.run.dir=outputs/{name}"] if resumable and name and by_time else []
