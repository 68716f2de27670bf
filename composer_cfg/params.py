"""Checks shared by destination constructors and the configuration validator."""

from __future__ import annotations

from typing import Any

from composer_cfg.errors import ConfigError
from composer_cfg.templates import Template


def positive_int(name: str, value: Any) -> int:
    """`value` if it is an int >= 1; else `ConfigError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return value


def require_rank_field(template: Template, world_size: int, *, key: str) -> None:
    """A file every rank writes must have ``{rank}`` in its name once there are several ranks."""
    if world_size > 1 and "rank" not in template.fields:
        raise ConfigError(
            f"{key}: template {template.text!r} has no {{rank}} field, so the {world_size} ranks of this run "
            f"would write the same file; add {{rank}}, e.g. 'logs-rank{{rank}}.txt'"
        )
