"""`ConfigError`: the one exception type for a bad configuration."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A configuration value is wrong.

    The message names the key path, the bad value, what is allowed and, when known, the file the
    value came from. `problems` holds one line per problem when several were found at once; `key`,
    when given, is the key (or environment variable) the message starts with.
    """

    def __init__(self, message: str, problems: list[str] | None = None, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.problems = problems if problems is not None else [" ".join(message.split("\n"))]

    @classmethod
    def from_problems(cls, problems: list[str]) -> ConfigError:
        count = f"{len(problems)} configuration errors:\n" if len(problems) > 1 else ""
        return cls(count + "\n".join(problems), problems)


def suggest(key: str, accepted: Iterable[str]) -> str:
    """The end of an unknown-key message: ``; did you mean 'x'? allowed: a, b, x``."""
    accepted = list(accepted)
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"{hint} allowed: {', '.join(accepted)}"
