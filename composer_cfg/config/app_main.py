"""`hydra_main`: ``@hydra.main`` for an app of your own, with what the ``composer-cfg`` command adds.

Hydra 1.3 composes an app's config before any code of the app's (a callback included) runs, and
lists config groups for ``--help`` without the primary config's ``hydra.searchpath``. So what the
command does before Hydra starts, an app gets from this decorator in place of ``@hydra.main``:

* composer_cfg's configs are on the search path, behind the app's own: ``--help`` lists its
  presets next to the app's options (``hydra.searchpath`` in the primary config is not needed);
* ``logger=null`` means no logging (Hydra 1.3 refuses a null override of a group with a default);
* the run's files (logs, records, its run record; relative paths of the logger's config) go in
  the job's directory (``hydra.runtime.output_dir``) whether or not Hydra changes into it; every
  rank of a multi-process run, and a run that may be continued (``resume`` auto or must, a run
  name given), runs in ``outputs/<run_name>`` unless ``hydra.run.dir`` says otherwise
  (`composer_cfg.config.run_directory`);
* every job's config is composed and validated first: each problem, a typo in a YAML file or on
  the command line included, is one line ``train.py: error: ...`` on stderr, exit status 2,
  and nothing is created;
* a `ConfigError` the app raises (from ``instantiate_logger``) is said the same way.

With ``HYDRA_FULL_ERROR=1`` nothing is checked first and every error goes through Hydra, with its
traceback. ``--help``, ``--cfg`` and the other introspection flags are Hydra's, unchecked.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from composer_cfg.config.callback import print_errors
from composer_cfg.config.command_line import jobs_to_check, read
from composer_cfg.config.compose import compose_in_context, hydra_context, without_null_groups
from composer_cfg.config.params import in_hydra_job
from composer_cfg.config.run_directory import Placement, place_run
from composer_cfg.config.search_path import packaged_configs_last
from composer_cfg.core.errors import ConfigError

TaskFunction = Callable[[DictConfig], Any]
#: What composer_cfg reads of an app's config (as `instantiate_logger` is given it); the rest is the app's.
CHECKED_KEYS = ("logger", "run_name", "resume")


def hydra_main(
    config_path: str, config_name: str, version_base: str | None = "1.3"
) -> Callable[[TaskFunction], Callable[[], Any]]:
    """``@hydra.main(version_base, config_path, config_name)``, with composer_cfg's configs and checks.

    `config_path` is relative to the file of the decorated function, as for ``@hydra.main``.
    """
    import hydra

    def decorate(task: TaskFunction) -> Callable[[], Any]:
        directory = (Path(inspect.getfile(task)).parent / config_path).resolve()
        placement = [Placement([])]
        app = hydra.main(version_base=version_base, config_path=config_path,
                         config_name=config_name)(_reporting(task, lambda: placement[0].in_job_directory))

        @functools.wraps(task)
        def main() -> Any:
            with packaged_configs_last():
                placement[0] = _prepared(sys.argv[1:], directory, config_name)
                sys.argv[1:] = placement[0].overrides
                return app()

        return main

    return decorate


def _reporting(task: TaskFunction, in_job_directory: Callable[[], bool]) -> TaskFunction:
    """`task`, with the run's relative paths in the job's directory (if `in_job_directory()`),
    saying a `ConfigError` it raises as the command does, and exiting 2. (Hydra finds the app's
    file, and names the job, through ``__wrapped__``.)"""

    @functools.wraps(task)
    def run(cfg: DictConfig) -> Any:
        try:
            with in_hydra_job() if in_job_directory() else contextlib.nullcontext():
                return task(cfg)
        except ConfigError as error:
            if _full_error():
                raise
            print_errors(error, prog=_prog())
            sys.exit(2)

    return run


def _prepared(argv: Sequence[str], directory: Path, config_name: str) -> Placement:
    """The command line for Hydra (``group=null`` as ``~group``, where the run runs: see
    `place_run`), and whether the run's files go in the job's directory; first, unless Hydra is
    to say everything itself, each job's config is checked (problems: printed, exit 2)."""
    command = read(argv)
    named = any(arg in ("-cn", "--config-name") or arg.startswith("--config-name=") for arg in argv)
    name = command.config_name if named else config_name
    placement = Placement([])
    with hydra_context(command.config_dir or directory):
        overrides = without_null_groups(command.overrides)
        try:
            if not command.introspection and not command.multirun:
                placement = place_run(overrides, name, agree_later=True)
            overrides += placement.overrides
            if not command.introspection and not _full_error():
                _check(jobs_to_check(overrides, command.multirun), name)
        except ConfigError as error:
            print_errors(error, prog=_prog())
            sys.exit(2)
    return placement._replace(overrides=[arg for arg in command.argv if arg not in command.overrides] + overrides)


def _check(jobs: list[tuple[list[str], list[str]]], config_name: str) -> None:
    problems: list[str] = []
    for shown, composed in jobs:
        label = f"job {' '.join(shown)}: " if len(jobs) > 1 else ""
        try:
            compose_in_context(composed, config_name, own_primary=False, for_command=True, keys=CHECKED_KEYS)
        except ConfigError as error:
            problems += [f"{label}{line}" for line in error.problems if f"{label}{line}" not in problems]
    if problems:
        raise ConfigError.from_problems(problems)


def _prog() -> str:
    """The program's name, as argparse says it (``train.py``)."""
    return Path(sys.argv[0]).name


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"
