"""Check a config value against a parameter's annotation, with pydantic.

pydantic validates the annotation in strict mode (a YAML value is taken as the type it has: the
string ``"3"`` is not an integer, ``1`` is not ``true``) and without NaN or infinity: base types,
unions, literals, containers and their items. The annotation's `Meaning` metadata (levels,
templates, ranges...) runs inside the same validation. A failure becomes one `ConfigError` naming
the key path (down to a container's item) in the project's words.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from composer_cfg.config.meaning import CheckContext, Meaning
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.templates import PREVIEW

#: pydantic's error types, as this project says what was expected.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "a boolean (true/false)",
    "dict_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "sequence_str": "a list of strings",
    "callable_type": "a callable",
}


def check_value(key: str, value: Any, annotation: Any, world_size: int = 1) -> None:
    """Raise `ConfigError` if `value` does not fit `annotation` (its meanings included)."""
    from pydantic import ValidationError

    try:
        _adapter(annotation).validate_python(value, context=CheckContext(key, world_size))
    except ValidationError as error:
        raise _config_error(key, value, annotation, error.errors()) from None


def meanings_of(annotation: Any) -> list[Meaning]:
    """The meanings an annotation declares, those of its union members included."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        return [m for m in metadata if isinstance(m, Meaning)] + meanings_of(base)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [meaning for option in typing.get_args(annotation) for meaning in meanings_of(option)]
    return []


@functools.lru_cache(maxsize=None)
def type_hints(target: Any) -> dict[str, Any]:
    """The annotations of `target`'s parameters (of its ``__init__`` for a class), evaluated once."""
    try:
        return typing.get_type_hints(target.__init__ if inspect.isclass(target) else target, include_extras=True)
    except Exception:  # noqa: BLE001 - annotations that do not evaluate (a third-party target): types unchecked
        return {}


@functools.lru_cache(maxsize=None)
def _adapter(annotation: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    return TypeAdapter(annotation, config=ConfigDict(strict=True, arbitrary_types_allowed=True, allow_inf_nan=False))


def _config_error(key: str, value: Any, annotation: Any, errors: list[dict[str, Any]]) -> ConfigError:
    for error in errors:  # a meaning's own words
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):
            return cause
    first = errors[0]
    inside = _data_path(value, first["loc"])
    if inside:  # an item of a container
        where = key + "".join(f".{part}" for part in inside)
        what = "a string key" if "[key]" in first["loc"] else _expected(first)
        return ConfigError(f"{where}: expected {what}, got {_shown(first['input'])}", key=where)
    described = [m.describe() for m in meanings_of(annotation) if m.describe()]
    expected = described[0] if described else " or ".join(dict.fromkeys(_expected(error) for error in errors))
    if value is None:
        return ConfigError(f"{key}: null is not allowed here; expected {expected}", key=key)
    return ConfigError(f"{key}: expected {expected}, got {_shown(value)}", key=key)


def _data_path(value: Any, location: tuple[Any, ...]) -> list[Any]:
    """The parts of a pydantic error location that are keys or indexes of `value` (the others
    name the union member that was tried)."""
    path, node = [], value
    for part in location:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            continue
        path.append(part)
    return path


def _expected(error: dict[str, Any]) -> str:
    context = error.get("ctx", {})
    if error["type"] in ("literal_error", "enum"):
        return f"one of {context['expected']}"
    if error["type"] == "is_instance_of":
        return f"a {context['class']}"
    return _EXPECTED.get(error["type"], error["msg"])


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 2 * PREVIEW:
        text = f"{text[:2 * PREVIEW]}…"
    return f"{text} ({type(value).__name__})"
