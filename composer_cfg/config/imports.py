"""Importing code by name: the one policy for every import path a config gives.

A config names code by import path: each ``_target_`` (a destination's, the demo's, or one
nested anywhere inside their parameters) and parameters such as `ObjectStoreLogger`'s
``should_log_artifact``. Such a path is imported only if it lies in composer_cfg's own package or
in a module the config lists in ``logger.allowed_modules`` (``my_project`` allows
``my_project.filters.keep``), and only if Hydra's own blocklist (Hydra 1.3.4 and later) does
not refuse it. A module outside the list is never imported, so a YAML file can not reach
``shutil.copyfile`` or ``os.system``.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

from composer_cfg.core.errors import ConfigError

OWN_MODULES = ("composer_cfg",)
#: Where a config lists the modules it may import from, besides `OWN_MODULES`.
ALLOWED_MODULES_KEY = "logger.allowed_modules"
_allowed: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("allowed_modules", default=OWN_MODULES)


@contextlib.contextmanager
def allowing(modules: Sequence[str]) -> Iterator[None]:
    """Within the block (validating or building one config), import from `modules` too."""
    token = _allowed.set(OWN_MODULES + tuple(modules))
    try:
        yield
    finally:
        _allowed.reset(token)


def check_module_names(modules: Any, key: str = ALLOWED_MODULES_KEY) -> tuple[str, ...]:
    """`modules` as a tuple, if it is a list of dotted module names; else `ConfigError` naming `key`."""
    if not isinstance(modules, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of module names, e.g. [my_project], got {modules!r}", key=key)
    for module in modules:
        if not isinstance(module, str) or not all(part.isidentifier() for part in module.split(".")):
            raise ConfigError(f"{key}: {module!r} is not a module name: write dotted identifiers such as "
                              f"'my_project.filters' (a module allows its submodules: no '*')", key=key)
    return tuple(modules)


def import_object(path: str, *, key: str) -> Any:
    """The object at dotted `path`, if the policy allows importing it; else `ConfigError` naming `key`."""
    if not _allowed_name(path):
        raise _outside(path, path.rpartition(".")[0] or path, key)
    try:
        found = locate(path)
    except ImportError as error:
        raise ConfigError(f"{key}: {error}", key=key) from None
    home = found.__name__ if inspect.ismodule(found) else getattr(found, "__module__", None)
    if isinstance(home, str) and not _allowed_name(home):  # reached through an allowed module that imported it
        raise _outside(path, home, key, f" (defined in {home})")
    refused = _refused_by_hydra(path) if callable(found) else None  # a non-callable: its user says so
    if refused:
        raise ConfigError(f"{key}: {refused}", key=key)
    return found


def _allowed_name(name: str) -> bool:
    return any(name == module or name.startswith(module + ".") for module in _allowed.get())


def _outside(path: str, module: str, key: str, whose: str = "") -> ConfigError:
    return ConfigError(f"{key}: {path!r}{whose} is outside the modules this config may import from "
                       f"({', '.join(_allowed.get())}); if you trust it, add its module to {ALLOWED_MODULES_KEY}, "
                       f"e.g. '{ALLOWED_MODULES_KEY}=[{module}]'", key=key)


def _refused_by_hydra(path: str) -> str | None:
    """Hydra's own verdict on a target (its blocklist, from 1.3.4), without calling it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        instantiate({"_target_": path, "_partial_": True})
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
