"""Hyperparameters for trackers whose parameters are flat: nested keys joined with ``/``.

One policy for every flat tracker (MLflow parameters, TensorBoard's hyperparameter table): dict
keys and list indices become path parts, so a list keeps each item readable and searchable.

>>> flatten({"optimizer": {"name": "sgd", "betas": [0.9, 0.99]}, "tags": [], "seed": 0})
{'optimizer/name': 'sgd', 'optimizer/betas/0': 0.9, 'optimizer/betas/1': 0.99, 'tags': [], 'seed': 0}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`data` as one level of ``path/to/key`` names; empty containers are kept as values."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        _add(flat, f"{prefix}{key}", value)
    return flat


def _add(flat: dict[str, Any], name: str, value: Any) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _add(flat, f"{name}/{key}", item)
    elif isinstance(value, (list, tuple)) and value:
        for index, item in enumerate(value):
            _add(flat, f"{name}/{index}", item)
    else:
        flat[name] = value
