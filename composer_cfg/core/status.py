"""`RunStatus`: how a run ended, as every tracker records it."""

from __future__ import annotations

from enum import Enum


class Killed(SystemExit):
    """Raised in the main thread by composer_cfg's SIGTERM handler: the stack unwinds (releasing
    every lock it holds), ``with logger:`` blocks close their Loggers with status KILLED, and the
    process then dies of SIGTERM. Reaching the top, it ends the program quietly, like `SystemExit`."""

    def __init__(self) -> None:
        super().__init__(128 + 15)


class RunStatus(str, Enum):
    """The outcome a `Logger` passes to each destination's `finalize` (MLflow's names).

    >>> RunStatus.of(None), RunStatus.of(RuntimeError("diverged")), RunStatus.of(KeyboardInterrupt())
    (<RunStatus.FINISHED: 'FINISHED'>, <RunStatus.FAILED: 'FAILED'>, <RunStatus.KILLED: 'KILLED'>)
    """

    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @classmethod
    def of(cls, exception: BaseException | None) -> RunStatus:
        """The status of a run that ended with `exception` (None: it ended normally).

        ``sys.exit(0)`` is a normal end; an interrupt (Ctrl-C) is KILLED; anything else FAILED.
        """
        if exception is None:
            return cls.FINISHED
        if isinstance(exception, (KeyboardInterrupt, Killed)):
            return cls.KILLED
        if isinstance(exception, SystemExit) and exception.code in (0, None):
            return cls.FINISHED
        return cls.FAILED

    @classmethod
    def parse(cls, value: object) -> RunStatus:
        """A member, or its name in any case; else `ValueError` naming the valid ones."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and value.strip().upper() in cls.__members__:
            return cls[value.strip().upper()]
        raise ValueError(f"invalid run status {value!r}: expected one of {', '.join(cls.__members__)}")

    @property
    def exit_code(self) -> int:
        """The process-style exit code trackers such as W&B record: 0 only for FINISHED."""
        return 0 if self is RunStatus.FINISHED else 1

    def __str__(self) -> str:
        return self.value
