"""Tee ``sys.stdout``/``sys.stderr`` into a callback, and undo it."""

from __future__ import annotations

import sys
from typing import Any, Callable, TextIO


class StreamTee:
    """Stands in for a text stream: every `write` goes to `sink` first, then to the stream.

    Everything else (``flush``, ``fileno``, ``isatty``, ``encoding``...) is the stream's own.
    """

    def __init__(self, stream: TextIO, sink: Callable[[str], None]) -> None:
        self._stream = stream
        self._sink: Callable[[str], None] | None = sink

    def write(self, text: str) -> int:
        if self._sink is not None:
            self._sink(text)
        return self._stream.write(text)

    def detach_sink(self) -> None:
        self._sink = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def unwrap(stream: Any) -> Any:
    """The stream underneath any tees: where terminal UI (progress bars) should write."""
    while isinstance(stream, StreamTee):
        stream = stream._stream
    return stream


def capture(name: str, sink: Callable[[str], None]) -> StreamTee:
    """Replace ``sys.<name>`` (``stdout`` or ``stderr``) by a tee into `sink`."""
    tee = StreamTee(getattr(sys, name), sink)
    setattr(sys, name, tee)
    return tee


def release(name: str, tee: StreamTee) -> None:
    """Stop `tee`; put the original stream back unless something was installed on top since."""
    tee.detach_sink()
    if getattr(sys, name) is tee:
        setattr(sys, name, tee._stream)
