"""`Problem`: one thing wrong in a config, at a key path; `catch` turns a `ConfigError` into one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from composer_cfg.core.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    key: str
    message: str


def catch(problems: list[Problem], key: str, check: Callable[[], Any], prefix: str = "") -> Any:
    """What `check()` returns; None, its `ConfigError` added to `problems`, if it raises.

    The problem's key is the error's own (after `prefix`, for a key relative to a node), else `key`.
    """
    try:
        return check()
    except ConfigError as error:
        message, key = str(error), f"{prefix}{error.key}" if error.key else key
        own = f"{error.key}: " if error.key else f"{key}: "
        problems.append(Problem(key, message[len(own):] if message.startswith(own) else message))
        return None

