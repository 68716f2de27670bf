"""Logged values: made safe once per call for every destination, and read back as numbers.

`normalise` runs once in `Logger.data`, before any destination sees the data, so every
destination receives the same, already-checked values:

* keys are strings, at every depth (`TypeError` naming the key path otherwise);
* tensors (any device, ``requires_grad`` or not) become detached host copies: one transfer;
* numpy arrays, lists, dicts, sets and other mutable values are copied, so a caller that
  changes them later does not change what was logged (destinations need not copy again);
* subclasses of ``float``, ``int`` and ``str`` become the plain type with the same value
  (a subclass that overrides ``__float__`` would otherwise read as two different numbers);
  numpy scalars (``numpy.float64`` is a float subclass) are kept as they are, as Composer kept them;
* iterators and generators are refused (one destination would drain them for the others);
* depth, size and cycles are bounded, with an error naming the key.

The common case, a flat dict of plain numbers and strings with keys seen before, is passed
through unchanged (no copy).

>>> normalise({"loss": 0.25, "nested": {"acc": [1, 0.5]}})
{'loss': 0.25, 'nested': {'acc': [1, 0.5]}}
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable

PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})
_STR = frozenset({str})
#: Values kept by reference: they can not change after the call.
_IMMUTABLE = PLAIN_SCALARS | {bytes, complex}
MAX_DEPTH = 32
MAX_ITEMS = 100_000


def normalise(data: Any, tensor: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """The data a `Logger` hands to its destinations: see the module's docstring.

    `tensor`: what a tensor becomes instead of a detached host copy (`composer_cfg.deferred`
    keeps it on its device until a batched transfer).
    """
    if (type(data) is dict and len(data) <= MAX_ITEMS and _STR.issuperset(map(type, data))
            and PLAIN_SCALARS.issuperset(map(type, data.values()))):
        return data
    if not isinstance(data, Mapping):
        raise TypeError(f"log data must be a mapping of names to values, got {type(data).__name__}: {_short(data)}")
    return _mapping(data, "", (), tensor or host_copy)


def _mapping(data: Mapping[Any, Any], path: str, parents: tuple[int, ...], tensor: Callable[[Any], Any]) -> dict[str, Any]:
    parents = _enter(data, path, parents)
    result = {}
    for key, value in _bounded(data, path).items():
        if type(key) is not str:
            if not isinstance(key, str):
                where = f" in the value of {path!r}" if path else ""
                raise TypeError(f"log data keys must be strings, got {key!r} ({type(key).__name__}){where}")
            key = str.__str__(key)
        result[key] = _value(value, f"{path}[{key!r}]" if path else key, parents, tensor)
    return result


def _value(value: Any, path: str, parents: tuple[int, ...], tensor: Callable[[Any], Any]) -> Any:
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return tensor(value)
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
        raise TypeError(f"log data value for key {path!r} is an iterator ({kind.__name__}): it can be read only "
                        f"once, so one destination would take it from the others; log list(...) instead")
    if isinstance(value, Iterable):
        return _items(value, path, parents, tensor)
    try:
        return copy.deepcopy(value)
    except Exception as error:
        raise TypeError(f"log data value for key {path!r} can not be copied to keep it: "
                        f"{type(error).__name__}: {error}") from None


def _items(container: Iterable[Any], path: str, parents: tuple[int, ...], tensor: Callable[[Any], Any]) -> list[Any]:
    inner = _enter(container, path, parents)
    return [_value(item, f"{path}[{index}]", inner, tensor) for index, item in enumerate(_bounded(container, path))]


def host_copy(tensor: Any) -> Any:
    """A tensor as a host copy the caller can not change: one transfer from any device, no autograd history."""
    return tensor.detach().to("cpu", copy=True)


def _array_copy(value: Any) -> Any:
    """A numpy array as a copy the caller can not change, a numpy scalar as it is; None for anything else."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            return value.copy()
        if isinstance(value, numpy.generic):
            return value  # numpy scalars are immutable
    return None


def _bounded(container: Any, path: str) -> Any:
    size = len(container) if hasattr(container, "__len__") else 0
    if size > MAX_ITEMS:
        where = f"log data value for key {path!r}" if path else "log data"
        raise ValueError(f"{where} is too large to log ({size:,} items, at most {MAX_ITEMS:,}): log a summary, "
                         f"or save it to a file and log a file artifact")
    return container


def _enter(container: object, path: str, parents: tuple[int, ...]) -> tuple[int, ...]:
    where = f"log data value for key {path!r}" if path else "log data"
    if id(container) in parents:
        raise ValueError(f"{where} contains itself (a cyclic container)")
    if len(parents) >= MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    return parents + (id(container),)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def scalar(value: Any) -> float | None:
    """`value` as a float if it is one number a float can hold (int, float, numpy scalar,
    one-element tensor); None otherwise (an int too large for a float included)."""
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return float(value.item()) if value.numel() == 1 else None
    if type(value).__module__ == "numpy" and getattr(value, "size", 0) == 1:
        return float(value.item()) if isinstance(value.item(), (int, float)) else None
    return None
