"""The ``composer-cfg`` command: validate the config, then run the demo with the logger it declares.

A bad config creates nothing, not even Hydra's run directory: the command composes and checks
every job's config first (each job of a ``-m`` sweep), prints one line per error and exits 2;
Hydra then runs with `CheckWhatRuns`, which checks the config it actually composed. A user's
config directory (``-cd DIR``) is Hydra's primary config path, the packaged configs behind it,
for the check and for the run alike.

Secrets: everything the command prints or logs is masked (`composer_cfg.cli.masked_output`) with the
secrets of its overrides and composed configs remembered; Hydra is given the overrides with each
literal secret passed by reference (`composer_cfg.config.secret_overrides`), and each job runs
with `MaskSecrets`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from composer_cfg.cli.masked_output import mask_output
from composer_cfg.config.callback import PROG, print_errors
from composer_cfg.config.command_line import CommandLine, jobs_to_check, read
from composer_cfg.config.compose import (
    compose_in_context,
    hydra_context,
    own_primary,
    user_config_dir,
    without_null_groups,
)
from composer_cfg.config.masking_callback import config_secrets
from composer_cfg.config.run_directory import place_run
from composer_cfg.config.search_path import PACKAGED_CONFIGS, packaged_configs_last
from composer_cfg.config.secret_overrides import by_reference, secrets_in
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.secrets import redact, redact_exception, redact_override, redact_text, remember

SHOW_SECRETS = "COMPOSER_CFG_SHOW_SECRETS"


def main() -> None:
    """Entry point of ``composer-cfg`` and ``python -m composer_cfg``."""
    command = read(sys.argv[1:])
    if command.version:
        print(f"{PROG} {_version()} (Hydra {hydra.__version__})")
        return
    # A destination module next to the user, as ``python -m`` would find it (before Hydra changes directory).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    shown = command.cfg is not None and os.environ.get(SHOW_SECRETS)
    unmask = (lambda: None) if shown else mask_output()
    remember(secrets_in(command.overrides))
    try:
        with packaged_configs_last():
            _run(command)
    except BrokenPipeError:  # `composer-cfg dry_run=true | head -1`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    finally:
        unmask()


def _run(command: CommandLine) -> None:
    if command.config_dir is not None:
        try:
            user_config_dir(command.config_dir)
        except ConfigError as error:
            print_errors(error)
            sys.exit(2)
    cfg = _compose_as_hydra(command) if command.introspection else None
    if cfg is not None:
        remember(config_secrets(cfg))
        if command.cfg and not os.environ.get(SHOW_SECRETS) and _print_masked_cfg(command, cfg):
            return
    extra: list[str] = []
    if not command.introspection:
        overrides, configs = _check_jobs(command)
        if configs[0].get("dry_run"):
            _print_dry_run(configs)
            return
        if not any(override.startswith("hydra.output_subdir=") for override in overrides):
            extra.append("hydra.output_subdir=null")  # the job saves .hydra/ itself, secrets masked
        primary = str(own_primary(command.config_dir, command.config_name)).lower()
        extra += ["+hydra.callbacks.composer_cfg._target_=composer_cfg.config.callback.CheckWhatRuns",
                  f"+hydra.callbacks.composer_cfg.own_primary={primary}",
                  "+hydra.callbacks.composer_cfg_secrets._target_=composer_cfg.config.masking_callback.MaskSecrets"]
        if command.multirun:
            extra.append("+hydra.callbacks.composer_cfg_sweep._target_=composer_cfg.config.sweep_summary.SweepSummary")
        overrides, environment = by_reference(overrides)
        os.environ.update(environment)  # every job process inherits them and resolves the references
        command.argv = [arg for arg in command.argv if arg not in command.overrides] + overrides
    sys.argv = [sys.argv[0], *command.hydra_argv(extra)]
    _app()


def _check_jobs(command: CommandLine) -> tuple[list[str], list[DictConfig]]:
    """Compose and validate each job's config (the command's overrides, as Hydra will be given
    them, and each job's); on errors print one line each and exit 2."""
    configs, failed = [], {}
    primary = own_primary(command.config_dir, command.config_name)
    with hydra_context(command.config_dir):
        overrides = without_null_groups(command.overrides)
        if not command.multirun:
            try:
                overrides += place_run(overrides, command.config_name).overrides
            except ConfigError as error:
                print_errors(error)
                sys.exit(2)
        expanded = jobs_to_check(overrides, command.multirun)
        for shown, composed in expanded:
            try:
                configs.append(compose_in_context(composed, command.config_name, own_primary=primary,
                                                  for_command=True))
            except ConfigError as error:
                failed[" ".join(map(redact_override, shown))] = error.problems
    if failed:
        # A problem every job has is said once; one of some jobs only, for each of them.
        shared = [line for line in next(iter(failed.values())) if len(failed) == len(expanded)
                  and all(line in problems for problems in failed.values())]
        lines = shared + [f"job {job}: {line}" for job, problems in failed.items() for line in problems
                          if line not in shared]
        print_errors(ConfigError.from_problems(lines))
        sys.exit(2)
    for cfg in configs:
        remember(config_secrets(cfg))
    return overrides, configs


def _compose_as_hydra(command: CommandLine) -> DictConfig | None:
    """The config Hydra will print for ``--help``, ``--cfg`` or ``--info``, ``hydra`` node included;
    None if it does not compose (Hydra reports why)."""
    from hydra import compose

    try:
        with hydra_context(command.config_dir):
            return compose(command.config_name, overrides=without_null_groups(command.overrides),
                           return_hydra_config=True)
    except Exception:  # noqa: BLE001 - Hydra reports its own errors
        return None


def _print_masked_cfg(command: CommandLine, cfg: DictConfig) -> bool:
    """``--cfg`` as Hydra prints it, with secrets masked; False (Hydra prints) if none to mask."""
    if command.cfg == "hydra":
        cfg = OmegaConf.create({"hydra": cfg.hydra})
    elif command.cfg == "job":
        cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    try:
        plain = OmegaConf.to_container(cfg, resolve=command.resolve)
    except Exception:  # noqa: BLE001 - Hydra reports its own errors
        return False
    masked = redact(plain)
    if masked == plain:
        return False
    selected = OmegaConf.select(OmegaConf.create(masked), command.package) if command.package else masked
    if command.package and command.package != "_global_":
        print(f"# @package {command.package}")
    print(OmegaConf.to_yaml(selected) if OmegaConf.is_config(selected) or isinstance(selected, dict) else selected,
          end="")
    print(f"# secret values are masked; set {SHOW_SECRETS}=1 to print them", file=sys.stderr)
    return True


def _print_dry_run(configs: list[DictConfig]) -> None:
    for index, cfg in enumerate(configs):
        label = f"job {index}: " if len(configs) > 1 else ""
        print(f"{label}config OK, nothing built or written. run_name: {cfg.run_name or '(generated when the run starts)'}")
        logger = cfg.get("logger")
        for name, node in ({} if logger is None else logger.destinations).items():
            if node is not None:
                plain = redact(OmegaConf.to_container(node))
                settings = ", ".join(f"{k}={v!r}" for k, v in plain.items() if k != "_target_")
                print(f"  {name}: {node._target_}({settings})")


def _version() -> str:
    from importlib.metadata import version

    return version("composer_cfg")


@hydra.main(version_base="1.3", config_path=PACKAGED_CONFIGS, config_name="config")
def _app(cfg: DictConfig) -> Any:
    """Build the logger, run the demo, say where everything went."""
    from hydra.utils import instantiate

    from composer_cfg.cli.demo import plot_metrics
    from composer_cfg.config.build import instantiate_logger
    from composer_cfg.config.foundry import move_foundry_loggers
    from composer_cfg.config.params import in_hydra_job
    from composer_cfg.config.saved_configs import save_masked_configs
    from composer_cfg.core import dist
    from composer_cfg.run.resume import Resume
    from composer_cfg.run.run_config import describe_hydra_job, log_run_config
    from composer_cfg.runtime.meter import summary_lines

    try:
        resume = Resume.parse(cfg.get("resume") or Resume.NEVER)
        move_foundry_loggers(cfg)  # (its problems were reported by the check before the jobs ran)
        with in_hydra_job():
            logger = instantiate_logger(cfg.get("logger"), run_name=cfg.get("run_name"), resume=resume)
    except ConfigError as error:
        print_errors(error)
        sys.exit(2)
    except Exception as error:  # a back end that can not be reached or refused to start, a file that can not be made
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        sys.exit(1)
    state = logger.state
    if dist.current().rank == 0:  # after the logger started: a refused run changes nothing
        save_masked_configs(cfg, state.run_name)
    try:
        with logger:
            if cfg.get("log_config"):
                log_run_config(logger, describe_hydra_job(cfg, state.run_name))
            metrics = instantiate(cfg.demo)(logger) if cfg.get("demo") is not None else {}
    except Exception as error:  # Hydra prints it, and a launcher may pickle it to disk: masked
        redact_exception(error)
        raise
    print(f"run {state.run_name} (rank {state.rank} of {state.world_size}) finished: "
          + ", ".join(f"{key}={value:.4f}" for key, value in metrics.items()))
    for name, destination in logger.destinations.items():
        print(f"  {name}: {redact_text(destination.output_location() or 'nothing written')}")
    plot = plot_metrics(logger)
    if plot is not None:
        print(f"  plot: {plot.resolve()}")
    report = summary_lines(logger.report())
    if report:
        print("logging, per destination" + (" (time on the threads that logged):" if logger.overhead() else ":"))
        print("\n".join(report))
    return metrics


def _one_line(error: Exception) -> str:
    """`error` as one line, secrets masked, naming the destination it came from if known."""
    text, whose = " ".join(str(error).split()), getattr(error, "destination", None)
    where = f"destination {whose[0]!r} failed in {whose[1]}: " if whose and f"destination {whose[0]!r}" not in text else ""
    return redact_text(f"{where}{type(error).__name__}: {text}" if text else f"{where}{type(error).__name__}")
