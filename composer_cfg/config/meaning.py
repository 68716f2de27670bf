"""`Meaning`: what a parameter's value means beyond its type, declared as `Annotated` metadata.

A destination annotates a constructor parameter once (``log_interval: PositiveInt``); the config
validator checks a YAML value against the whole annotation with pydantic, the meaning's `check`
included (see `composer_cfg.config.annotations`), and the constructor calls the same `check`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple


class LocalPath(NamedTuple):
    """A local file or directory a run creates (with its parents)."""

    path: Path
    directory: bool


@dataclass(frozen=True)
class CheckContext:
    """What a meaning's check needs to know besides the value: its key path and the run's size."""

    key: str
    world_size: int = 1


class Meaning:
    """A parameter's meaning. Subclasses define `check`; the others have defaults."""

    def check(self, key: str, value: Any, world_size: int = 1) -> Any:
        """Return `value` (or what it stands for, such as a `Template`); `ConfigError` naming `key`
        if it does not mean anything here."""
        raise NotImplementedError

    def describe(self) -> str | None:
        """What the parameter takes, in words, for a value of the wrong type (None: its type says it)."""
        return None

    def local_path(self, value: Any, fields: Mapping[str, Any]) -> LocalPath | None:
        """The local file or directory the run creates from `value` (template `fields` filled), if any."""
        return None

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        """Validate the annotated type first, then `check` the value as given (not as pydantic
        converted it: ``0``, not ``0.0``), with the `CheckContext` pydantic is given."""
        from pydantic_core import core_schema

        def wrap(value: Any, validate: Any, info: Any) -> Any:
            validated = validate(value)
            context: CheckContext = info.context
            self.check(context.key, value, context.world_size)
            return validated

        return core_schema.with_info_wrap_validator_function(wrap, handler(source))
