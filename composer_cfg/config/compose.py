"""Compose and validate a config with Hydra's compose API, leaving Hydra's global state as found."""

from __future__ import annotations

import contextlib
import copy
import difflib
import re
import sys
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from composer_cfg.config.foundry import foundry_key, move_foundry_loggers
from composer_cfg.config.params import job_directory
from composer_cfg.config.problems import Problem
from composer_cfg.config.provenance import source_of
from composer_cfg.config.search_path import packaged_configs_last
from composer_cfg.config.validate import validate
from composer_cfg.config.yaml_errors import yaml_error
from composer_cfg.core import dist
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.secrets import redact_override
from composer_cfg.core.templates import TIME_FIELDS

PACKAGED_CONFIGS = "composer_cfg.conf"
VERSION_BASE = "1.3"
#: Hydra launchers composer_cfg's ``launchers`` extra installs.
LAUNCHERS = ("joblib", "submitit_local", "submitit_slurm")


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "config", config_dir: str | Path | None = None
) -> DictConfig:
    """The composed, validated config (without the ``hydra`` node); builds nothing.

    `config_dir` is searched first; the packaged tree (primary config included) is the fallback.
    Raises `ConfigError` listing every problem, each with its key path and where it came from.

    >>> cfg = compose_config(["logger.destinations.file.log_level=batch"])
    >>> cfg.logger.destinations.file.log_level
    'batch'
    """
    with hydra_context(config_dir):
        return compose_in_context(list(overrides), config_name, own_primary=own_primary(config_dir, config_name))


def own_primary(config_dir: str | Path | None, config_name: str) -> bool:
    """Whether the primary config is composer_cfg's (the user's directory has none of that name)."""
    return config_dir is None or not (Path(config_dir).expanduser() / f"{config_name}.yaml").is_file()


@contextlib.contextmanager
def hydra_context(config_dir: str | Path | None) -> Iterator[None]:
    """Initialise Hydra for `config_dir` (or the packaged configs), with the packaged configs as
    the fallback behind it; restore the previous state after.

    Works inside a running ``@hydra.main`` app, whose Hydra is set aside and put back as it was.
    """
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    running = GlobalHydra.instance()
    app_hydra = running.hydra if running.is_initialized() else None
    running.clear()
    job_name = Path(sys.argv[0]).stem or None  # the job's name as Hydra gives it a running app: its script's
    try:
        with packaged_configs_last():
            if config_dir is None:
                with initialize_config_module(PACKAGED_CONFIGS, version_base=VERSION_BASE, job_name=job_name):
                    yield
            else:
                with initialize_config_dir(str(user_config_dir(config_dir)), version_base=VERSION_BASE,
                                           job_name=job_name):
                    yield
    finally:
        GlobalHydra.instance().clear()
        if app_hydra is not None:
            GlobalHydra.instance().initialize(app_hydra)


def user_config_dir(config_dir: str | Path) -> Path:
    """`config_dir` as an absolute directory; a `ConfigError` if there is none."""
    directory = Path(config_dir).expanduser().resolve()
    if not directory.is_dir():
        raise ConfigError(f"config_dir: {str(directory)!r} is not a directory")
    return directory


def compose_in_context(
    overrides: list[str], config_name: str, *, own_primary: bool = True, for_command: bool = False,
    keys: Collection[str] | None = None,
) -> DictConfig:
    """Compose and validate inside an initialised Hydra (the compose API or a running app).

    `for_command`: validate for a job the command will run in Hydra's run directory (relative
    paths are checked from there); the returned config has no ``hydra`` node either way. `keys`:
    the top-level keys to validate (an app's own nodes are its own business); None: every key.
    """
    overrides = without_null_groups(overrides)
    cfg, forced = _compose(overrides, config_name, return_hydra_config=for_command)
    problems, moved = move_foundry_loggers(cfg, overrides)  # an llm-foundry block: destinations like any other
    directory, key = job_directory_of(cfg) if for_command else (None, None)
    with job_directory(directory, key), _as_the_job(cfg, directory):
        for problem in config_problems(cfg, own_primary, keys):
            problem = Problem(foundry_key(problem.key, moved), problem.message)
            if problem not in problems:  # (an interpolation in the block fails at both its places)
                problems.append(problem)
    reported = {problem.key for problem in problems}
    for override in forced:  # composed with ++ to check them; one the validator accepts still needs a +
        key = override.split("=", 1)[0].lstrip("+")
        if not any(problem == key or problem.startswith(key + ".") for problem in reported):  # said once
            problems.append(Problem(key, f"not in the config as given; {_closest(cfg, key)}to add it, write "
                                         f"'++{redact_override(override.lstrip('+'))}'"))
    if problems:
        raise report(problems, overrides, config_name)
    if for_command:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg


def _closest(cfg: DictConfig, key: str) -> str:
    """``did you mean 'epochs'? `` when a key beside `key` (not in the config as given) is close to it."""
    parent, _, last = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    siblings = [str(name) for name in node if name != last] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(last, siblings, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def report(problems: Sequence[Problem], overrides: Sequence[str], config_name: str | None) -> ConfigError:
    """One `ConfigError` for `problems`, each line saying where its value came from."""
    error = ConfigError.from_problems([_with_source(problem, list(overrides), config_name) for problem in problems])
    error.key = problems[0].key if len(problems) == 1 else None
    return error


@contextlib.contextmanager
def _as_the_job(cfg: DictConfig, directory: Path | None) -> Iterator[None]:
    """``${hydra:runtime.output_dir}`` (lightning-hydra-template's ``paths.output_dir``) resolves
    to `directory` while a config composed before Hydra runs it is checked; a Hydra config set
    already (a running job's) is left as it is."""
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.instance()
    if directory is None or hydra_config.cfg is not None or cfg.get("hydra") is None:
        yield
        return
    job = copy.deepcopy(cfg)
    job.hydra.runtime.output_dir, job.hydra.runtime.cwd = str(directory), str(Path.cwd())
    hydra_config.set_config(job)
    try:
        yield
    finally:
        hydra_config.cfg = None


def job_directory_of(cfg: DictConfig) -> tuple[Path | None, str | None]:
    """Where the files of the command's job (or a `hydra_main` app's) will be, and the key that
    names it: the run directory, or under ``-m`` (``hydra.mode`` MULTIRUN) the job's own
    ``hydra.sweep.dir``/``hydra.sweep.subdir``, whether or not Hydra changes into it; (None,
    None) without a ``hydra`` node or if it can not be resolved yet."""
    hydra_cfg = cfg.get("hydra")
    try:
        if hydra_cfg is None:
            return None, None
        if hydra_cfg.mode is not None and str(hydra_cfg.mode).endswith("MULTIRUN"):
            sweep = Path(str(OmegaConf.select(cfg, "hydra.sweep.dir")))
            return (sweep / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))).absolute(), "hydra.sweep.dir"
        return Path(str(OmegaConf.select(cfg, "hydra.run.dir"))).absolute(), "hydra.run.dir"
    except OmegaConfBaseException:
        return None, None


def without_null_groups(overrides: Sequence[str]) -> list[str]:
    """``group=null`` (lightning-hydra-template's way to say "none") as Hydra 1.3 can take it:
    ``~group``, which removes the group's entry (``logger=null``: no logging)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - composing reports the parse error
        return list(overrides)
    groups = set(GlobalHydra.instance().config_loader().list_groups(""))
    return [f"~{o.key_or_group}" if o.value() is None and not o.is_delete() and not o.is_add()
            and ("/" in o.key_or_group or o.key_or_group in groups) else o.input_line for o in parsed]


def raise_logger_problems(node: DictConfig, run_name: str | None, resume: Any = None) -> None:
    """Raise a `ConfigError` for every problem of a composed ``logger`` node, with the key paths
    it has in its own config, and, inside a running Hydra app, the file or override it came from."""
    prefix = node_path(node)
    problems = _unresolvable(node, prefix)  # resolved where the node lives: its interpolations may reach out
    if not problems:
        container = {"logger": OmegaConf.to_container(node, resolve=True), "run_name": run_name, "resume": resume}
        problems = [Problem(_in_node(problem.key, prefix), problem.message)
                    for problem in validate(container, dist.current().world_size, own_primary=False)]
    if problems:
        raise report(problems, *_running_app())


def _in_node(key: str, prefix: str) -> str:
    """`key` with its ``logger`` part replaced by the node's own path (other keys, ``run_name`` or
    ``COMPOSER_RUN_NAME``, as they are)."""
    return prefix + key.removeprefix("logger") if key == "logger" or key.startswith("logger.") else key


def node_path(node: DictConfig) -> str:
    """The node's key path in the config it belongs to (``logger`` when it stands alone)."""
    try:
        return node._get_full_key(None) or "logger"
    except Exception:  # noqa: BLE001 - only for messages
        return "logger"


def _running_app() -> tuple[list[str], str | None]:
    """The overrides and primary config name of the Hydra app running, if any (for provenance)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return [], None
    hydra_cfg = HydraConfig.get()
    return list(hydra_cfg.overrides.task), hydra_cfg.job.config_name


def config_problems(cfg: DictConfig, own_primary: bool = True, keys: Collection[str] | None = None) -> list[Problem]:
    """Missing values, interpolation errors and everything `validate` checks (of the top-level
    `keys` only, if given)."""
    problems = _unresolvable(cfg, "") or _fields_written_as_interpolations(cfg)
    if problems:
        return problems
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])  # Hydra's node: not ours
    container: Any = OmegaConf.to_container(job, resolve=True)
    checked = container if keys is None else {key: value for key, value in container.items() if key in keys}
    return validate(checked, world_size=dist.current().world_size, own_primary=own_primary)


def _fields_written_as_interpolations(cfg: DictConfig) -> list[Problem]:
    """``${run_name}`` where ``{run_name}`` was meant: resolved when the config is composed, it
    names files after the config's own (null) run name, not the run's."""
    problems = []
    for path, text in _strings(OmegaConf.to_container(cfg, resolve=False), ""):
        for name in _INTERPOLATION.findall(text):
            if name in TIME_FIELDS and OmegaConf.select(cfg, name, default=None) is None:
                problems.append(Problem(path, f"{text!r} uses ${{{name}}}, an interpolation resolved when the config "
                                              f"is composed (to null here); the run-time template field is written "
                                              f"{{{name}}}: {_INTERPOLATION_OF[name].sub('{' + name + '}', text)!r}"))
    return problems


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            if key != "hydra" or path:
                yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}.{index}")


_INTERPOLATION = re.compile(r"\$\{(\w+)\}")
_INTERPOLATION_OF = {name: re.compile(r"\$\{" + name + r"\}") for name in TIME_FIELDS}


def _unresolvable(node: DictConfig | ListConfig, prefix: str) -> list[Problem]:
    """Every missing value (``???``) and every interpolation that fails, outside ``hydra``."""
    problems = []
    keys = range(len(node)) if isinstance(node, ListConfig) else [k for k in node.keys() if k != "hydra" or prefix]
    for key in keys:
        path = f"{prefix}.{key}" if prefix else str(key)
        if OmegaConf.is_missing(node, key):
            problems.append(Problem(path, "missing value (???): set it in a config file or on the command line"))
            continue
        try:
            value = node[key]
        except OmegaConfBaseException as error:
            reason = str(error.msg).splitlines()[0]
            written = node._get_node(key)._value()
            fields = [name for name in _INTERPOLATION.findall(str(written)) if name in TIME_FIELDS]
            hint = f"; the run-time template field is written {{{fields[0]}}} (one brace, no $)" if fields else ""
            problems.append(Problem(path, f"cannot resolve {written!r}: {reason}{hint}"))
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            problems.extend(_unresolvable(value, path))
    return problems


def _compose(overrides: list[str], config_name: str, return_hydra_config: bool = False) -> tuple[DictConfig, list[str]]:
    """Compose, turning Hydra's composition errors into `ConfigError`s (by their type and fields).

    A mistyped key on the command line (``file.log_levl=batch``) fails in Hydra's struct check
    before our validator sees it; it is retried as ``++`` so the validator reports it like a
    YAML typo, with the allowed keys and a suggestion.
    """
    from hydra import compose
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from yaml import MarkedYAMLError

    attempt, forced = list(overrides), []
    for _ in range(len(overrides) + 1):
        try:
            return compose(config_name, overrides=attempt, return_hydra_config=return_hydra_config), forced
        except MissingConfigException as error:
            raise ConfigError(_missing_config_message(error)) from None
        except OverrideParseException as error:
            raise ConfigError(_parse_error_message(error)) from None
        except MarkedYAMLError as error:  # a config file OmegaConf can not read
            raise yaml_error(error) from None
        except ConfigCompositionException as error:
            unknown_key = getattr(error.__cause__, "full_key", None)  # OmegaConf: not in the struct
            index = _override_setting(attempt, unknown_key) if unknown_key else None
            if index is None:
                message = _composition_message(error, attempt)
                cause = str(getattr(error.__cause__, "msg", "")).strip().split("\n")[0]
                if unknown_key and cause:  # a value OmegaConf can not merge there (a list into a mapping...)
                    message = f"{unknown_key}: can not be set from the command line: {cause}"
                raise ConfigError(message, key=unknown_key) from None
            forced.append(attempt[index])
            attempt = [*attempt[:index], "++" + attempt[index].lstrip("+"), *attempt[index + 1 :]]
    raise AssertionError("unreachable: every retry adds one ++")


def _override_setting(overrides: list[str], key: str) -> int | None:
    """The index of the (not yet forced) override that sets `key` or the closest node holding it
    (``logger.reduce=...``, not the ``logger=trackers`` that chose the group)."""
    found, closest = None, -1
    for index, override in enumerate(overrides):
        target = override.split("=", 1)[0].lstrip("+")
        if not override.startswith("++") and (key == target or key.startswith(target + ".")) and len(target) > closest:
            found, closest = index, len(target)
    return found


def _missing_config_message(error: Any) -> str:
    missing = str(getattr(error, "missing_cfg_file", "") or "")
    if "/" in missing:
        return _unknown_option_message(missing, getattr(error, "options", None))
    return str(error).split("\n")[0]


def _unknown_option_message(config_path: str, options: Sequence[str] | None = None) -> str:
    """``group: unknown option 'x'; did you mean 'y'? available: ...`` for a missing group option."""
    from hydra.core.global_hydra import GlobalHydra

    group, _, option = config_path.rpartition("/")
    options = sorted(options or GlobalHydra.instance().config_loader().get_group_options(group))
    close = difflib.get_close_matches(option, options, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    message = f"{group}: unknown option {option!r}{hint} available: {', '.join(options)}"
    if group == "hydra/launcher" and option in LAUNCHERS:
        message += f"; the {option} launcher is not installed: pip install 'composer_cfg[launchers]'"
    return message


def _composition_message(error: Exception, overrides: list[str]) -> str:
    """Hydra's own words, on one line; for a multi-select option it can not remove, what works."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(overrides):
        group = override.key_or_group
        if override.is_delete() and "/" in group:  # hydra#2843, fixed only in Hydra 1.4
            package = group.replace("/", ".")
            name = override.value() if isinstance(override.value(), str) and override.value() else "NAME"
            return (f"{group}: Hydra 1.3 cannot remove one option of a multi-select (~{group}={name}, hydra#2843); "
                    f"use ~{package}.{name} or {package}.{name}=null, or list the ones you want: '{group}=[...]'")
    return " ".join(str(error).split("\n"))


def _parse_error_message(error: Any) -> str:
    """Name the override Hydra could not parse; for an unquoted ``{field}``, show the quoting."""
    bad = str(getattr(error, "override", ""))
    key, _, value = bad.lstrip("+~").partition("=")
    reason = str(getattr(error, "message", error)).splitlines()[0]
    hint = ""
    if "{" in value and not value.startswith(("'", '"')):
        hint = (f"; a {{field}} template must be quoted for Hydra too: '{key}=\"{value}\"' "
                f"(the single quotes are for the shell)")
    return f"{key}: cannot parse command-line override {bad!r}: {reason}{hint}"


def _with_source(problem: Problem, overrides: list[str], config_name: str | None) -> str:
    source = source_of(problem.key, overrides, config_name)
    return f"{problem.key}: {problem.message}" + (f" (from {source})" if source else "")
