"""`InlineChannel`: the sink writes each record on the calling thread, under the channel's lock.

A reader sees what was logged the moment the call returns (an in-memory store, a line-buffered
text log: every finished call is in the file). Calls from several threads are serialised; a
record that arrives from inside the sink's own call on the same thread (text a write printed, a
file published from a flush) is written right after that call, never in the middle of it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from composer_cfg.core.record import Kind, Record
from composer_cfg.core.sink import SinkContext
from composer_cfg.core.status import RunStatus
from composer_cfg.runtime.channel import Channel
from composer_cfg.runtime.deadline import Deadline

_EVENT = Kind.EVENT


class InlineChannel(Channel):
    kind = "inline"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.RLock()  # held while the sink is called (a facade's readers may take it too)
        self._inside = False  # the sink is being called, by the thread holding the lock
        self._after: list[Record] = []  # records that arrived from inside that call
        self._opened = False
        self._open_failure: Exception | None = None
        self._writing = False  # opened, not closed, holding nothing: a record is written at once
        self._write = self.sink.write  # bound again at open

    def open(self, deadline: Deadline) -> None:
        with self.lock:
            self._open(self.context())

    def put(self, record: Record) -> None:
        with self.lock:
            if self._inside:
                self._after.append(record)
                return
            if not self._writing:  # closed, not opened (or failed to), or holding data until checkpoints
                if self.closed:
                    raise self._closed_error()
                if not self._opened:
                    self._open(self.context())
                if self._open_failure is not None:
                    raise RuntimeError(f"destination {self._where()} did not open, so it writes nothing: "
                                       f"{type(self._open_failure).__name__}: {self._open_failure}")
                if self._held(record):
                    return
            self._inside = True
            try:
                if record.kind is _EVENT:
                    self._event(record)
                else:
                    self._write((record,))
                while self._after:
                    self._deliver(self._after.pop(0))
            finally:
                self._inside = False
        if self._refuses is not None:
            self._check(record)

    def flush(self, durable: bool, deadline: Deadline) -> None:
        with self.lock:
            if self._opened and not self.closed:
                self._call(self.sink.flush, durable)

    def checkpoint(self, deadline: Deadline, seal_to: Path | None = None) -> None:
        with self.lock:
            if not self._opened or self.closed:
                return
            try:
                self._call(self.sink.flush, True)
            finally:  # whatever the flush did: a mark may follow all the same
                self._seal(seal_to)

    def release(self, deadline: Deadline) -> None:
        with self.lock:
            if not self._opened or self.closed:
                return
            path, count = self.sealed, self._sealed_count
            try:
                for held in self._take_sealed():
                    self._call(self.sink.write, held)
            except BaseException:  # the file is sent again, whole, at the next checkpoint or close
                self._delivered.remove(path)  # type: ignore[arg-type]
                self.sealed, self._sealed_count, self._marked = path, count, True
                raise
            self._remove_delivered()
            self._call(self.sink.flush, True)

    def close(self, status: RunStatus, deadline: Deadline) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed, self._writing = True, False
            if not self._opened:
                if not self.sink.open_at_close:
                    return
                self._open(self.context())
            after, self._after = self._after, []
            try:
                for held in self._release_hold(status):
                    self._call(self.sink.write, held)
                self._remove_delivered()  # the sink has every sealed record
                if after:
                    self._call(self.sink.write, after)
            finally:
                self._after = []
                self._call(self.sink.close, status)

    def forget(self) -> None:
        super().forget()
        self._writing = False
        self.lock = threading.RLock()  # a parent thread may have held it at the fork

    # -- internals ---------------------------------------------------------------------------

    def _open(self, context: SinkContext) -> None:
        if not self._opened:
            self._opened = True  # once, whatever happens: a sink that failed to open is not opened twice
            try:
                self._call(self.sink.open, context)
                for held in self._resent(context) or ():
                    self._call(self.sink.write, held)
            except Exception as error:
                self._open_failure = error
                raise
            self._writing, self._write = self._hold is None, self.sink.write

    def _deliver(self, record: Record) -> None:
        if record.kind is _EVENT:
            self._event(record)
        else:
            self._write((record,))

    def _event(self, record: Record) -> None:
        if record.payload.event in self.events:
            self._write((record,))
        if self._flush_due(record):
            self.sink.flush(True)

    def _call(self, method: Any, *args: Any) -> None:
        """`method(*args)` inside the sink: records arriving meanwhile wait until it returns."""
        self._inside = True
        try:
            method(*args)
        finally:
            self._inside = False
        while self._after and not self.closed:
            record = self._after.pop(0)
            self._inside = True
            try:
                self._deliver(record)
            finally:
                self._inside = False
