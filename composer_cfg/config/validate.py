"""Check a composed config before anything is built: every problem, each with its key path.

Each ``_target_`` node, at any depth (a destination, the demo, a node nested in a parameter), is
checked against its callable's signature (torchtune's ``validate`` idea): its import path under
the one import policy (`composer_cfg.config.imports`), unknown keys, missing required ones, and each
value against its annotation (`composer_cfg.config.annotations`: types and the meanings of
`composer_cfg.config.params`). Then a destination's own rules across parameters (`check_config`), and
the rules between destinations and the disk (`composer_cfg.config.disk`).
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any, Mapping

from composer_cfg.config.annotations import check_value, type_hints
from composer_cfg.config.disk import disk_problems
from composer_cfg.config.imports import ALLOWED_MODULES_KEY, allowing, check_module_names, import_object
from composer_cfg.config.problems import Problem, catch
from composer_cfg.core.errors import suggest
from composer_cfg.core.logger import Logger
from composer_cfg.core.run_name import given_run_name
from composer_cfg.core.secrets import MASK, is_secret_key
from composer_cfg.core.sink import Policies
from composer_cfg.run.resume import Resume

#: Keys Hydra's instantiate reads itself.
HYDRA_KEYS = frozenset({"_target_", "_args_", "_partial_", "_convert_", "_recursive_"})
#: The keys of the logger node besides Hydra's: what composer_cfg reads there.
LOGGER_KEYS = ("destinations", "allowed_modules")
#: The Logger's own settings a logger node may hold: passed to its constructor, checked against its signature.
LOGGER_SETTINGS = ("measure_overhead", "reduce", "reduce_every", "reduce_timeout", "system_metrics")


#: The keys of composer_cfg's own primary config (a user's primary config may hold any others).
TOP_LEVEL_KEYS = ("logger", "run_name", "resume", "dry_run", "log_config", "demo", "loggers")


def validate(config: Mapping[str, Any], world_size: int, *, own_primary: bool = True) -> list[Problem]:
    """The problems of a resolved config (plain containers), in the config's key order.

    `own_primary`: the primary config is composer_cfg's, so a top-level key it does not have is a
    typo (``+run_nmae=x``) or a block from another tool. (An llm-foundry ``loggers:`` block was
    moved into ``logger.destinations`` before: `composer_cfg.config.foundry`.)
    """
    problems: list[Problem] = []
    logger = config.get("logger")
    modules = None
    if isinstance(logger, Mapping):
        modules = catch(problems, ALLOWED_MODULES_KEY, lambda: check_module_names(logger.get("allowed_modules", [])))
    resume = catch(problems, "resume", lambda: Resume.parse(config.get("resume") or Resume.NEVER))
    with allowing(modules or ()):
        for key, node in config.items():
            if key == "resume":
                continue  # checked above, first: the disk's rules depend on it
            if key == "logger":
                if node is not None:  # null (logger=null, logger=none): no logging
                    _check_logger(problems, node, world_size)
            elif key == "run_name":
                catch(problems, "run_name", lambda: given_run_name(node))  # or the environment's
            elif key in ("dry_run", "log_config") and not isinstance(node, bool):
                problems.append(Problem(str(key), f"expected a boolean (true/false), got {node!r}"))
            elif isinstance(node, Mapping) and "_target_" in node:
                check_node(problems, key, node, object, world_size)
            elif own_primary and key not in TOP_LEVEL_KEYS and key != "hydra":
                hint = suggest(key, TOP_LEVEL_KEYS)
                problems.append(Problem(str(key), f"unknown top-level key{hint}; destinations go under "
                                                  f"logger.destinations (see the table of other setups in docs/hydra-app.md)"))
        if not problems:
            problems.extend(disk_problems(config, resume))
    return problems


def _check_logger(problems: list[Problem], logger: Any, world_size: int) -> None:
    if not isinstance(logger, Mapping):
        problems.append(Problem("logger", f"expected a logger node with _target_: composer_cfg.Logger, got {logger!r}"))
        return
    if _target_class(problems, "logger", logger, Logger) is not None:
        for key in sorted(set(logger) - HYDRA_KEYS - set(LOGGER_KEYS) - set(LOGGER_SETTINGS)):
            problems.append(Problem(f"logger.{key}", f"unknown key{suggest(key, LOGGER_KEYS + LOGGER_SETTINGS)}"))
        hints = type_hints(Logger)
        for key in LOGGER_SETTINGS:
            if key in logger:
                catch(problems, f"logger.{key}", lambda: check_value(f"logger.{key}", logger[key], hints[key], world_size))
    destinations = logger.get("destinations")
    if destinations is None:
        return
    if not isinstance(destinations, Mapping):
        problems.append(Problem("logger.destinations", f"expected a mapping of name to destination, got {destinations!r}"))
        return
    for name, node in destinations.items():
        if node is not None:
            check_node(problems, f"logger.destinations.{name}", node, Policies, world_size)


def check_node(problems: list[Problem], path: str, node: Any, base: type, world_size: int) -> None:
    """Check one ``_target_`` node: its class, its parameters against the signature, the nodes
    nested in them, and the class's own rules across parameters."""
    if not isinstance(node, Mapping):
        problems.append(Problem(path, f"expected a node with _target_, got {node!r}"))
        return
    target = _target_class(problems, path, node, base)
    if target is None:
        return
    missing = _missing_modules(target)
    if missing:
        problems.append(Problem(path, missing))
        return
    params = {key: value for key, value in node.items() if key not in HYDRA_KEYS}
    before = len(problems)
    check_params(problems, path, target, params, world_size, partial=bool(node.get("_partial_")),
                 args=node.get("_args_") or [])
    for key, value in [*params.items(), *enumerate(node.get("_args_") or [])]:
        check_nested_nodes(problems, f"{path}.{key}" if isinstance(key, str) else f"{path}._args_.{key}", value,
                           world_size)
    check_config = getattr(target, "check_config", None)  # declared by every LoggerDestination
    if check_config is not None and len(problems) == before:  # rules across several parameters
        catch(problems, path, lambda: check_config(params, world_size), prefix=f"{path}.")


def check_nested_nodes(problems: list[Problem], path: str, value: Any, world_size: int) -> None:
    """Check every ``_target_`` node inside a parameter's value (Hydra would build each one)."""
    if _is_node(value):
        check_node(problems, path, value, object, world_size)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_nested_nodes(problems, f"{path}.{key}", item, world_size)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_nested_nodes(problems, f"{path}.{index}", item, world_size)


def check_params(
    problems: list[Problem], path: str, target: Any, params: Mapping[str, Any], world_size: int,
    partial: bool = False, args: list[Any] | tuple[Any, ...] = (),
) -> None:
    """Check `params` (and positional `args`) against the signature and annotations of `target`.

    With `partial` (``_partial_: true``) the call site supplies the rest: missing ones are fine.
    A value that is itself a node is checked as one, not against the annotation (what it builds
    is known only then).
    """
    signature = inspect.signature(target)
    hints = type_hints(target)
    accepted = {
        name: p for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    positional = [name for name, p in signature.parameters.items()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    name = getattr(target, "__name__", str(target))
    if len(args) > len(positional) and not any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
        problems.append(Problem(f"{path}._args_", f"{name} takes at most {len(positional)} positional arguments, "
                                                  f"got {len(args)}"))
    for index, key in enumerate(positional[:len(args)]):
        if key in params:
            problems.append(Problem(f"{path}._args_", f"positional argument {index} of {name} is {key!r}, which is "
                                                      f"also given by name: give it once"))
    given = {**dict(zip(positional, args)), **params}
    for key in params:
        if key not in accepted and not takes_any:
            problems.append(Problem(f"{path}.{key}", f"unknown key for {name}{suggest(key, accepted)}"))
    for key, parameter in signature.parameters.items():
        required = parameter.default is inspect.Parameter.empty and parameter.kind not in (
            parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        if required and key not in given and not partial:
            problems.append(Problem(f"{path}.{key}", f"missing: {name} requires {key}"))
    for key, value in given.items():
        if key in hints and (key in accepted or key in positional) and not _is_node(value):
            before = len(problems)
            catch(problems, f"{path}.{key}", lambda: check_value(f"{path}.{key}", value, hints[key], world_size))
            if len(problems) > before and (is_secret_key(key) or is_secret_key(problems[-1].key)):
                problem = problems[-1]  # never echo a secret's value
                problems[-1] = Problem(problem.key, problem.message.replace(repr(value), repr(MASK)))


def _missing_modules(target: Any) -> str:
    """What a destination's back end needs and is not installed, with the pip command; or ""."""
    missing = {module: extra for module, extra in getattr(target, "requires", {}).items()
               if importlib.util.find_spec(module) is None}
    if not missing:
        return ""
    extras = ",".join(dict.fromkeys(missing.values()))
    *others, last = missing
    modules = f"{', '.join(others)} and {last}, which are" if others else f"{last}, which is"
    return f"{target.__name__} needs {modules} not installed: pip install 'composer_cfg[{extras}]'"


def _target_class(problems: list[Problem], path: str, node: Mapping[str, Any], base: type) -> Any:
    target = node.get("_target_")
    if not isinstance(target, str) or not target:
        what = "a callable" if base is object else f"a {base.__name__} class"
        problems.append(Problem(f"{path}._target_", f"missing; expected the import path of {what}"))
        return None
    found = catch(problems, f"{path}._target_", lambda: import_object(target, key=f"{path}._target_"))
    if found is None:
        return None
    if base is object:
        if not callable(found):
            problems.append(Problem(f"{path}._target_", f"{target!r} is not callable"))
            return None
    elif not (inspect.isclass(found) and issubclass(found, base)):
        what = "LoggerDestination or Sink" if base is Policies else base.__name__
        problems.append(Problem(f"{path}._target_", f"{target!r} is not a {what} subclass"))
        return None
    return found


def _is_node(value: Any) -> bool:
    """Whether Hydra builds `value` into an object (a mapping with ``_target_``)."""
    return isinstance(value, Mapping) and "_target_" in value
