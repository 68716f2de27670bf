"""The ``composer-cfg`` command: validate the config, then run the demo with the logger it declares.

A bad config creates nothing, not even Hydra's run directory: the command composes and checks
every job's config first (each job of a ``-m`` sweep), prints one line per error and exits 2.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import hydra
from omegaconf import DictConfig, OmegaConf

from composer_cfg.config.compose import compose_in_context, hydra_context
from composer_cfg.errors import ConfigError
from composer_cfg.secrets import redact, redact_words

PROG = "composer-cfg"
SHOW_SECRETS = "COMPOSER_CFG_SHOW_SECRETS"


def main() -> None:
    """Entry point of ``composer-cfg`` and ``python -m composer_cfg``."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(sys.argv[1:])
    restore_record_factory = _mask_secrets_in_hydra_logs()
    try:
        _run(args)
    finally:
        restore_record_factory()


def _run(args: Any) -> None:
    if args.cfg and not os.environ.get(SHOW_SECRETS) and _print_masked_cfg(args):
        return
    if not (args.help or args.hydra_help or args.cfg or args.info or args.shell_completion):
        config_name = args.config_name or "config"
        configs = _check_jobs(_job_overrides(args.overrides, args.multirun), config_name, args.config_dir)
        if configs[0].get("dry_run"):
            _print_dry_run(configs)
            return
        if not args.multirun:
            sys.argv += _one_run_for_all_ranks(configs[0], args.overrides)
        if not any(override.startswith("hydra.output_subdir=") for override in args.overrides):
            sys.argv.append("hydra.output_subdir=null")  # the job saves .hydra/ itself, secrets masked
    _app()


def _mask_secrets_in_hydra_logs() -> Callable[[], None]:
    """Hydra logs each job's overrides (``#0 : a=1 api_key=...``): mask secrets in its records.

    Returns what puts the previous record factory back.
    """
    make_record = logging.getLogRecordFactory()

    def masked(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if record.name.startswith("hydra"):
            message = record.getMessage()
            clean = redact_words(message)
            if clean != message:
                record.msg, record.args = clean, ()
        return record

    logging.setLogRecordFactory(masked)
    return lambda: logging.setLogRecordFactory(make_record)


def _print_masked_cfg(args: Any) -> bool:
    """``--cfg`` as Hydra prints it, with secrets masked; False (Hydra prints) if none to mask."""
    from hydra import compose
    from omegaconf import OmegaConf

    try:
        with hydra_context(args.config_dir):
            cfg = compose(args.config_name or "config", overrides=args.overrides,
                          return_hydra_config=args.cfg in ("hydra", "all"))
        if args.cfg == "hydra":
            cfg = OmegaConf.create({"hydra": cfg.hydra})
        plain = OmegaConf.to_container(cfg, resolve=args.resolve)
    except Exception:  # noqa: BLE001 - Hydra reports its own errors
        return False
    masked = redact(plain)
    if masked == plain:
        return False
    selected = OmegaConf.select(OmegaConf.create(masked), args.package) if args.package else masked
    if args.package and args.package != "_global_":
        print(f"# @package {args.package}")
    print(OmegaConf.to_yaml(selected) if OmegaConf.is_config(selected) or isinstance(selected, dict) else selected,
          end="")
    print(f"# secret values are masked; set {SHOW_SECRETS}=1 to print them", file=sys.stderr)
    return True


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
            job = f"job {redact_words(' '.join(overrides))}: " if len(jobs) > 1 else ""
            try:
                cfg = compose_in_context(overrides, config_name, for_command=True)
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
                plain = redact(OmegaConf.to_container(node))
                settings = ", ".join(f"{k}={v!r}" for k, v in plain.items() if k != "_target_")
                print(f"  {name}: {node._target_}({settings})")


@hydra.main(version_base="1.3", config_path="pkg://composer_cfg.conf", config_name="config")
def _app(cfg: DictConfig) -> Any:
    """Build the logger, run the demo, say where everything went."""
    from hydra.utils import instantiate

    from composer_cfg.config.build import instantiate_logger
    from composer_cfg.demo import plot_loss

    _save_masked_configs(cfg)
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


def _save_masked_configs(cfg: DictConfig) -> None:
    """What Hydra would save in ``.hydra/`` (config, hydra, overrides), with secrets masked.

    Only rank 0 saves. In a sweep, ``multirun.yaml`` (which Hydra's sweeper writes itself) is
    rewritten masked too.
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from composer_cfg import dist

    hydra_cfg = HydraConfig.get()
    if dist.current().rank != 0:
        return
    output = Path(hydra_cfg.runtime.output_dir) / ".hydra"
    output.mkdir(parents=True, exist_ok=True)
    job = OmegaConf.to_container(cfg, resolve=False)
    hydra_node = {"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)}
    for name, content in (("config.yaml", job), ("hydra.yaml", hydra_node),
                          ("overrides.yaml", list(hydra_cfg.overrides.task))):
        _write_atomically(output / name, OmegaConf.to_yaml(OmegaConf.create(redact(content))))
    sweep = Path(hydra_cfg.runtime.cwd) / str(hydra_cfg.sweep.dir) / "multirun.yaml"  # jobs run elsewhere (chdir)
    if hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN" and sweep.exists():
        saved = OmegaConf.to_container(OmegaConf.load(sweep), resolve=False)
        masked = redact(saved)
        if masked != saved:
            _write_atomically(sweep, OmegaConf.to_yaml(OmegaConf.create(masked)))


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
