"""`Logger`: routes logged data, file artifacts and events to destinations."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Iterable

from composer_cfg.destination import LoggerDestination
from composer_cfg.events import Event
from composer_cfg.log_level import LogLevel
from composer_cfg.state import State
from composer_cfg.templates import TIME_FIELDS, Template, check_artifact_name

Destinations = LoggerDestination | Sequence[LoggerDestination | None] | Mapping[str, LoggerDestination | None] | None


class Logger:
    """Sends each call to the destinations that take it.

    `destinations` may be ``None``, one destination, a sequence, or a mapping of name to
    destination (values in order; ``None`` values skipped, so a config can switch one off).
    Which destinations take which level is decided here, once: a destination whose `log_level`
    excludes a level costs nothing on calls at that level.

    >>> from composer_cfg import InMemoryLogger, State
    >>> memory = InMemoryLogger(log_level="epoch")
    >>> with Logger(State("demo"), {"memory": memory}) as logger:
    ...     logger.data_batch({"loss": 0.25})   # above the threshold: not sent
    ...     logger.data_epoch({"acc": 0.9})
    >>> memory.most_recent_values
    {'acc': 0.9}
    """

    def __init__(self, state: State, destinations: Destinations = None) -> None:
        self._state = state
        named = _named(destinations)
        self.destinations: tuple[LoggerDestination, ...] = tuple(dest for _, dest in named)
        self._names = {id(dest): name for name, dest in named}
        self._routes: dict[LogLevel, tuple[LogLevel, tuple[Callable[..., None], ...]]] = {
            level: (level, tuple(dest.log_data for dest in self.destinations if _takes(dest, level)))
            for level in LogLevel
        }
        self._closed = False
        self._failing: dict[int, bool] = {}  # destination id -> its repeat failures were announced
        #: The exception that ended the run, when the ``with`` block exits with one (destinations
        #: read it at close, e.g. to mark a tracked run FAILED).
        self.exception: BaseException | None = None
        _OPEN_LOGGERS.add(self)
        _close_on_sigterm()

    @property
    def state(self) -> State:
        return self._state

    def data(self, log_level: LogLevel | int | str, data: dict[str, Any]) -> None:
        """Send `data` (the same dict, not a copy) to every destination that takes `log_level`."""
        try:
            level, routes = self._routes[log_level]  # type: ignore[index]
        except (KeyError, TypeError):
            level, routes = self._routes[LogLevel.parse(log_level)]
        failures = None
        for log in routes:
            try:
                log(self._state, level, data)
            except Exception as error:  # the other destinations still get the call
                failures = (failures or []) + [(log.__self__, error)]
        if failures or self._failing:
            self._raise(failures, "log_data")

    def data_fit(self, data: dict[str, Any]) -> None:
        """`data(LogLevel.FIT, data)`."""
        self.data(LogLevel.FIT, data)

    def data_epoch(self, data: dict[str, Any]) -> None:
        """`data(LogLevel.EPOCH, data)`."""
        self.data(LogLevel.EPOCH, data)

    def data_batch(self, data: dict[str, Any]) -> None:
        """`data(LogLevel.BATCH, data)`."""
        self.data(LogLevel.BATCH, data)

    def template_fields(self) -> dict[str, Any]:
        """The values templates are filled with now: run name, rank facts and timestamp."""
        state = self._state
        return {"run_name": state.run_name, **state.dist.template_fields(), **state.timestamp.template_fields()}

    def file_artifact(
        self, log_level: LogLevel | int | str, artifact_name: str, file_path: str | Path, *, overwrite: bool = False
    ) -> None:
        """Offer the file at `file_path` to every destination, as `artifact_name`.

        Both are templates (``{run_name}/checkpoints/ep{epoch}-rank{rank}.npz``) filled with
        `template_fields`; the artifact name must stay relative and inside the artifact root.
        """
        level = LogLevel.parse(log_level)
        fields = self.template_fields()
        name = Template(artifact_name, TIME_FIELDS, key="artifact_name").fill(fields)
        check_artifact_name(name, key="artifact_name")
        path = Path(Template(str(file_path), TIME_FIELDS, key="file_path").fill(fields))
        _, failures = self._each(
            lambda dest: dest.log_file_artifact(
                state=self._state, log_level=level, artifact_name=name, file_path=path, overwrite=overwrite
            )
        )
        self._raise(failures, "log_file_artifact")

    def run_event(self, event: Event | str) -> None:
        """Fire `event` on every destination, in order."""
        event = Event(event)
        _, failures = self._each(lambda dest: dest.run_event(event, self._state, self))
        self._raise(failures, event.value)

    def close(self) -> None:
        """Close every destination, then `post_close` those that closed cleanly. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _OPEN_LOGGERS.discard(self)
        closed, close_failures = self._each(lambda dest: dest.close(self._state, self))
        _, post_close_failures = self._each(lambda dest: dest.post_close(), closed)
        self._raise(close_failures + post_close_failures, "close")

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        if exc is not None:
            self.exception = exc
        self.close()

    def name_of(self, destination: LoggerDestination) -> str:
        """The destination's name in the config, or its class name."""
        return self._names.get(id(destination), type(destination).__name__)

    def _each(
        self, call: Callable[[LoggerDestination], None], only: Iterable[LoggerDestination] | None = None
    ) -> tuple[list[LoggerDestination], list[tuple[LoggerDestination, Exception]]]:
        """Call `call` on every destination, even after one fails: (those that succeeded, failures)."""
        done, failures = [], []
        for dest in self.destinations if only is None else only:
            try:
                call(dest)
                done.append(dest)
            except Exception as error:
                failures.append((dest, error))
        return done, failures

    def _raise(self, failures: list[tuple[LoggerDestination, Exception]] | None, what: str) -> None:
        """Raise the first new failure, with a note naming each failing destination.

        A destination that keeps failing (a full disk, a dead server) is reported once: its
        later failures are not raised again (one warning says so) until a call to it succeeds.
        """
        failing = self._failing
        if failing:
            failed_now = {id(dest) for dest, _ in failures or ()}
            for ended in set(failing) - failed_now:  # a success ends a streak
                del failing[ended]
        new = []
        for dest, error in failures or ():
            if id(dest) not in failing:
                new.append((dest, error))
                if not isinstance(error, _REPORT_EVERY_TIME):
                    failing[id(dest)] = False
            elif not failing[id(dest)]:
                failing[id(dest)] = True
                LOG.warning("destination %r failed again (%s: %s); its failures are not raised again until it "
                            "succeeds", self.name_of(dest), type(error).__name__, error)
        if not new:
            return
        first = new[0][1]
        for dest, error in new:
            note = f"raised by destination {self.name_of(dest)!r} in {what}: {type(error).__name__}: {error}"
            if hasattr(first, "add_note"):  # Python >= 3.11
                first.add_note(note)
        raise first


def _named(destinations: Destinations) -> list[tuple[str, LoggerDestination]]:
    if destinations is None:
        items: Iterable[tuple[str | None, Any]] = ()
    elif isinstance(destinations, LoggerDestination):
        items = [(None, destinations)]
    elif isinstance(destinations, Mapping):
        items = destinations.items()
    elif isinstance(destinations, Sequence) and not isinstance(destinations, str):
        items = [(None, dest) for dest in destinations]
    else:
        raise TypeError(f"destinations must be a LoggerDestination, a sequence or a mapping, got {destinations!r}")
    named = []
    for name, dest in items:
        if dest is None:
            continue
        if not isinstance(dest, LoggerDestination):
            raise TypeError(f"destination {name or len(named)} is not a LoggerDestination: {dest!r}")
        named.append((str(name) if name is not None else type(dest).__name__, dest))
    return named


def _takes(destination: LoggerDestination, level: LogLevel) -> bool:
    threshold = destination.log_level
    return threshold is None or level <= threshold


#: Errors about the call itself (bad data), not a destination's health: always raised.
_REPORT_EVERY_TIME = (TypeError, ValueError)
LOG = logging.getLogger("composer_cfg")
_OPEN_LOGGERS: weakref.WeakSet[Logger] = weakref.WeakSet()


@atexit.register
def _close_open_loggers() -> None:
    """What was logged reaches disk when the interpreter exits without `close()`."""
    for logger in list(_OPEN_LOGGERS):
        try:
            logger.close()
        except Exception:  # noqa: BLE001 - at exit there is no caller left to tell
            pass


def _close_on_sigterm() -> None:
    """On SIGTERM: close every open Logger, then let the signal do what it did before.

    Installed once, from the main thread, when the first Logger is made. A previous Python
    handler is called; otherwise the default action ends the process, so its exit status still
    says SIGTERM.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, "_composer_cfg", False):
        return

    def handler(signum: int, frame: Any) -> None:
        _close_open_loggers()
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            os.kill(os.getpid(), signum)

    handler._composer_cfg = True  # type: ignore[attr-defined]
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main interpreter thread after all
        pass
