"""`Logger`: routes logged data, file artifacts and events to destinations, through a lifecycle."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Iterable

from composer_cfg.runtime import exit_hooks
from composer_cfg.deferred import DeferredValues
from composer_cfg.destination import LoggerDestination
from composer_cfg.core.events import Event
from composer_cfg.runtime.failures import FailureLedger, raise_first
from composer_cfg.core.log_level import LogLevel
from composer_cfg.manifest import read_manifest, write_manifest
from composer_cfg.offload import offloaded_methods
from composer_cfg.overhead import KIND_OF, Meter
from composer_cfg.run.resume import Resume, RunKeeper, run_manifest
from composer_cfg.core.secrets import redact
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus
from composer_cfg.core.templates import TIME_FIELDS, Template, check_artifact_name
from composer_cfg.core.values import normalise

DestinationsGiven = (LoggerDestination | Sequence[LoggerDestination | None] | Mapping[str, LoggerDestination | None]
                     | None)
LOG = logging.getLogger("composer_cfg")
_OPEN, _CLOSING, _CLOSED = "open", "closing", "closed"
CHECKPOINT_EVENTS = (Event.BATCH_CHECKPOINT, Event.EPOCH_CHECKPOINT)


class Logger:
    """Sends each call to the destinations that take it.

    `destinations` may be ``None``, one destination, a sequence, or a mapping of name to
    destination (values in order; ``None`` values skipped, so a config can switch one off).
    Each destination's declared policies (`LoggerDestination`) are applied here, once: a
    destination whose `log_level` excludes a level, or that is `rank_zero_only` on another
    rank, costs nothing on those calls.

    Phases: built (nothing opened, nothing installed); ``run_event(Event.INIT)`` (a destination
    failing there closes all of them and the error is raised); the run; `close` (every
    destination's ``close``, then ``post_close``, then ``finalize`` with the run's status).
    Calls from several threads are safe: each destination writes whole records.

    >>> from composer_cfg import InMemoryLogger, State
    >>> memory = InMemoryLogger(log_level="epoch")
    >>> with Logger(State("demo"), {"memory": memory}) as logger:
    ...     logger.data_batch({"loss": 0.25})   # above the threshold: not sent
    ...     logger.data_epoch({"acc": 0.9})
    >>> memory.most_recent_values
    {'acc': 0.9}
    """

    def __init__(self, state: State, destinations: DestinationsGiven = None, *, resume: Resume | str = Resume.NEVER,
                 defer_tensors: bool = False, measure_overhead: bool = False, offload_writers: bool = False,
                 record_report: bool = True) -> None:
        """`resume` (see `composer_cfg.run.resume`): with ``auto`` or ``must`` the run is recorded in
        its manifest at `Event.INIT`, an existing run is continued, and destinations that can not
        take back what a killed attempt sent after its last checkpoint (`holds_until_checkpoint`)
        receive data at each checkpoint event (``batch_checkpoint``, ``epoch_checkpoint``) and at
        a FINISHED close; what is held when the run fails or is killed is dropped.
        `defer_tensors`: keep logged tensors on their device until the next flush point and
        copy them to the host in one batched transfer (`composer_cfg.deferred`).
        `measure_overhead`: count and time every call into each destination (`overhead`).
        `offload_writers`: the destinations that allow it (`offloadable`: JSON Lines, TensorBoard, a
        text log capturing nothing) write on a thread of their own (`composer_cfg.offload`).
        `record_report`: False keeps `report` out of the run's manifest (a replay of another run)."""
        for key, value in (("defer_tensors", defer_tensors), ("measure_overhead", measure_overhead),
                           ("offload_writers", offload_writers), ("record_report", record_report)):
            if type(value) is not bool:
                raise TypeError(f"{key} must be true or false, got {value!r}")
        self._state = state
        policy = Resume.parse(resume)
        self._keeper = None if policy is Resume.NEVER else RunKeeper(state, policy)
        self._record_report_at_close = record_report
        self._deferred = DeferredValues(self._checked, self._send) if defer_tensors else None
        if self._deferred is not None:
            self.data = self._data_deferred  # type: ignore[method-assign]  # the default path stays as it was
        members = [_Member(name, dest, Meter() if measure_overhead else None, offload_writers and dest.offloadable)
                   for name, dest in _named(destinations)]
        self.destinations = Destinations((m.name, m.destination) for m in members)
        self._names = {id(m.destination): m.name for m in members}
        self._members = tuple(m for m in members if not (m.destination.rank_zero_only and state.rank != 0))
        self._held = tuple(_Held(m) for m in self._members if self._keeper and m.destination.holds_until_checkpoint)
        logs = {id(m): m.log_data for m in self._members} | {id(held.member): held.log for held in self._held}
        self._routes: dict[Any, tuple[LogLevel, tuple[tuple[_Member, Callable[..., None]], ...]]] = {
            level: (level, tuple((m, logs[id(m)]) for m in self._members if m.threshold is None or level <= m.threshold))
            for level in LogLevel
        }
        # Destinations whose back end may be slow or unreachable close after the local ones.
        self._close_order = tuple(sorted(self._members, key=lambda m: m.destination.remote))
        self._phase = _OPEN
        self._closer: int | None = None  # the thread running close
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._begun = False  # INIT has been fired
        self._recording = False  # the run's manifest has this attempt

    @property
    def state(self) -> State:
        return self._state

    @property
    def closing(self) -> bool:
        """True from the moment `close` starts."""
        return self._phase != _OPEN

    # -- the run -----------------------------------------------------------------------------

    def data(self, log_level: LogLevel | int | str, data: dict[str, Any]) -> None:
        """Send `data` to every destination that takes `log_level`.

        The data is checked and normalised once (`composer_cfg.core.values.normalise`: string keys,
        host copies of tensors...) and the same result goes to every destination. FIT data (the
        hyperparameters, a logged config) has its secrets masked first (`composer_cfg.core.secrets`);
        EPOCH and BATCH data, metrics on the hot path, is not inspected.
        """
        try:
            level, routes = self._routes[log_level]  # type: ignore[index]
        except (KeyError, TypeError):
            level, routes = self._routes[LogLevel.parse(log_level)]
        if not routes:
            return
        data = normalise(data)  # `_checked`, inline: the hot path of every call
        if level is LogLevel.FIT:
            data = redact(data)
        state = self._state
        failures = None
        for member, log in routes:  # `_send` inline: the hot path of every call
            try:
                log(state, level, data)
            except Exception as error:  # the other destinations still get the call
                failure = (member, "log_data", error)
                failures = [failure] if failures is None else [*failures, failure]
        if failures is not None:
            raise_first(self._new(failures))

    def _data_deferred(self, log_level: LogLevel | int | str, data: dict[str, Any]) -> None:
        """`data` with `defer_tensors`: tensors wait on their device for the next flush point."""
        try:
            level, routes = self._routes[log_level]  # type: ignore[index]
        except (KeyError, TypeError):
            level, routes = self._routes[LogLevel.parse(log_level)]
        if routes:
            failures = self._deferred.log(self._state, level, routes, data)  # type: ignore[union-attr]
            if failures:
                raise_first(self._new(failures))

    def flush(self) -> None:
        """Deliver the data held back by `defer_tensors` now (one batched transfer), then have every
        destination write out what it buffers."""
        self._deliver_deferred()
        state = self._state
        self._call_each("flush", lambda m: m.flush(state, self))

    def data_fit(self, data: dict[str, Any]) -> None:
        """`data(LogLevel.FIT, data)`."""
        self.data(LogLevel.FIT, data)

    def data_epoch(self, data: dict[str, Any]) -> None:
        """`data(LogLevel.EPOCH, data)`."""
        self.data(LogLevel.EPOCH, data)

    def data_batch(self, data: dict[str, Any]) -> None:
        """`data(LogLevel.BATCH, data)`."""
        self.data(LogLevel.BATCH, data)

    def log_hyperparameters(self, hyperparameters: Mapping[str, Any]) -> None:
        """Give the run's hyperparameters (a nested mapping) to every destination, which keeps them
        in its own form: W&B's run config, MLflow parameters, TensorBoard's table, a JSON Lines
        FIT record, `InMemoryLogger.hyperparameters`. A text log and a progress bar ignore them.
        Secrets are masked first, as in FIT data.
        """
        if self._phase == _CLOSED:
            raise RuntimeError("this Logger is closed: it takes no more data")
        data = redact(normalise(dict(hyperparameters)))  # secrets masked, as for FIT data
        state = self._state
        self._call_each("log_hyperparameters", lambda m: m.log_hyperparameters(state, data))

    def file_artifact(
        self, log_level: LogLevel | int | str, artifact_name: str, file_path: str | Path, *, overwrite: bool = False
    ) -> None:
        """Offer the file at `file_path` to every destination, as `artifact_name`.

        Both are templates (``{run_name}/checkpoints/ep{epoch}-rank{rank}.npz``) filled with
        ``state.template_fields()``; the artifact name must stay relative and inside the artifact
        root. Destinations may still receive artifacts while they close (a final log flush).
        """
        if self._phase == _CLOSED:
            raise RuntimeError("this Logger is closed: it takes no more file artifacts")
        level = LogLevel.parse(log_level)
        fields = self._state.template_fields()
        name = Template(artifact_name, TIME_FIELDS, key="artifact_name").fill(fields)
        check_artifact_name(name, key="artifact_name")
        path = Path(Template(str(file_path), TIME_FIELDS, key="file_path").fill(fields))
        state = self._state
        self._call_each(
            "log_file_artifact",
            lambda m: m.log_file_artifact(state=state, log_level=level, artifact_name=name, file_path=path,
                                          overwrite=overwrite),
        )

    def run_event(self, event: Event | str) -> None:
        """Fire `event` on every destination, in order (each then flushes if its schedule says so).

        If a destination fails at `Event.INIT`, the Logger closes (status FAILED) before the
        error is raised: nothing stays open or installed.
        """
        event = Event(event)
        if self._phase != _OPEN:
            raise RuntimeError(f"this Logger is closed: it fires no more events (got {event.value!r})")
        state = self._state
        if self._deferred and any(m.flush_schedule is not None and m.flush_schedule.due(event, state.timestamp)
                                  for m in self._members):
            self._deliver_deferred()  # a destination flushes after this event: it gets the deferred data first

        def fire(member: _Member) -> None:
            member.run_event(event, state, self)  # flushes too, when the destination's schedule says so

        if event is not Event.INIT:
            self._call_each(event.value, fire)
            if event in CHECKPOINT_EVENTS:
                self._checkpoint()
            return
        keeper = self._keeper
        if keeper is not None and not self._begun and not self._recording:  # before any destination opens
            keeper.begin(self.destinations.items())
            self._recording = True  # from now on, how the attempt ends is recorded
        _, failures = self._each(fire, self._members, event.value)
        if failures:
            error = failures[0][2]
            try:
                self.close(RunStatus.FAILED)
            except Exception as close_error:  # noqa: BLE001 - the INIT failure is the one to raise
                error.add_note(f"closing the logger after it failed to start also failed: "
                               f"{type(close_error).__name__}: {close_error}")
            raise_first([(member.name, what, failure) for member, what, failure in failures])
        if keeper is not None and not self._begun:
            keeper.started((m.name, m.destination) for m in self._members)
        self._begun = True

    def _checkpoint(self) -> None:
        """A checkpoint was saved: deliver what was held, make everything logged so far durable
        in every destination, then record the mark."""
        state = self._state
        failures = [(held.member, "log_data", error) for held in self._held for error in held.deliver(state)]
        if failures:
            raise_first(self._new(failures))
        self._call_each("checkpoint_saved", lambda m: m.checkpoint_saved(state, self))
        if self._keeper is not None:
            self._keeper.checkpoint((m.name, m.destination) for m in self._members)

    # -- the end -----------------------------------------------------------------------------

    def close(self, status: RunStatus | str | None = None) -> None:
        """End the run: every destination's ``close``, then ``post_close`` (those that closed
        cleanly), then ``finalize(status)``; local destinations before those declared `remote`.
        Idempotent: a second call returns once the first has finished. Data calls after it raise.

        `status`: how the run ended (default FINISHED). ``with logger:`` passes FAILED for an
        exception and KILLED for an interrupt.
        """
        with self._lock:
            closer = self._closer
            if closer is None:
                self._phase, self._closer = _CLOSING, threading.get_ident()
        if closer is not None:
            if closer != threading.get_ident():
                self._closed.wait()  # another thread is closing: done when it is
            return
        status = RunStatus.FINISHED if status is None else RunStatus.parse(status)
        self._routes = _ClosedRoutes()
        state, members = self._state, self._close_order
        try:
            with exit_hooks.closing():
                try:
                    failures = self._deferred.deliver() if self._deferred is not None else []
                    for held in self._held:  # a run that did not finish is resumed from its last checkpoint
                        if status is RunStatus.FINISHED:
                            failures += [(held.member, "log_data", error) for error in held.deliver(state)]
                        held.drop()
                    closed, closing = self._each(lambda m: m.close(state, self), members, "close")
                    failures += closing
                    failures += self._each(lambda m: m.post_close(), closed, "post_close")[1]
                    failures += self._each(lambda m: m.finalize(status), members, "finalize")[1]
                    if self._keeper is not None and self._recording:
                        self._keeper.end(status)
                    self._record_report()
                    new = self._new(failures)
                    for member in members:
                        member.ledger.report()
                    if exit_hooks.terminating():  # the process ends next: say now what went wrong
                        for name, what, error in new:
                            LOG.error("closing destination %r after SIGTERM: %s failed: %s: %s", name, what,
                                      type(error).__name__, error)
                finally:
                    self._phase = _CLOSED
                    self._closed.set()
        finally:
            exit_hooks.forget(self)  # after a SIGTERM, the last guarded Logger to close ends the process
        raise_first(new)

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        if exc is None:
            self.close(RunStatus.FINISHED)
            return
        try:
            self.close(RunStatus.of(exc))
        except Exception as close_error:  # never let it replace the exception that ended the run
            LOG.warning("closing the logger after %s also failed: %s: %s", type(exc).__name__,
                        type(close_error).__name__, close_error)
            exc.add_note(f"closing the logger afterwards also failed: {type(close_error).__name__}: {close_error}")

    def report(self) -> dict[str, dict[str, Any]]:
        """What each active destination did so far, by name: with `measure_overhead`, what it cost
        the threads that logged (`overhead`), and what it says of its own work
        (`LoggerDestination.report`: bytes written, its delivery queue's counts). Destinations with
        nothing to say are left out. At close it is written to the run's manifest (see `close`)."""
        report = {}
        for member in self._members:
            figures = member.meter.report() if member.meter is not None else {}
            try:
                figures.update(member.destination.report())
            except Exception as error:  # noqa: BLE001 - a report never breaks a run
                figures["report_error"] = f"{type(error).__name__}: {error}"
            if figures:
                report[member.name] = figures
        return report

    def overhead(self) -> dict[str, dict[str, Any]]:
        """With `measure_overhead`, what each active destination cost the threads that logged, so far
        (`composer_cfg.overhead.Meter.report`: calls, seconds and µs per call of its data calls, events,
        artifacts and closing, and its total seconds), by name; {} without it."""
        return {m.name: m.meter.report() for m in self._members if m.meter is not None}

    def _record_report(self) -> None:
        """At close: `report` goes into the run's manifest (``"logging"``) when the run keeps one
        (resumable), measures itself, or has a remote destination (what it delivered, spooled or
        dropped must be on record)."""
        if not self._record_report_at_close or not (
                self._keeper or any(m.meter is not None or m.destination.remote for m in self._members)):
            return
        path = run_manifest(self._state.run_name, self._state.rank)
        try:
            manifest = read_manifest(path)
            manifest["logging"] = self.report()
            write_manifest(path, manifest)
        except (OSError, ValueError) as error:  # the run's own data is already where it goes
            LOG.warning("could not record the logging report in %s: %s: %s", path, type(error).__name__, error)

    def name_of(self, destination: LoggerDestination) -> str:
        """The destination's name in the config, or its class name."""
        return self._names.get(id(destination), type(destination).__name__)

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _checked(level: LogLevel, data: Any, tensor: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        """`data` as destinations receive it: normalised (`tensor`: what a tensor becomes), FIT data redacted."""
        data = normalise(data, tensor)
        return redact(data) if level is LogLevel.FIT else data

    @staticmethod
    def _send(routes: Iterable[tuple[_Member, Callable[..., None]]], state: State, level: LogLevel,
              data: dict[str, Any]) -> list[tuple[_Member, str, Exception]]:
        """Give normalised `data` to each routed destination, even after one fails: the failures."""
        failures = []
        for member, log in routes:
            try:
                log(state, level, data)
            except Exception as error:  # the other destinations still get the call
                failures.append((member, "log_data", error))
        return failures

    def _deliver_deferred(self) -> None:
        if self._deferred is not None:
            failures = self._deferred.deliver()
            if failures:
                raise_first(self._new(failures))

    def _call_each(self, what: str, call: Callable[[_Member], None]) -> None:
        """Call `call` on every active destination; raise the failures that are news."""
        _, failures = self._each(call, self._members, what)
        if failures:
            raise_first(self._new(failures))

    def _each(
        self, call: Callable[[_Member], None], members: Iterable[_Member], what: str
    ) -> tuple[list[_Member], list[tuple[_Member, str, Exception]]]:
        """Call `call` on each member, even after one fails: (those that succeeded, failures)."""
        done, failures = [], []
        for member in members:
            try:
                call(member)
                done.append(member)
            except Exception as error:
                failures.append((member, what, error))
        return done, failures

    def _new(self, failures: list[tuple[_Member, str, Exception]]) -> list[tuple[str, str, Exception]]:
        """The failures that are news (see `composer_cfg.runtime.failures`), as (name, method, error)."""
        with self._lock:
            return [(member.name, what, error) for member, what, error in failures if member.ledger.is_new(error, what)]


class Destinations(tuple):  # type: ignore[type-arg]
    """A Logger's destinations: a tuple, in order, that also finds each by the name it was given
    (a mapping's key, else its class name).

    >>> from composer_cfg import InMemoryLogger, State
    >>> memory = InMemoryLogger()
    >>> destinations = Logger(State("docs"), {"memory": memory}).destinations
    >>> destinations == (memory,), destinations["memory"] is memory, destinations.names
    (True, True, ('memory',))
    """

    names: tuple[str, ...]

    def __new__(cls, named: Iterable[tuple[str, LoggerDestination]]) -> Destinations:
        pairs = list(named)
        self = super().__new__(cls, [destination for _, destination in pairs])
        self.names = tuple(name for name, _ in pairs)
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self.names.index(key))
            except ValueError:
                raise KeyError(f"no destination named {key!r}; the destinations are {', '.join(self.names)}") from None
        return tuple.__getitem__(self, key)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self.names else default

    def items(self) -> list[tuple[str, LoggerDestination]]:
        """(name, destination) pairs, in order."""
        return list(zip(self.names, self))


class _Member:
    """One destination as the Logger holds it: its name, its policies read once, its bound
    methods (behind a lock of its own unless it declares itself thread-safe, and timed by its
    `Meter` if it has one), its failures."""

    def __init__(self, name: str, destination: LoggerDestination, meter: Meter | None = None,
                 offload: bool = False) -> None:
        self.name = name
        self.destination = destination
        threshold = destination.log_level  # a level, its name or its value (a destination may write "epoch")
        try:
            self.threshold = None if threshold is None else LogLevel.parse(threshold)
        except ValueError as error:
            raise ValueError(f"destination {name!r}: log_level: {error}") from None
        self.ledger = FailureLedger(name)
        self.flush_schedule = destination.flush_schedule
        self.meter = meter
        lock = None if destination.thread_safe else threading.RLock()
        methods = {method: getattr(destination, method) if lock is None else _locked(lock, getattr(destination, method))
                   for method in ("log_data", "log_hyperparameters", "log_file_artifact", "run_event",
                                  "checkpoint_saved", "flush", "close", "post_close", "finalize")}
        methods["run_event"] = _only_hooked_or_due(destination, methods["run_event"])
        if offload:
            methods = offloaded_methods(name, methods)
        for method, bound in methods.items():
            setattr(self, method, bound if meter is None or method not in KIND_OF else meter.timed(KIND_OF[method], bound))


class _Held:
    """The data a destination does not receive until the next checkpoint (see `Logger`), each
    call with the timestamp and wall-clock time it was made at."""

    def __init__(self, member: _Member) -> None:
        self.member = member
        self._calls: list[tuple[Any, LogLevel, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def log(self, state: State, level: LogLevel, data: dict[str, Any]) -> None:
        when = time.time() if state.log_time is None else state.log_time
        with self._lock:
            self._calls.append(((state.timestamp, when), level, dict(data)))

    def deliver(self, state: State) -> list[Exception]:
        """Send the held calls, in order, as of their own time; return the failures (every call
        is sent whatever happens to the others)."""
        with self._lock:
            calls, self._calls = self._calls, []
        shadow = copy.copy(state)
        errors = []
        for (shadow.timestamp, shadow.log_time), level, data in calls:
            try:
                self.member.log_data(shadow, level, data)
            except Exception as error:  # noqa: BLE001 - reported as the Logger reports log_data failures
                errors.append(error)
        return errors

    def drop(self) -> None:
        with self._lock:
            self._calls = []


def _only_hooked_or_due(destination: LoggerDestination, run_event: Callable[..., Any]) -> Callable[..., Any]:
    """`run_event`, skipped at an event the destination has no hook for and after which its
    flush is not due: nothing would happen (`LoggerDestination.hooked_events`)."""
    hooked = destination.hooked_events()

    def call(event: Event, state: State, logger: Logger) -> None:
        schedule = destination.flush_schedule  # read now: a destination may set it at INIT
        if event in hooked or (schedule is not None and schedule.due(event, state.timestamp)):
            run_event(event, state, logger)

    return call


def _locked(lock: threading.RLock, method: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return call


class _ClosedRoutes(dict):  # type: ignore[type-arg]
    """The routing table of a closed Logger: every level lookup says so."""

    def __missing__(self, key: object) -> Any:
        raise RuntimeError("this Logger is closed: it takes no more data")


def _named(destinations: DestinationsGiven) -> list[tuple[str, LoggerDestination]]:
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


