"""`LogLevel`: how often a piece of data is logged (FIT < EPOCH < BATCH)."""

from __future__ import annotations

from enum import IntEnum


class LogLevel(IntEnum):
    """Once per run (FIT), once per epoch (EPOCH) or once per batch (BATCH).

    A destination with threshold ``t`` keeps a call made at level ``l`` when ``l <= t``.
    Parsing is forgiving, because YAML, the command line and the environment deliver strings:

    >>> LogLevel(" batch "), LogLevel("2"), LogLevel(1)
    (<LogLevel.BATCH: 3>, <LogLevel.EPOCH: 2>, <LogLevel.FIT: 1>)
    """

    FIT = 1
    EPOCH = 2
    BATCH = 3

    @classmethod
    def parse(cls, value: object) -> LogLevel:
        """Return the member for `value`, or raise `ValueError` naming it and the valid names."""
        if isinstance(value, cls):
            return value
        return cls(value)

    @classmethod
    def _missing_(cls, value: object) -> LogLevel:
        member = _lookup(value)
        if member is None:
            names = ", ".join(m.name for m in cls)
            raise ValueError(
                f"invalid log level {value!r}: expected one of {names} "
                f"(any case) or their values 1, 2, 3"
            )
        return member


def _lookup(value: object) -> LogLevel | None:
    if isinstance(value, int):
        return LogLevel._value2member_map_.get(int(value))  # type: ignore[return-value]
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return LogLevel._value2member_map_.get(int(text))  # type: ignore[return-value]
        return LogLevel.__members__.get(text.upper())
    return None
