"""Check a composed config before anything is built: every problem, each with its key path.

Each destination is checked against its class's signature (torchtune's ``validate`` idea):
unknown keys, missing required ones, value types, and the meaning its annotations declare
(levels, templates, positive integers; see `composer_cfg.params`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from composer_cfg import dist
from composer_cfg.destination import LoggerDestination
from composer_cfg.errors import ConfigError
from composer_cfg.logger import Logger
from composer_cfg.params import StoreRoot, TemplateParam, local_root, working_directory
from composer_cfg.run_name import given_run_name
from composer_cfg.secrets import MASK, is_secret_key
from composer_cfg.templates import Template

#: Keys Hydra's instantiate reads itself.
HYDRA_KEYS = frozenset({"_target_", "_args_", "_partial_", "_convert_", "_recursive_"})


@dataclass(frozen=True)
class Problem:
    key: str
    message: str


#: The keys of composer_cfg's own primary config (a user's primary config may hold any others).
#: The Logger's own settings a logger node may hold, next to its destinations.
LOGGER_SETTINGS = ("defer_tensors", "measure_overhead")
TOP_LEVEL_KEYS = ("logger", "run_name", "dry_run", "log_config", "demo")


def validate(config: Mapping[str, Any], world_size: int, *, own_primary: bool = True) -> list[Problem]:
    """The problems of a resolved config (plain containers), in the config's key order.

    `own_primary`: the primary config is composer_cfg's, so a top-level key it does not have is a
    typo (``+run_nmae=x``) or a block from another tool (``loggers:``).
    """
    problems: list[Problem] = []
    for key, node in config.items():
        if key == "logger":
            if node is not None:  # null (logger=null, logger=none): no logging
                _check_logger(problems, node, world_size, config.get("run_name"))
        elif key == "run_name":
            _catch(problems, "run_name", lambda: given_run_name(node))  # or the environment's
        elif key in ("dry_run", "log_config") and not isinstance(node, bool):
            problems.append(Problem(str(key), f"expected a boolean (true/false), got {node!r}"))
        elif isinstance(node, Mapping) and "_target_" in node:
            check_node(problems, key, node, object, world_size)
        elif own_primary and key not in TOP_LEVEL_KEYS and key != "hydra":
            hint = _suggest(key, dict.fromkeys(TOP_LEVEL_KEYS))
            problems.append(Problem(str(key), f"unknown top-level key{hint}; destinations go under "
                                              f"logger.destinations (see the README's migration table)"))
    return problems


def _check_logger(problems: list[Problem], logger: Any, world_size: int, run_name: str | None) -> None:
    if not isinstance(logger, Mapping):
        problems.append(Problem("logger", f"expected a logger node with _target_: composer_cfg.Logger, got {logger!r}"))
        return
    if _target_class(problems, "logger", logger, Logger) is not None:
        for key in sorted(set(logger) - HYDRA_KEYS - {"destinations"}):
            if key in LOGGER_SETTINGS:
                hint = typing.get_type_hints(Logger.__init__)[key]
                _catch(problems, f"logger.{key}", lambda: check_value(f"logger.{key}", logger[key], hint, world_size))
            else:
                accepted = dict.fromkeys(("_target_", "destinations", *LOGGER_SETTINGS))
                problems.append(Problem(f"logger.{key}", f"unknown key{_suggest(key, accepted)}"))
    destinations = logger.get("destinations")
    if destinations is None:
        return
    if not isinstance(destinations, Mapping):
        problems.append(Problem("logger.destinations", f"expected a mapping of name to destination, got {destinations!r}"))
        return
    for name, node in destinations.items():
        if node is not None:
            check_node(problems, f"logger.destinations.{name}", node, LoggerDestination, world_size)
    if not problems:
        problems.extend(_across_destinations(destinations, run_name))


def _across_destinations(destinations: Mapping[str, Any], run_name: str | None) -> list[Problem]:
    """Rules between destinations and the disk, from their declared parameter meanings:

    * a local store root (a `StoreRoot` parameter) must not hold a file another destination
      writes (a per-rank file template): an upload of the same name would replace the live file;
    * with a known run name, a file a destination would create, without ``overwrite``, must not
      exist yet: the run would be refused after Hydra made its run directory.
    """
    run_name = _catch([], "run_name", lambda: given_run_name(run_name))  # a bad one is reported apart
    fields = {**dist.current().template_fields(), "run_name": run_name or "run"}
    roots, files, problems = [], [], []
    for name, node in destinations.items():
        if not isinstance(node, Mapping):
            continue
        for key, meaning in declared_meanings(locate(node["_target_"])).items():
            value, path = node.get(key), f"logger.destinations.{name}.{key}"
            if isinstance(meaning, StoreRoot) and isinstance(value, str) and local_root(value) is not None:
                roots.append((path, value, local_root(value)))
            elif isinstance(meaning, TemplateParam) and meaning.per_rank_file and isinstance(value, str):
                filled = _catch(problems, path, lambda: Template(value, meaning.fields, key=path).fill(fields))
                if filled is not None:
                    file = working_directory() / filled
                    files.append((path, file.resolve(), bool(node.get("overwrite", False))))
    problems += [Problem(root_key, f"{url!r} holds the file {file_key} writes ({file}): an upload of the same name "
                                  f"would replace the live file with a snapshot; give the store a directory of its own")
                for root_key, url, root in roots for file_key, file, _ in files if root in file.parents]
    if run_name is not None:
        problems += [Problem(key, f"{str(file)!r} already exists (a run named {run_name!r} wrote it): choose another "
                                  f"run_name, or set overwrite=true to replace it")
                     for key, file, overwrite in files if not overwrite and file.exists()]
    return problems


def check_node(problems: list[Problem], path: str, node: Any, base: type, world_size: int) -> None:
    """Check one ``_target_`` node: its class, then its parameters against the signature."""
    if not isinstance(node, Mapping):
        problems.append(Problem(path, f"expected a node with _target_, got {node!r}"))
        return
    target = _target_class(problems, path, node, base)
    if target is not None:
        params = {key: value for key, value in node.items() if key not in HYDRA_KEYS}
        before = len(problems)
        missing = _missing_modules(target)
        if missing:
            problems.append(Problem(path, missing))
            return
        check_params(problems, path, target, params, world_size, partial=bool(node.get("_partial_")))
        check_config = getattr(target, "check_config", None)  # declared by every LoggerDestination
        if check_config is not None and len(problems) == before:  # rules across several parameters
            try:
                check_config(params, world_size)
            except ConfigError as error:
                key, _, message = str(error).partition(": ")
                problems.append(Problem(f"{path}.{key}", message))


def check_params(
    problems: list[Problem], path: str, target: Any, params: Mapping[str, Any], world_size: int, partial: bool = False
) -> None:
    """Check `params` against the signature and annotations of `target` (a class or function).

    With `partial` (``_partial_: true``) the call site supplies the rest: missing ones are fine.
    """
    signature = inspect.signature(target)
    hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target, include_extras=True)
    accepted = {
        name: p for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    name = getattr(target, "__name__", str(target))
    for key in params:
        if key not in accepted and not takes_any:
            problems.append(Problem(f"{path}.{key}", f"unknown key for {name}{_suggest(key, accepted)}"))
    for key, parameter in accepted.items():
        if parameter.default is inspect.Parameter.empty and key not in params and not partial:
            problems.append(Problem(f"{path}.{key}", f"missing: {name} requires {key}"))
    for key, value in params.items():
        if key in accepted and key in hints:
            before = len(problems)
            _catch(problems, f"{path}.{key}", lambda: check_value(f"{path}.{key}", value, hints[key], world_size))
            if len(problems) > before and is_secret_key(key):  # never echo a secret's value
                problem = problems[-1]
                problems[-1] = Problem(problem.key, problem.message.replace(repr(value), repr(MASK)))


def check_value(key: str, value: Any, annotation: Any, world_size: int) -> None:
    """Raise `ConfigError` if `value` does not fit `annotation` (and its declared meaning)."""
    base, checks = _unwrap(annotation)
    options = typing.get_args(base) if _is_union(base) else (base,)
    if value is None:
        if type(None) in options or base is Any:
            return
        raise ConfigError(f"{key}: null is not allowed here; expected {_describe(base)}")
    for option in options:
        option_base, option_checks = _unwrap(option)
        if option_base is not type(None) and _is_instance(value, option_base):
            for check in checks + option_checks:
                check.check(key, value, world_size)
            return
    raise ConfigError(f"{key}: expected {_describe(base)}, got {value!r} ({type(value).__name__})")


def _missing_modules(target: Any) -> str:
    """What a destination's back end needs and is not installed, with the pip command; or ""."""
    missing = {module: extra for module, extra in getattr(target, "requires", {}).items()
               if importlib.util.find_spec(module) is None}
    if not missing:
        return ""
    extras = ",".join(dict.fromkeys(missing.values()))
    return (f"{target.__name__} needs {', '.join(missing)}, which is not installed: "
            f"pip install 'composer_cfg[{extras}]'")


def declared_meanings(target: Any) -> dict[str, Any]:
    """Parameter name -> the meaning its annotation declares (`TemplateParam`, `StoreRoot`...)."""
    hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target, include_extras=True)
    return {name: checks[0] for name, hint in hints.items() for checks in [_unwrap(hint)[1]] if checks}


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        return base, [m for m in metadata if hasattr(m, "check")]
    return annotation, []


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _is_instance(value: Any, annotation: Any) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation) or annotation
    if _is_union(annotation):
        return any(_is_instance(value, option) for option in typing.get_args(annotation))
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(origin, type):
        if issubclass(origin, typing.Mapping):
            return isinstance(value, Mapping)
        if issubclass(origin, typing.Sequence) and origin is not str:
            return isinstance(value, (list, tuple))
        return isinstance(value, origin)
    return True  # annotations this checker does not model are left to the constructor


def _describe(annotation: Any) -> str:
    base, _ = _unwrap(annotation)
    if _is_union(base):
        return " or ".join(_describe(option) for option in typing.get_args(base) if option is not type(None))
    names = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}
    origin = typing.get_origin(base) or base
    if origin in names:
        return names[origin]
    if origin is type(None):
        return "null"
    return getattr(origin, "__name__", str(origin))


def _target_class(problems: list[Problem], path: str, node: Mapping[str, Any], base: type) -> Any:
    target = node.get("_target_")
    if not isinstance(target, str) or not target:
        what = "a callable" if base is object else f"a {base.__name__} class"
        problems.append(Problem(f"{path}._target_", f"missing; expected the import path of {what}"))
        return None
    try:
        found = locate(target)
    except ImportError as error:
        problems.append(Problem(f"{path}._target_", str(error)))
        return None
    if base is object:
        if not callable(found):
            problems.append(Problem(f"{path}._target_", f"{target!r} is not callable"))
            return None
        refused = _refused_by_hydra(target)
        if refused:
            problems.append(Problem(f"{path}._target_", refused))
            return None
    elif not (inspect.isclass(found) and issubclass(found, base)):
        problems.append(Problem(f"{path}._target_", f"{target!r} is not a {base.__name__} subclass"))
        return None
    return found


def _refused_by_hydra(target: str) -> str | None:
    """Hydra's own verdict on a `_target_` (its blocklist, from 1.3.4), without calling it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        instantiate({"_target_": target, "_partial_": True})
    except InstantiationException as error:
        return " ".join(str(error).split())
    return None


def locate(path: str) -> Any:
    """Import the object at dotted `path`; an import failing inside its module is shown as is."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name) and module_name != error.name:
                continue  # a parent package is missing: try a shorter module path
            if error.name == module_name:
                continue
            raise ImportError(f"cannot import {path!r}: importing {module_name} failed: {error!r}") from error
        except Exception as error:
            raise ImportError(f"cannot import {path!r}: importing {module_name} failed: {error!r}") from error
        for attribute in parts[split:]:
            if not hasattr(obj, attribute):
                close = difflib.get_close_matches(attribute, [n for n in dir(obj) if not n.startswith("_")], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ImportError(f"cannot import {path!r}: {module_name} has no attribute {attribute!r}{hint}")
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(f"cannot import {path!r}: no module named {parts[0]!r}")


def _suggest(key: str, accepted: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(accepted), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"{hint} allowed: {', '.join(accepted)}"


def _catch(problems: list[Problem], key: str, check: Any) -> Any:
    """What `check()` returns; None, its `ConfigError` added to `problems` under `key`, if it raises."""
    try:
        return check()
    except ConfigError as error:
        message, key = str(error), error.key or key
        prefix = f"{key}: "
        problems.append(Problem(key, message[len(prefix):] if message.startswith(prefix) else message))
