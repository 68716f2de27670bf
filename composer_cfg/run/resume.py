"""`Resume`: what a run does when its run name already has a run (``resume: never | auto | must``).

A resumable run (``auto`` or ``must``) is recorded in its manifest (`composer_cfg.run.run_record`):
a later attempt reads it to add to the same files and tracker runs, from the last checkpoint.
"""

from __future__ import annotations

from enum import Enum

from composer_cfg.core.errors import ConfigError


class Resume(str, Enum):
    """What a run does when its run name already has a run.

    >>> Resume.parse("Auto"), Resume.parse(Resume.MUST)
    (<Resume.AUTO: 'auto'>, <Resume.MUST: 'must'>)
    """

    NEVER = "never"  # an existing run is an error
    AUTO = "auto"  # continue it if there is one, else start it
    MUST = "must"  # continue it; no run to continue is an error

    @classmethod
    def parse(cls, value: object, key: str = "resume") -> Resume:
        """A member or its value in any case; else `ConfigError` naming `key` and the valid values."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and value.strip().lower() in cls._value2member_map_:
            return cls(value.strip().lower())
        raise ConfigError(f"{key}: expected one of never, auto, must, got {value!r}", key=key)

    def __str__(self) -> str:
        return self.value
