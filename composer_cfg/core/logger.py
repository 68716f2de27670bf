"""`Logger`: builds one immutable record per call and routes it to one channel per destination."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from composer_cfg.config.params import PositiveFloat, PositiveInt, ReducePatterns, SystemMetricsSettings
from composer_cfg.core.current_calls import CurrentComposerCalls
from composer_cfg.core.events import Event
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.record import EventPoint, Kind, Record
from composer_cfg.core.routing import DestinationsGiven, Routes, member, named
from composer_cfg.core.secrets import redact
from composer_cfg.core.sink import Policies, SinkContext
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus
from composer_cfg.core.templates import TIME_FIELDS, Template, check_artifact_name
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.core.values import normalise, plain
from composer_cfg.run.attempt import RunAttempt
from composer_cfg.run.resume import Resume
from composer_cfg.runtime import exit_hooks, forks
from composer_cfg.runtime.deadline import Deadline
from composer_cfg.runtime.dispatch import Dispatch, put_each
from composer_cfg.runtime.failures import raise_first
from composer_cfg.runtime.lifecycle import OPEN, Lifecycle
from composer_cfg.runtime.reduction import Reduction
from composer_cfg.runtime.staging import Staging
from composer_cfg.runtime.system_metrics import SystemMetrics

LOG = logging.getLogger("composer_cfg")
CHECKPOINT_EVENTS = (Event.BATCH_CHECKPOINT, Event.EPOCH_CHECKPOINT)
_new_record, _DATA, _FIT = tuple.__new__, Kind.DATA, LogLevel.FIT  # the hot path's names
#: Seconds `close` waits for calls still in flight on other threads before it closes the channels.
IN_FLIGHT_WAIT = 2.0


class Logger(CurrentComposerCalls):
    """Turns each call (Composer's 2022 API, and 0.32's: `composer_cfg.core.current_calls`) into one
    immutable `Record`, routed to the channel of each destination that takes it; thread-safe.

    `destinations`: ``None``, one destination, a sequence, or a mapping of name to destination
    (``None`` values skipped, so a config can switch one off), each a `LoggerDestination`
    (Composer's API) or a `Sink`. What each declares (`Policies`) is read once: a level it does not
    take, or another rank than 0 for a `rank_zero_only` one, costs nothing. ``Event.INIT`` opens
    every destination (one failing closes all and raises). `resume` (never, auto, must): the run is
    recorded in ``{run_name}/run-rank{rank}.json`` for a later attempt to continue.
    `measure_overhead`: time every call into each destination (`report`). `reduce`, `reduce_every`,
    `reduce_timeout`: `composer_cfg.runtime.reduction`; `system_metrics`: `.runtime.system_metrics`.

    >>> from composer_cfg import InMemoryLogger
    >>> memory = InMemoryLogger(log_level="epoch")
    >>> with Logger(State("demo"), {"memory": memory}) as logger:
    ...     logger.data_batch({"loss": 0.25})   # above the threshold: not sent
    ...     logger.data_epoch({"acc": 0.9})
    >>> memory.most_recent_values
    {'acc': 0.9}
    """

    def __init__(self, state: State, destinations: DestinationsGiven = None, *, resume: Resume | str = Resume.NEVER,
                 measure_overhead: bool = False, reduce: ReducePatterns | None = None,
                 reduce_every: PositiveInt = 10, reduce_timeout: PositiveFloat = 300.0,
                 system_metrics: SystemMetricsSettings | None = None) -> None:
        if type(measure_overhead) is not bool:
            raise TypeError(f"measure_overhead must be true or false, got {measure_overhead!r}")
        self._system = SystemMetrics(system_metrics)
        reduction = None if reduce is None else Reduction(reduce, reduce_every, reduce_timeout, self._system.every_seconds)
        self._state = state
        self._attempt = RunAttempt(state, resume)
        pairs = named(destinations)
        self.destinations = Destinations(pairs)
        self._names = {id(destination): name for name, destination in pairs}
        self._members = tuple(
            member(name, destination, context=self._context_of(name), spool=self._attempt.spool_for(name, destination),
                   hold=self._attempt.resumable, measure=measure_overhead)
            for name, destination in pairs if not (destination.rank_zero_only and state.rank != 0))
        self._routes = Routes(self._members)
        self._lifecycle, self._begun = Lifecycle(), False
        self._dispatch = Dispatch(self._lifecycle, reduction)
        self._staging = Staging()
        forks.watch(self)

    @property
    def state(self) -> State:
        return self._state

    @property
    def resumed_from(self) -> Timestamp | None:
        """After INIT, where a continued run (``resume=auto|must``) starts again: its last checkpoint's
        mark, which the state's timestamp is set to (load your model's checkpoint of it), else the
        timestamp the state was given; None for a run that starts anew."""
        return self._attempt.resumed_from

    @property
    def closing(self) -> bool:
        """True from the moment `close` starts."""
        return self._lifecycle.phase != OPEN

    # -- the run -----------------------------------------------------------------------------

    def data(self, log_level: LogLevel | int | str, data: dict[str, Any]) -> None:
        """Send `data` to every destination that takes `log_level`: one record, its values checked,
        copied (`composer_cfg.core.values.normalise`) and, at FIT, masked (`composer_cfg.core.secrets`)."""
        try:
            level, channels = self._routes.data[log_level]  # type: ignore[index]
        except (KeyError, TypeError):
            level, channels = self._routes.data[LogLevel.parse(log_level)]
        if not channels and not self._dispatch.collecting:  # reduced keys: every rank's values are gathered
            return
        held: list[Any] = []
        payload = dict(data) if plain(data) else normalise(data, self._dispatch.keeper(held))
        if level is _FIT:
            payload = redact(payload)
        state = self._state
        when = state.log_time
        record = _new_record(Record, (_DATA, level, state.timestamp, time.time() if when is None else when, payload))
        self._dispatch.send(channels, record, held)

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
        """The run's hyperparameters (a nested mapping), masked, to every destination, which keeps them
        in its own form: W&B's run config, MLflow parameters, TensorBoard's table, a JSON Lines FIT
        record, `InMemoryLogger.hyperparameters`. A text log and a progress bar ignore them."""
        if not self._lifecycle.taking("data"):
            return
        payload = redact(normalise(dict(hyperparameters)))
        self._dispatch.send(self._routes.hyperparameters, self._record_of(Kind.HYPERPARAMETERS, LogLevel.FIT, payload))

    def file_artifact(self, log_level: LogLevel | int | str, artifact_name: str, file_path: str | Path, *,
                      overwrite: bool = False) -> None:
        """Offer the file at `file_path` to every destination, as `artifact_name`. Both are
        templates (``{run_name}/checkpoints/ep{epoch}-rank{rank}.npz``) filled from the state; the
        name must stay relative and inside the artifact root. The file is copied once, at the call,
        for every destination that stores artifacts: it may change the moment the call returns."""
        if not self._lifecycle.taking("file artifacts"):
            return
        level = LogLevel.parse(log_level)
        fields = self._state.template_fields()
        name = check_artifact_name(Template(artifact_name, TIME_FIELDS, key="artifact_name").fill(fields),
                                   key="artifact_name")
        self._publish(name, Path(Template(str(file_path), TIME_FIELDS, key="file_path").fill(fields)), overwrite, level)

    def run_event(self, event: Event | str) -> None:
        """Fire `event` on every destination that acts at it (each flushes after it if its schedule
        says so). `Event.INIT` opens every destination; a checkpoint event makes everything logged
        so far durable, then records the mark of a resumable run (`Dispatch.checkpoint`)."""
        if type(event) is not Event:
            event = Event(event)
        if not self._lifecycle.taking("events", event):
            return
        if event is Event.INIT:
            self._start()
            return
        state, dispatch = self._state, self._dispatch
        dispatch.before_event(event, state.timestamp, self._members)  # a reduction, or what a flush after it needs
        channels = self._routes.events[event]
        if channels:
            point = EventPoint(event, state.dataloader_len, state.eval_dataloader_len)
            dispatch.send(channels, self._record_of(Kind.EVENT, None, point))
        if event in CHECKPOINT_EVENTS:
            ended, attempt = event is Event.EPOCH_CHECKPOINT, self._attempt
            dispatch.checkpoint(self._routes.everything, attempt.held_path, partial(attempt.checkpoint, epoch_ended=ended))

    def deliver_waiting(self) -> None:
        """Deliver now what waits for its device tensors (`InMemoryLogger`'s readers call it)."""
        self._dispatch.deliver_waiting()

    def flush(self) -> None:
        """Have every destination write out what it was given so far (tensors waiting cross first)."""
        self._dispatch.barrier(self._routes.everything, "flush", lambda channel, deadline: channel.flush(False, deadline))

    # -- the end -----------------------------------------------------------------------------

    def close(self, status: RunStatus | str | None = None, deadline: Deadline | None = None) -> None:
        """End the run with `status` (default FINISHED): every destination writes what it has and
        closes, local ones before remote ones, each waiting at most `deadline` (and its own timeout;
        after a SIGTERM, the grace period). Idempotent: a second call returns once the first is done.
        Calls after it raise; calls in flight on other threads when it starts are delivered first."""
        if not self._lifecycle.start_closing():
            return
        status = RunStatus.FINISHED if status is None else RunStatus.parse(status)
        deadline = (deadline or Deadline.never()).sooner(exit_hooks.termination_deadline().seconds())
        self._system.stop()
        self._routes.data = _Refusing()  # new calls raise from here on
        self._dispatch.settle(IN_FLIGHT_WAIT)
        try:
            with exit_hooks.closing():
                try:
                    closed = self._dispatch.close(self._routes.close_order, status, deadline)
                    self._staging.close()
                    self._attempt.end(status, self.report)
                finally:
                    self._lifecycle.closed()
        finally:
            exit_hooks.forget(self)  # after a SIGTERM, the last guarded Logger to close ends the process
        closed.raise_any()

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
        """What each active destination did so far, by name: what it cost the threads that logged
        (with `measure_overhead`), and what its channel and sink say (records delivered, spooled or
        dropped; bytes written...); those with nothing to say left out. With `reduce`, under
        ``"reduce"``: `Reduction.report`."""
        return {**self._routes.report(), **self._dispatch.report()}

    def overhead(self) -> dict[str, dict[str, Any]]:
        """With `measure_overhead`, what each active destination cost the threads that logged; {} without."""
        return self._routes.overhead()

    def name_of(self, destination: Policies) -> str:
        """The destination's name in the config, or its class name."""
        return self._names.get(id(destination), type(destination).__name__)

    def forget(self) -> None:
        """In a forked child (`composer_cfg.runtime.forks`): inert from now on; the parent's run is its own."""
        self._routes.data, self._begun = _Inert(), False
        self._attempt.forget()
        self._dispatch.forget()
        self._system.forget()
        self._lifecycle.inert()
        for m in self._members:
            m.channel.forget()

    # -- internals ---------------------------------------------------------------------------

    def _start(self) -> None:
        """INIT: continue or record a resumable run, then open every destination and fire INIT."""
        if self._begun:
            return  # firing INIT again is harmless
        self._attempt.begin()  # a continued run: the state's timestamp is now its last checkpoint's mark
        failures = self._dispatch.open(self._routes.everything)
        channels = self._routes.events[Event.INIT]
        if not failures and channels:
            failures += put_each(channels, self._record_of(Kind.EVENT, None, EventPoint(Event.INIT)))
        self._begun = True
        if failures:
            _fail_to_start(self, failures)
        self._attempt.started(*(self._routes.identities(which) for which in (None, "writes_records", "rolls_back")))
        self._system.start(self.data_batch)

    def _context_of(self, name: str) -> Any:
        def context() -> SinkContext:
            channel, destination = next((m.channel, m.destination) for m in self._members if m.name == name)
            identities = self._attempt.identities
            resumed = destination.resume_identity if identities is None else identities.get(name, {})
            return SinkContext(self._state.facts(), self._state.timestamp, resumed,
                               self._publish_file, channel.put, self, self._attempt.key)

        return context

    def _record_of(self, kind: Kind, level: LogLevel | None, payload: Any) -> Record:
        when = self._state.log_time
        return Record(kind, level, self._state.timestamp, time.time() if when is None else when, payload)

    def _publish_file(self, name: str, path: Path, overwrite: bool) -> None:
        """A sink publishing a file of its own (`SinkContext.publish`): taken while closing too."""
        self._publish(name, path, overwrite, LogLevel.FIT, caller=False)

    def _publish(self, name: str, path: Path, overwrite: bool, level: LogLevel, caller: bool = True) -> None:
        channels = self._routes.artifacts
        if channels:
            artifact = self._staging.artifact(name, path, overwrite)
            self._dispatch.send(channels, self._record_of(Kind.ARTIFACT, level, artifact), caller=caller)


def _fail_to_start(logger: Logger, failures: list[Any]) -> None:
    """INIT failed: close `logger` as FAILED, then raise the first failure (a close failure noted on it)."""
    error = failures[0][2]
    try:
        logger.close(RunStatus.FAILED)
    except Exception as close_error:  # noqa: BLE001 - the INIT failure is the one to raise
        error.add_note(f"closing the logger after it failed to start also failed: "
                       f"{type(close_error).__name__}: {close_error}")
    raise_first([(channel.name, what, failure) for channel, what, failure in failures])


class Destinations(tuple):  # type: ignore[type-arg]
    """A Logger's destinations: a tuple, in order, that also finds each by the name it was given
    (a mapping's key, else its class name).

    >>> from composer_cfg import InMemoryLogger
    >>> memory = InMemoryLogger()
    >>> destinations = Logger(State("docs"), {"memory": memory}).destinations
    >>> destinations == (memory,), destinations["memory"] is memory, destinations.names
    (True, True, ('memory',))
    """

    names: tuple[str, ...]

    def __new__(cls, named: Iterable[tuple[str, Policies]]) -> Destinations:
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

    def items(self) -> list[tuple[str, Policies]]:
        """(name, destination) pairs, in order."""
        return list(zip(self.names, self))


class _Refusing(dict):  # type: ignore[type-arg]
    """The data routes of a closed Logger: every level lookup says so."""

    def __missing__(self, key: object) -> Any:
        raise RuntimeError("this Logger is closed: it takes no more data")


class _Inert(dict):  # type: ignore[type-arg]
    """The data routes of a Logger in a forked child: every call goes nowhere."""

    def __missing__(self, key: object) -> Any:
        return None, ()
