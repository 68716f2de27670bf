"""`CheckWhatRuns`: the Hydra callback through which the command validates the config Hydra runs.

The command composes and checks every job before Hydra starts (so a sweep's last job can not fail
after its first ran); this callback then checks the very config Hydra composed, at
``on_run_start`` (before the run directory exists) and at each sweep job's ``on_job_start``: what
runs is what was checked, whatever search path or override Hydra saw.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from composer_cfg.config.compose import config_problems, job_directory_of, report
from composer_cfg.config.params import job_directory
from composer_cfg.config.sweep_job import current_sweep_job
from composer_cfg.core.errors import ConfigError

PROG = "composer-cfg"


class CheckWhatRuns(Callback):
    """Validates the job's composed config; on problems prints one line each and exits 2."""

    def __init__(self, own_primary: bool = True) -> None:
        self.own_primary = own_primary

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, *job_directory_of(config))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        if current_sweep_job() is not None:  # a run was checked at its start
            self._check(config, Path(HydraConfig.get().runtime.output_dir))

    def _check(self, config: DictConfig, directory: Path | None, key: str | None = None) -> None:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = config.get("hydra") or HydraConfig.get()
        with job_directory(directory, key):
            problems = config_problems(config, self.own_primary)
        if problems:
            error = report(problems, list(hydra_cfg.overrides.task), hydra_cfg.job.config_name)
            print_errors(error)
            sys.exit(2)


def print_errors(error: ConfigError, job: str = "", prog: str = PROG) -> None:
    """``composer-cfg: error: ...`` (`prog`: the program's name), one line per problem, on stderr."""
    for line in error.problems:
        print(f"{prog}: error: {job}{line}", file=sys.stderr)
