"""The ``composer-cfg`` command: validate the config, then run the demo with the logger it declares.

A bad config creates nothing, not even Hydra's run directory: the command composes and checks
every job's config first (each job of a ``-m`` sweep), prints one line per error and exits 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import hydra
from omegaconf import DictConfig

from composer_cfg.config.compose import compose_in_context, hydra_context
from composer_cfg.errors import ConfigError

PROG = "composer-cfg"


def main() -> None:
    """Entry point of ``composer-cfg`` and ``python -m composer_cfg``."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(sys.argv[1:])
    if not (args.help or args.hydra_help or args.cfg or args.info or args.shell_completion):
        config_name = args.config_name or "config"
        configs = _check_jobs(_job_overrides(args.overrides, args.multirun), config_name, args.config_dir)
        if configs[0].get("dry_run"):
            _print_dry_run(configs)
            return
        if not args.multirun:
            sys.argv += _one_run_for_all_ranks(configs[0], args.overrides)
    _app()


def _one_run_for_all_ranks(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """Overrides that put every rank of a multi-process run in one run directory.

    Each rank runs this command and composes its own config; left alone, each would name its
    own timestamped directory. They agree on the run name instead, and use ``outputs/<name>``
    (unless ``hydra.run.dir`` is given); each rank gets its own job log, and only rank 0
    saves the composed config.
    """
    from composer_cfg import dist
    from composer_cfg.run_name import resolve_run_name

    info = dist.current()
    if info.world_size == 1:
        return []
    try:
        run_name = resolve_run_name(cfg.get("run_name"), info)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(2)
    extra = [f"run_name={run_name}", f"hydra.job.name=composer_cfg-rank{info.rank}"]
    if not any(override.startswith("hydra.run.dir=") for override in overrides):
        extra.append(f"hydra.run.dir=outputs/{run_name}")
    if info.rank != 0:
        extra.append("hydra.output_subdir=null")
    return extra


def _job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """One override list per job: the sweep's expansion under ``-m``, else the overrides as given."""
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - composing the overrides as given reports the parse error
        return [overrides]
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _check_jobs(jobs: Sequence[list[str]], config_name: str, config_dir: str | None) -> list[DictConfig]:
    """Compose and validate each job's config; on errors print one line each and exit 2."""
    configs, errors = [], []
    with hydra_context(config_dir):
        for overrides in jobs:
            job = f"job {' '.join(overrides)}: " if len(jobs) > 1 else ""
            try:
                cfg = compose_in_context(overrides, config_name)
            except ConfigError as error:
                errors.extend(f"{job}{problem}" for problem in error.problems)
                continue
            if not isinstance(cfg.get("dry_run", False), bool):
                errors.append(f"{job}dry_run: expected a boolean (true/false), got {cfg.dry_run!r}")
            configs.append(cfg)
    if errors:
        for line in dict.fromkeys(errors):
            print(f"{PROG}: error: {line}", file=sys.stderr)
        sys.exit(2)
    return configs


def _print_dry_run(configs: list[DictConfig]) -> None:
    for index, cfg in enumerate(configs):
        label = f"job {index}: " if len(configs) > 1 else ""
        print(f"{label}config OK, nothing built or written. run_name: {cfg.run_name or '(generated when the run starts)'}")
        for name, node in cfg.logger.destinations.items():
            if node is not None:
                settings = ", ".join(f"{k}={v!r}" for k, v in node.items() if k != "_target_")
                print(f"  {name}: {node._target_}({settings})")


@hydra.main(version_base="1.3", config_path="pkg://composer_cfg.conf", config_name="config")
def _app(cfg: DictConfig) -> Any:
    """Build the logger, run the demo, say where everything went."""
    from hydra.utils import instantiate

    from composer_cfg.config.build import instantiate_logger
    from composer_cfg.demo import plot_loss

    try:
        logger = instantiate_logger(cfg)
    except (ConfigError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, ConfigError) else 1)
    with logger:
        metrics = instantiate(cfg.demo)(logger) if cfg.get("demo") is not None else {}
    state = logger.state
    print(f"run {state.run_name} (rank {state.rank} of {state.world_size}) finished: "
          + ", ".join(f"{key}={value:.4f}" for key, value in metrics.items()))
    for destination in logger.destinations:
        print(f"  {logger.name_of(destination)}: {destination.output_location() or 'nothing written'}")
    plot = plot_loss(logger)
    if plot is not None:
        print(f"  plot: {plot.resolve()}")
    return metrics
