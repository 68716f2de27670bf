"""`InlineChannel`: the sink writes each record on the calling thread, under the channel's lock.

A reader sees what was logged the moment the call returns (an in-memory store, a line-buffered
text log: every finished call is in the file). Calls from several threads are serialised; a
record that arrives from inside the sink's own call on the same thread (text a write printed, a
file published from a flush) is written right after that call, never in the middle of it.
"""

from __future__ import annotations

import threading
from typing import Any

from composer_cfg.core.record import Kind, Record
from composer_cfg.core.sink import SinkContext
from composer_cfg.core.status import RunStatus
from composer_cfg.runtime.channel import Channel
from composer_cfg.runtime.deadline import Deadline


class InlineChannel(Channel):
    kind = "inline"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.RLock()
        self._inside = False  # the sink is being called, by the thread holding the lock
        self._after: list[Record] = []  # records that arrived from inside that call
        self._opened = False

    def open(self, deadline: Deadline) -> None:
        with self._lock:
            self._open(self.context())

    def put(self, record: Record) -> None:
        with self._lock:
            if self._inside:
                self._after.append(record)
                return
            if self.closed:
                raise self._closed_error()
            if not self._opened:
                self._open(self.context())
            if self._held(record):
                return
            self._inside = True
            try:
                self._deliver(record)
                while self._after:
                    self._deliver(self._after.pop(0))
            finally:
                self._inside = False
        if self._refuses is not None:
            self._check(record)

    def flush(self, durable: bool, deadline: Deadline) -> None:
        with self._lock:
            if self._opened and not self.closed:
                self._call(self.sink.flush, durable)

    def checkpoint(self, deadline: Deadline) -> None:
        with self._lock:
            if not self._opened or self.closed:
                return
            held = self._release_hold(None)
            if held:
                self._call(self.sink.write, held)
            self._call(self.sink.flush, True)

    def close(self, status: RunStatus, deadline: Deadline) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if not self._opened:
                if not self.sink.open_at_close:
                    return
                self._open(self.context())
            left = [*self._release_hold(status), *self._after]
            try:
                if left:
                    self._call(self.sink.write, left)
            finally:
                self._after = []
                self._call(self.sink.close, status)

    # -- internals ---------------------------------------------------------------------------

    def _open(self, context: SinkContext) -> None:
        if not self._opened:
            self._opened = True  # once, whatever happens: a sink that failed to open is not opened twice
            self._call(self.sink.open, context)

    def _deliver(self, record: Record) -> None:
        if record.kind is Kind.EVENT:
            if record.payload.event in self.events:
                self.sink.write((record,))
            if self._flush_due(record):
                self.sink.flush(True)
        else:
            self.sink.write((record,))

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
