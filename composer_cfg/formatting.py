"""`format_log_data_value`: the reference text form of logged data (FileLogger lines, console)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sized
from typing import Any, Callable


def _quote(text: str) -> str:
    return f'"{text}"'


def _fixed4(number: float) -> str:
    return "%.4f" % number


# Exact types first: the hot path is a dict of plain numbers.
_SCALARS: dict[type, Callable[[Any], str]] = {
    type(None): str,
    str: _quote,
    bool: str,
    int: str,
    float: _fixed4,
}


def format_log_data_value(data: Any) -> str:
    """Render `data` exactly as Composer's loggers did.

    Floats get four decimals, strings double quotes, mappings ``{ "k": v, }`` with a comma after
    every item, other iterables ``[a, b]``; a one-element tensor is shown as its value.

    >>> format_log_data_value({"loss": 0.5, "nested": {"acc": [1, 0.25]}})
    '{ "loss": 0.5000, "nested": { "acc": [1, 0.2500], }, }'

    Raises `TypeError` for a non-string mapping key or a value that can not be rendered, and
    `ValueError` for a container that contains itself or text longer than `MAX_TEXT`, naming
    the (innermost) key.
    """
    if type(data) is dict:  # the hot case: the same keys and value types call after call
        values = tuple(data.values())
        signature = (*data, *map(type, values))
        template = _FLAT_TEMPLATES.get(signature)
        if template is None:
            template = _flat_template(data)
            if len(_FLAT_TEMPLATES) >= _MAX_FLAT_TEMPLATES:
                _FLAT_TEMPLATES.clear()
            _FLAT_TEMPLATES[signature] = template
        if template:
            text = template % values
            if len(text) <= MAX_TEXT:
                return text
    try:
        text = _render(data, ())
    except _Refused as refused:
        raise refused.public() from None
    if len(text) > MAX_TEXT:
        raise ValueError(f"log data is too large to log as text ({len(text):,} characters, at most {MAX_TEXT:,}): "
                         f"log a summary, or save it to a file and log a file artifact")
    return text


#: At most this many characters of text for one call, and items in one container.
MAX_TEXT = 1_000_000
MAX_ITEMS = 100_000

# A dict of str keys and plain scalars renders through one %-template per signature.
_PLACEHOLDERS = {float: "%.4f", int: "%d", bool: "%s", str: '"%s"', type(None): "%s"}
_FLAT_TEMPLATES: dict[tuple[Any, ...], str] = {}
_MAX_FLAT_TEMPLATES = 1024


def _flat_template(data: dict[Any, Any]) -> str:
    """The %-template rendering `data`'s values, or "" if `data` is not flat."""
    parts = ["{ "]
    for key, value in data.items():
        placeholder = _PLACEHOLDERS.get(type(value))
        if type(key) is not str or placeholder is None:
            return ""
        parts.append(f'"{key.replace("%", "%%")}": {placeholder}, ')
    parts.append("}")
    return "".join(parts)


def _render(data: Any, parents: tuple[int, ...]) -> str:
    render = _SCALARS.get(type(data))
    if render is not None:
        return render(data)
    if data is None:
        return "None"
    if isinstance(data, str):
        return _quote(data)
    if isinstance(data, int):
        return str(data)
    if isinstance(data, float):
        return _fixed4(data)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(data, torch.Tensor):
        if data.numel() == 1:
            return _render(data.cpu().item(), parents)
        return f"Tensor of shape {data.shape}"
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(data, numpy.ndarray) and data.ndim == 0:
        return _render(data.item(), parents)  # iterating a 0-d array would raise
    if isinstance(data, Mapping):
        inner = _enter(data, parents)
        items = []
        for key, value in data.items():
            if not isinstance(key, str):
                raise TypeError(f"log data keys must be strings, got {key!r} ({type(key).__name__})")
            items.append(f'"{key}": {_render_item(key, value, inner)}, ')
        return "{ " + "".join(items) + "}"
    if isinstance(data, Iterable):
        inner = _enter(data, parents)
        size = len(data) if isinstance(data, Sized) else 0
        if size > MAX_ITEMS:
            raise _TooLarge(f"{size:,} items, at most {MAX_ITEMS:,}")
        return "[" + ", ".join(_render(item, inner) for item in data) + "]"
    try:
        return str(data)
    except Exception as error:
        raise _Unformattable(f"{type(error).__name__}: {error}") from None


def _render_item(key: str, value: Any, parents: tuple[int, ...]) -> str:
    try:
        text = _render(value, parents)
    except _Refused as refused:
        raise refused.public(key) from None
    if len(text) > MAX_TEXT:
        raise _TooLarge(f"{len(text):,} characters, at most {MAX_TEXT:,}").public(key)
    return text


class _Refused(Exception):
    """Why a value can not be rendered; `public` names the key it was under."""

    def public(self, key: str | None = None) -> Exception:
        raise NotImplementedError


class _Cycle(_Refused):
    def public(self, key: str | None = None) -> Exception:
        where = f"log data value for key {key!r}" if key else "log data"
        return ValueError(f"{where} contains itself (a cyclic container)")


class _TooLarge(_Refused):
    def public(self, key: str | None = None) -> Exception:
        where = f"log data value for key {key!r}" if key else "log data"
        return ValueError(f"{where} is too large to log as text ({self}): log a summary, or save it to a file "
                          f"and log a file artifact")


class _Unformattable(_Refused):
    def public(self, key: str | None = None) -> Exception:
        where = f"log data value for key {key!r}" if key else "log data value"
        return TypeError(f"{where} can not be turned into text: its __str__ raised {self}")


def _enter(container: object, parents: tuple[int, ...]) -> tuple[int, ...]:
    if id(container) in parents:
        raise _Cycle()
    return parents + (id(container),)
