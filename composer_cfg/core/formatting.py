"""`format_log_data_value`: the reference text form of logged data; `format_log_text`: the same,
escaped for a line of text (FileLogger lines, console lines)."""

from __future__ import annotations
from composer_cfg.core.tensors import tensor_class

import sys
from collections.abc import Iterable, Mapping, Sized
from typing import Any, Callable

#: At most this many characters of text for one call, and items in one container.
MAX_TEXT = 1_000_000
MAX_ITEMS = 100_000

#: Control characters (C0, DEL, C1) and the two Unicode separators `str.splitlines` also breaks at.
CONTROL_CODES = frozenset((*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029))

# What text lines escape, as JSON strings do: the quote, the backslash and `CONTROL_CODES`.
_ESCAPES = {
    **{code: f"\\u{code:04x}" for code in sorted(CONTROL_CODES)},
    **{ord(char): f"\\{short}" for char, short in zip('"\\\b\f\n\r\t', '"\\bfnrt')},
}


def has_control_character(text: str) -> bool:
    """Whether `text` holds one of `CONTROL_CODES`: a name with one could break or forge a line."""
    return not CONTROL_CODES.isdisjoint(map(ord, text))


def escape_text(text: str) -> str:
    """`text` with JSON's string escapes (``\\n``, ``\\"``, ``\\\\``, ``\\u001b``...), so that, quoted,
    it is one line that reads back with `json.loads`; other text, non-ASCII included, is kept.

    >>> print(escape_text('say "hi"\\n'))
    say \\"hi\\"\\n
    """
    if text.isprintable() and '"' not in text and "\\" not in text:  # the common case, at C speed
        return text
    return text.translate(_ESCAPES)


def _as_is(text: str) -> str:
    return text


def _fixed4(number: float) -> str:
    return "%.4f" % number


# Exact types first: the hot path is a dict of plain numbers.
def _integer(number: int) -> str:
    try:
        return str(number)
    except ValueError:  # more digits than Python writes as text
        raise _TooManyDigits() from None


_SCALARS: dict[type, Callable[[Any], str]] = {
    type(None): str,
    bool: str,
    int: _integer,
    float: _fixed4,
}

# A dict of str keys and plain scalars renders through one %-template per signature.
_PLACEHOLDERS = {float: "%.4f", int: "%d", bool: "%s", str: '"%s"', type(None): "%s"}
_MAX_FLAT_TEMPLATES = 1024


def _text_format(escape: Callable[[str], str], name: str, doc: str) -> Callable[[Any], str]:
    """A formatter that writes every piece of text (keys, strings, other objects' ``str``) through
    `escape`; each has its own cache of flat templates."""
    flat_templates: dict[tuple[Any, ...], str | tuple[str, tuple[int, ...]]] = {}

    def format_value(data: Any) -> str:
        if type(data) is dict:  # the hot case: the same keys and value types call after call
            values = tuple(data.values())
            signature = (*data, *map(type, values))
            template = flat_templates.get(signature)
            if template is None:
                template = _flat_template(data, escape)
                if len(flat_templates) >= _MAX_FLAT_TEMPLATES:
                    flat_templates.clear()
                flat_templates[signature] = template
            if type(template) is tuple:  # strings to escape (a check costs less than unpacking every time)
                template, strings = template
                escaped = list(values)
                for index in strings:
                    escaped[index] = escape(escaped[index])
                values = tuple(escaped)
            if template:
                try:
                    text = template % values
                except ValueError:  # an integer too long to write as text: the walk below names its key
                    text = ""
                if text and len(text) <= MAX_TEXT:
                    return text
        try:
            text = _render(data, (), escape)
        except _Refused as refused:
            raise refused.public() from None
        if len(text) > MAX_TEXT:
            raise ValueError(f"log data is too large to log as text ({len(text):,} characters, at most {MAX_TEXT:,}): "
                             f"log a summary, or save it to a file and log a file artifact")
        return text

    format_value.__name__ = format_value.__qualname__ = name
    format_value.__doc__ = doc
    return format_value


format_log_data_value = _text_format(_as_is, "format_log_data_value", """Render `data` exactly as Composer's
    loggers did.

    Floats get four decimals, strings double quotes (nothing escaped), mappings ``{ "k": v, }``
    with a comma after every item, other iterables ``[a, b]``; a one-element tensor is shown as
    its value.

    >>> format_log_data_value({"loss": 0.5, "nested": {"acc": [1, 0.25]}})
    '{ "loss": 0.5000, "nested": { "acc": [1, 0.2500], }, }'

    Raises `TypeError` for a non-string mapping key or a value that can not be rendered, and
    `ValueError` for a container that contains itself or text longer than `MAX_TEXT`, naming
    the (innermost) key.
    """)

format_log_text = _text_format(escape_text, "format_log_text", """`format_log_data_value` for a line of text: what
    the FileLogger and the console write.

    Keys, strings and other objects' ``str`` go through `escape_text`, so one call is one line
    and no key or value can forge another; for text without quotes, backslashes or control
    characters it is exactly the reference formatting.

    >>> print(format_log_text({'a", "b': "line\\nbreak", "loss": 0.5}))
    { "a\\", \\"b": "line\\nbreak", "loss": 0.5000, }
    """)


def _flat_template(data: dict[Any, Any], escape: Callable[[str], str]) -> str | tuple[str, tuple[int, ...]]:
    """The %-template rendering `data`'s values ("" if `data` is not flat), paired with the
    positions of the strings to escape when it is filled, if there are any (never for `_as_is`)."""
    parts = ["{ "]
    strings = []
    for index, (key, value) in enumerate(data.items()):
        placeholder = _PLACEHOLDERS.get(type(value))
        if type(key) is not str or placeholder is None:
            return ""
        if type(value) is str and escape is not _as_is:
            strings.append(index)
        parts.append(f'"{escape(key).replace("%", "%%")}": {placeholder}, ')
    parts.append("}")
    template = "".join(parts)
    return (template, tuple(strings)) if strings else template


def _render(data: Any, parents: tuple[int, ...], escape: Callable[[str], str]) -> str:
    render = _SCALARS.get(type(data))
    if render is not None:
        return render(data)
    if data is None:
        return "None"
    if isinstance(data, str):
        return f'"{escape(data)}"'
    if isinstance(data, int):
        return _integer(data)
    if isinstance(data, float):
        return _fixed4(data)
    tensor_type = tensor_class()
    if tensor_type is not None and isinstance(data, tensor_type):
        if data.numel() == 1:
            return _render(data.cpu().item(), parents, escape)
        return f"Tensor of shape {data.shape}"
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(data, numpy.ndarray) and data.ndim == 0:
        return _render(data.item(), parents, escape)  # iterating a 0-d array would raise
    if isinstance(data, Mapping):
        inner = _enter(data, parents)
        items = []
        for key, value in data.items():
            if not isinstance(key, str):
                raise TypeError(f"log data keys must be strings, got {key!r} ({type(key).__name__})")
            items.append(f'"{escape(key)}": {_render_item(key, value, inner, escape)}, ')
        return "{ " + "".join(items) + "}"
    if isinstance(data, Iterable):
        inner = _enter(data, parents)
        size = len(data) if isinstance(data, Sized) else 0
        if size > MAX_ITEMS:
            raise _TooLarge(f"{size:,} items, at most {MAX_ITEMS:,}")
        return "[" + ", ".join(_render(item, inner, escape) for item in data) + "]"
    try:
        text = str(data)
    except Exception as error:
        raise _Unformattable(f"{type(error).__name__}: {error}") from None
    return escape(text)


def _render_item(key: str, value: Any, parents: tuple[int, ...], escape: Callable[[str], str]) -> str:
    try:
        text = _render(value, parents, escape)
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


class _TooManyDigits(_Refused):
    def public(self, key: str | None = None) -> Exception:
        where = f"log data value for key {key!r}" if key else "log data value"
        return ValueError(f"{where} can not be written as text: an integer of more than "
                          f"{sys.get_int_max_str_digits()} digits (Python's limit: sys.set_int_max_str_digits)")


def _enter(container: object, parents: tuple[int, ...]) -> tuple[int, ...]:
    if id(container) in parents:
        raise _Cycle()
    return parents + (id(container),)
