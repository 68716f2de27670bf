"""Logged values: made safe once per call for every destination, and read back as numbers.

`normalise` runs once per call, when the `Logger` builds the call's record, before any
destination sees it, so every destination receives the same, already-checked values, which the
caller can no longer change:

* keys are strings, at every depth (`TypeError` naming the key path otherwise);
* tensors become detached host copies (one transfer), or what the caller's `tensor` makes of
  them (`composer_cfg.runtime.tensor_stage` keeps device tensors on their device until a flush
  point); numpy arrays, lists, dicts, sets and other mutable values are copied;
* subclasses of ``float``, ``int`` and ``str`` become the plain type with the same value
  (a subclass that overrides ``__float__`` would otherwise read as two different numbers);
  numpy scalars (``numpy.float64`` is a float subclass) are kept as they are, as Composer kept them;
* iterators and generators are refused (one destination would drain them for the others);
* depth, size and cycles are bounded; a value that fails to be read (its ``__iter__`` or
  ``__deepcopy__`` raises) is a `TypeError` naming its key. Every error names the key path,
  cut short when the key is long.

The common case, a flat dict of plain numbers and strings, costs one shallow copy.

>>> normalise({"loss": 0.25, "nested": {"acc": [1, 0.5]}})
{'loss': 0.25, 'nested': {'acc': [1, 0.5]}}
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable

from composer_cfg.core.templates import preview
from composer_cfg.core.tensors import tensor_class

PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})
_STR = frozenset({str})
#: Values kept by reference: they can not change after the call.
_IMMUTABLE = PLAIN_SCALARS | {bytes, complex}
MAX_DEPTH = 32
MAX_ITEMS = 100_000
#: Characters of a key path an error message shows (a key may be a million characters long).
SHOWN_PATH = 200


class LogDataError(Exception):
    """Logged data that can not be kept as it is; the message names the key."""


class BadLogData(LogDataError, TypeError):
    """A key that is not a string, an iterator, a value that fails to be read or copied."""


class LogDataTooLarge(LogDataError, ValueError):
    """Data too large, too deep, or cyclic."""


def plain(data: Any) -> bool:
    """Whether `data` is the common case: a flat dict of plain numbers and strings, string keys
    (two C-level scans; its normal form is a shallow copy)."""
    return (type(data) is dict and len(data) <= MAX_ITEMS and _STR.issuperset(map(type, data))
            and PLAIN_SCALARS.issuperset(map(type, data.values())))


def normalise(data: Any, tensor: Callable[[Any, str], Any] | None = None) -> dict[str, Any]:
    """The data a `Logger` hands to its destinations, as a new dict: see the module's docstring.

    `tensor(value, key_path)`: what a tensor becomes instead of a detached host copy.
    """
    if plain(data):
        return dict(data)
    if not isinstance(data, Mapping):
        raise BadLogData(f"log data must be a mapping of names to values, got {type(data).__name__}: {_short(data)}")
    return _mapping(data, "", (), tensor or host_copy)


def _mapping(data: Mapping[Any, Any], path: str, parents: tuple[int, ...], tensor: Callable[[Any, str], Any]
             ) -> dict[str, Any]:
    parents = _enter(data, path, parents)
    result = {}
    for key, value in _bounded(data, path).items():
        if type(key) is not str:
            if not isinstance(key, str):
                where = f" in the value of {_shown(path)}" if path else ""
                raise BadLogData(f"log data keys must be strings, got {_short(key)} ({type(key).__name__}){where}")
            key = str.__str__(key)
        inner = f"{path}[{key!r}]" if path else key
        try:
            result[key] = _value(value, inner, parents, tensor)
        except LogDataError:
            raise
        except Exception as error:  # a value whose reading raised: say which
            raise BadLogData(f"log data value for key {_shown(inner)} can not be read: {type(error).__name__}: "
                               f"{_short(error)}") from None
    return result


def _value(value: Any, path: str, parents: tuple[int, ...], tensor: Callable[[Any, str], Any]) -> Any:
    kind = type(value)
    if kind in _IMMUTABLE:
        if kind is int and value.bit_length() > 3000 and _too_long(value):
            raise LogDataTooLarge(f"log data value for key {_shown(path)} can not be written as text: an integer of "
                                  f"more than {sys.get_int_max_str_digits()} digits (Python's limit: "
                                  f"sys.set_int_max_str_digits)")
        return value
    tensor_type = tensor_class()
    if tensor_type is not None and isinstance(value, tensor_type):
        return tensor(value, path)
    host = _array_copy(value)  # before the float check: numpy.float64 is a float, kept as given (as Composer did)
    if host is not None:
        return host
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, Mapping):
        return _mapping(value, path, parents, tensor)
    if kind is list or kind is tuple:
        items = _items(value, path, parents, tensor)
        return items if kind is list else tuple(items)
    if isinstance(value, (set, frozenset)):
        return (frozenset if isinstance(value, frozenset) else set)(_items(value, path, parents, tensor))
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, Iterator):
        raise BadLogData(f"log data value for key {_shown(path)} is an iterator ({kind.__name__}): it can be "
                           f"read only once, so one destination would take it from the others; log list(...) instead")
    if isinstance(value, Iterable):
        return _items(value, path, parents, tensor)
    try:
        kept = copy.deepcopy(value)
    except Exception as error:
        raise BadLogData(f"log data value for key {_shown(path)} can not be copied to keep it: "
                           f"{type(error).__name__}: {_short(error)}") from None
    try:
        str(kept)  # what a text destination writes of it: checked here, once, for all of them
    except Exception as error:
        raise BadLogData(f"log data value for key {_shown(path)} can not be turned into text: its __str__ raised "
                         f"{type(error).__name__}: {_short(error)}") from None
    return kept


def _too_long(value: int) -> bool:
    """Whether Python refuses to write `value` as text (more digits than `sys.get_int_max_str_digits`)."""
    limit = sys.get_int_max_str_digits()
    return limit > 0 and abs(value) >= 10 ** limit


def _items(container: Iterable[Any], path: str, parents: tuple[int, ...], tensor: Callable[[Any, str], Any]
           ) -> list[Any]:
    inner = _enter(container, path, parents)
    return [_value(item, f"{path}[{index}]", inner, tensor) for index, item in enumerate(_bounded(container, path))]


def host_copy(tensor: Any, path: str = "") -> Any:
    """A tensor as a host copy the caller can not change: one transfer from any device, no autograd history."""
    return tensor.detach().to("cpu", copy=True)


def _array_copy(value: Any) -> Any:
    """A numpy array as a copy the caller can not change, a numpy scalar as it is; None for anything else."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray):  # an array of objects holds references: copied too
            return copy.deepcopy(value) if value.dtype.hasobject else value.copy()
        if isinstance(value, numpy.generic):
            return value  # numpy scalars are immutable
    return None


def _bounded(container: Any, path: str) -> Any:
    size = len(container) if hasattr(container, "__len__") else 0
    if size > MAX_ITEMS:
        where = f"log data value for key {_shown(path)}" if path else "log data"
        raise LogDataTooLarge(f"{where} is too large to log ({size:,} items, at most {MAX_ITEMS:,}): log a summary, "
                         f"or save it to a file and log a file artifact")
    return container


def _enter(container: object, path: str, parents: tuple[int, ...]) -> tuple[int, ...]:
    where = f"log data value for key {_shown(path)}" if path else "log data"
    if id(container) in parents:
        raise LogDataTooLarge(f"{where} contains itself (a cyclic container)")
    if len(parents) >= MAX_DEPTH:
        raise LogDataTooLarge(f"{where} is nested more than {MAX_DEPTH} levels deep")
    return parents + (id(container),)


def _shown(path: str) -> str:
    return preview(path, SHOWN_PATH)


def _short(value: Any) -> str:
    try:
        text = str(value) if isinstance(value, BaseException) else repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr raises: its type says enough
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def scalar(value: Any) -> float | None:
    """`value` as a float if it is one number a float can hold (int, float, numpy scalar,
    one-element tensor); None otherwise (an int too large for a float included)."""
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    tensor_type = tensor_class()
    if tensor_type is not None and isinstance(value, tensor_type):
        return float(value.item()) if value.numel() == 1 else None
    if type(value).__module__ == "numpy" and getattr(value, "size", 0) == 1:
        return float(value.item()) if isinstance(value.item(), (int, float)) else None
    return None
