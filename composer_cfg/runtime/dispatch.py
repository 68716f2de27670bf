"""`Dispatch`: hands each record to its channels, through the tensor stage.

A channel that fails never keeps a record from the others; what failed is raised after, on the
calling thread, once per distinct failure of each destination (`composer_cfg.runtime.failures`).
A record carrying device tensors, and every record after it, waits in the `TensorStage` until the
next flush point, so each destination sees calls in order; on rank 0, a record holding a key
combined across ranks waits there until the next reduction barrier (`composer_cfg.runtime.reduction`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from composer_cfg.core.events import Event
from composer_cfg.core.record import Kind, Record
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.core.status import RunStatus
from composer_cfg.runtime import exit_hooks
from composer_cfg.runtime.deadline import Deadline
from composer_cfg.runtime.failures import raise_first
from composer_cfg.runtime.lifecycle import OPEN, Lifecycle
from composer_cfg.runtime.reduction import Reduction
from composer_cfg.runtime.tensor_stage import Held, TensorStage

LOG = logging.getLogger("composer_cfg")
#: How a failure names the call it happened in (Composer's method names; an event's is its own).
_CALLS = {Kind.DATA: "log_data", Kind.HYPERPARAMETERS: "log_hyperparameters", Kind.ARTIFACT: "log_file_artifact",
          Kind.PRINTED: "a print"}
#: What a call refused after close takes no more of.
_REFUSED = {Kind.DATA: "data", Kind.HYPERPARAMETERS: "data", Kind.ARTIFACT: "file artifacts", Kind.EVENT: "events",
            Kind.PRINTED: "prints", Kind.MEDIA: "data"}
#: A failure: (the channel, or None for the tensor stage; what was being done; the error).
Failure = tuple[Any, str, Exception]


class Closed(NamedTuple):
    """What closing the channels came to: the failures that are news, and a Ctrl-C that cut a
    channel's wait short, to raise once all is closed."""

    news: list[tuple[str, str, Exception]]
    interrupted: KeyboardInterrupt | None

    def raise_any(self) -> None:
        """Raise the interrupt, else the first failure that is news (`raise_first`)."""
        if self.interrupted is not None:
            raise self.interrupted
        raise_first(self.news)


class Dispatch:
    """The records of one `Logger` on their way to its channels (see the module's docstring)."""

    def __init__(self, lifecycle: Lifecycle, reduction: Reduction | None = None) -> None:
        self._lifecycle = lifecycle
        self.stage = TensorStage()
        self.reduction = reduction
        self._in_flight: list[None] = []  # one entry per record being handed over, on any thread
        self._lock = threading.Lock()

    def keeper(self, held: list[Held]) -> Callable[[Any, str], Any]:
        """What a device tensor of a call becomes (`TensorStage.keeper`)."""
        return self.stage.keeper(held)

    def open(self, channels: Iterable[Any]) -> list[Failure]:
        """Open every channel's sink (INIT), even after one fails: the failures. First the
        reduction's group (a collective every rank calls)."""
        if self.reduction is not None:
            self.reduction.start()
        failures = []
        for channel in channels:
            try:
                channel.open(Deadline.never())
            except Exception as error:
                failures.append((channel, "init", error))
        return failures

    def send(self, channels: Sequence[Any], record: Record, held: list[Held] | tuple[()] = (),
             caller: bool = True) -> None:
        """Hand `record` to `channels` now, or keep it in the stage behind what waits there. A
        caller's call that `close` started on meanwhile is refused whole (`Lifecycle.taking`); one
        in flight when it starts is delivered before it closes anything (`settle`). A sink's own
        record (`caller` false: a file it publishes while closing) is always handed over."""
        in_flight = self._in_flight
        in_flight.append(None)
        failures = None
        try:
            if caller and self._lifecycle.phase != OPEN:  # raises, as any call after close (a forked child: nothing)
                event = record.payload.event if record.kind is Kind.EVENT else None
                self._lifecycle.taking(_REFUSED[record.kind], event)
                return
            stage, reduction = self.stage, self.reduction
            reduced = reduction is not None and reduction.keeps(record)
            if (held or reduced or stage.waiting) and stage.wait(channels, record, held, reduced):
                if stage.full:
                    self._deliver(reduction.overflowed if reduction is not None else None)
                return
            for channel in channels:
                try:
                    channel.put(record)
                except Exception as error:  # the other destinations still get the record
                    failures = failures or []
                    failures.append((channel, _what(record), error))
        finally:
            in_flight.pop()
        if failures:
            raise_first(self.news(failures))

    def deliver_waiting(self) -> None:
        """Deliver what waits in the stage (one batched copy of its tensors), up to the first
        record that waits for the reduction."""
        self._deliver(self._up_to_the_reduction())

    def before_event(self, event: Event, timestamp: Timestamp, members: Iterable[Any]) -> None:
        """Before `event` is handed on: the reduction's barrier if one is due (`Reduction.due`),
        else, when the channel of one of `members` flushes after it, what waits in the stage."""
        reduction = self.reduction
        if reduction is not None and reduction.due(event, timestamp):
            self._deliver(self._settle(event.value))
        elif self.stage.waiting and any(m.channel.flushes_at(event, timestamp) for m in members):
            self._deliver(self._up_to_the_reduction())

    def barrier(self, channels: Iterable[Any], what: str, call: Callable[[Any, Deadline], None],
                deadline: Deadline | None = None) -> None:
        """Deliver what waits in the stage (a reduction barrier), then `call(channel, deadline)` on
        every channel (by default, the deadline a SIGTERM set, if any)."""
        self._each(channels, what, call, deadline, self.stage.deliver(put_each, self._settle(what)))

    def _each(self, channels: Iterable[Any], what: str, call: Callable[[Any, Deadline], None],
              deadline: Deadline | None, failures: list[Any]) -> None:
        """`call(channel, deadline)` on every channel; then the first failure (of these and
        `failures`) that is news is raised."""
        deadline = exit_hooks.termination_deadline() if deadline is None else deadline
        for channel in channels:
            try:
                call(channel, deadline)
            except Exception as error:
                failures.append((channel, what, error))
        if failures:
            raise_first(self.news(failures))

    def checkpoint(self, channels: Sequence[Any], seal_to: Callable[[str], Path | None],
                   mark: Callable[[Mapping[str, Any], Mapping[str, list[Path]]], None]) -> None:
        """A checkpoint, in two phases (`composer_cfg.runtime.channel`): every channel makes what it
        was given durable and seals what it holds in its file (`seal_to(name)`; None: it holds
        nothing); `mark(identities, files)` records the checkpoint with each channel's identity,
        naming the files of held records a next attempt would need (`Channel.held_files`); then
        the sealed ones are delivered."""
        self.barrier(channels, "checkpoint", lambda channel, deadline: channel.checkpoint(deadline, seal_to(channel.name)))
        held = {channel.name: channel.held_files() for channel in channels}
        mark({channel.name: channel.identity() for channel in channels}, {name: files for name, files in held.items() if files})
        sealed = [channel for channel in channels if channel.sealed is not None]
        for channel in sealed:
            channel.marked()
        self._each(sealed, "checkpoint", lambda channel, deadline: channel.release(deadline), None, [])

    def close(self, channels: Sequence[Any], status: RunStatus, deadline: Deadline) -> Closed:
        """Deliver what waits in the stage, close `channels` in their order, then give each its
        `post_close` (Composer's: after every destination closed): the failures that are news.
        Each channel's repeated failures are counted in a warning (`FailureLedger.report`); after
        a SIGTERM, the news is logged as errors too (the process ends next). A Ctrl-C while a
        channel closes, or the reduction's last exchange, stops that wait (`Closed.interrupted`);
        the channels still close."""
        closed: list[Any] = []
        interrupted: KeyboardInterrupt | None = None
        reduction = self.reduction
        if reduction is not None and status is not RunStatus.FINISHED:  # the other ranks may never close
            reduction.stop(f"this rank ends {status.value}")
        try:
            failures = self.stage.deliver(put_each, self._settle("close"))  # what it took is delivered, however it ends
        except KeyboardInterrupt as error:
            failures, interrupted = [], error
        finally:
            if reduction is not None:
                reduction.close()
        for channel in channels:
            try:
                channel.close(status, deadline)
                closed.append(channel)
            except KeyboardInterrupt as error:
                interrupted = error
            except Exception as error:
                failures.append((channel, "close", error))
        for channel in channels:
            try:
                channel.post_close(channel in closed)
            except Exception as error:
                failures.append((channel, "post_close", error))
        news = self.news(failures)
        for channel in channels:
            channel.ledger.report()
        if exit_hooks.terminating():  # the process ends next: say now what went wrong
            for name, what, error in news:
                LOG.error("closing destination %r after SIGTERM: %s failed: %s: %s", name, what,
                          type(error).__name__, error)
        return Closed(news, interrupted)

    @property
    def collecting(self) -> bool:
        """Whether every call's values are wanted here, even with no destination to send them to
        (they are gathered for the reduction)."""
        return self.reduction is not None and self.reduction.active

    def report(self) -> dict[str, Any]:
        """With a reduction, ``{"reduce": Reduction.report()}``; else {}."""
        return {} if self.reduction is None else {"reduce": self.reduction.report()}

    def forget(self) -> None:
        """In a forked child: no collective with the parent's ranks."""
        if self.reduction is not None:
            self.reduction.forget()

    def _settle(self, barrier: str) -> Callable[[list[Record]], list[Record]] | None:
        """What a reduction barrier named `barrier` makes of the records that waited for it."""
        reduction = self.reduction
        return None if reduction is None else lambda records: reduction.barrier(records, barrier)

    def _up_to_the_reduction(self) -> Callable[[list[Record]], list[Record]] | None:
        """At a flush point that is no reduction barrier: None (deliver up to the first record
        that waits for the reduction), or, with no reduction (any more), everything as it is."""
        return None if self.collecting else _as_they_are

    def _deliver(self, settle: Callable[[list[Record]], list[Record]] | None) -> None:
        failures = self.stage.deliver(put_each, settle)
        if failures:
            raise_first(self.news(failures))

    def settle(self, seconds: float) -> None:
        """Wait, at most `seconds`, for records other threads are handing over (before a close)."""
        deadline = time.monotonic() + seconds
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.001)

    def news(self, failures: list[Failure]) -> list[tuple[str, str, Exception]]:
        """The failures that are news, as (destination name, what, error)."""
        with self._lock:
            return [(channel.name if channel is not None else "the tensor stage", what, error)
                    for channel, what, error in failures if channel is None or channel.ledger.is_new(error, what)]


def _as_they_are(records: list[Record]) -> list[Record]:
    """No reduction (any more): the records that waited for one go on unchanged."""
    return records


def put_each(channels: Iterable[Any], record: Record) -> list[Failure]:
    """Give `record` to each channel, even after one fails: the failures."""
    failures = []
    for channel in channels:
        try:
            channel.put(record)
        except Exception as error:  # the other destinations still get the record
            failures.append((channel, _what(record), error))
    return failures


def _what(record: Record) -> str:
    kind = record.kind
    if kind is Kind.EVENT:
        return record.payload.event.value
    return f"log_{record.payload.kind}" if kind is Kind.MEDIA else _CALLS[kind]
