"""Capture what the process prints, and turn it into whole lines per thread.

`start` patches the ``write`` of the stream object that ``sys.stdout``/``sys.stderr`` is now
(as Composer did), so writers holding that object from before (a `logging.StreamHandler`
created earlier) are captured too. One patch per stream fans out to every sink; `stop` removes a
sink, and the last one out restores the stream. `uncaptured` gives terminal UI (progress bars) a
view of a stream that bypasses every sink. What is written is masked
(`composer_cfg.core.secrets.redact_text`) before any sink or the stream gets it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, TextIO

from composer_cfg.core.secrets import redact_text
from composer_cfg.runtime import forks

Sink = Callable[[str], None]


class _Patch:
    """The one patch of a stream object: each write goes, masked, to every sink, then to the stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.original: Callable[[str], int] = stream.write
        # Another library may have patched the object's write before us: put that one back later.
        self.replaced_attribute = "write" in getattr(stream, "__dict__", {})
        self.sinks: tuple[Sink, ...] = ()

    def write(self, text: str) -> int:
        masked = redact_text(text)
        for sink in self.sinks:
            sink(masked)
        self.original(masked)
        return len(text)


_patches: dict[int, _Patch] = {}
_lock = threading.Lock()


class _InChild:
    """In a forked child (`composer_cfg.runtime.forks`): the parent's sinks get nothing more (the
    child's prints go to the stream alone), and the lock a parent thread may have held is new."""

    def forget(self) -> None:
        global _lock
        _lock = threading.Lock()
        for patch in _patches.values():
            patch.sinks = ()


_in_child = _InChild()
forks.watch(_in_child, always=True)


def start(name: str, sink: Sink) -> tuple[TextIO, Sink] | None:
    """Send everything written to ``sys.<name>`` to `sink` too; None if there is no such stream
    (``pythonw``, a closed descriptor) or it can not be patched.

    The sink must not raise: it runs inside the program's own ``print``.
    """
    stream = getattr(sys, name, None)
    if stream is None or not callable(getattr(stream, "write", None)):
        return None
    with _lock:
        patch = _patches.get(id(stream))
        if patch is None:
            patch = _Patch(stream)
            try:
                stream.write = patch.write  # type: ignore[method-assign]
            except (AttributeError, TypeError):
                return None
            _patches[id(stream)] = patch
        patch.sinks = (*patch.sinks, sink)
    return stream, sink


def stop(handle: tuple[TextIO, Sink]) -> None:
    """Stop sending to the handle's sink; unpatch the stream when no sink is left."""
    stream, sink = handle
    with _lock:
        patch = _patches.get(id(stream))
        if patch is None or sink not in patch.sinks:
            return
        patch.sinks = tuple(s for s in patch.sinks if s is not sink)
        if not patch.sinks:
            del _patches[id(stream)]
            if vars(stream).get("write") == patch.write:
                if patch.replaced_attribute:
                    stream.write = patch.original  # type: ignore[method-assign]
                else:
                    del stream.write  # type: ignore[method-assign]


class _Uncaptured:
    """A stream's stand-in whose writes reach the stream but no sink."""

    def __init__(self, stream: TextIO, write: Callable[[str], int]) -> None:
        self._stream = stream
        self.write = write

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def uncaptured(stream: TextIO) -> TextIO:
    """`stream` itself, or, while it is captured, a view whose writes bypass the capture."""
    patch = _patches.get(id(stream))
    return stream if patch is None else _Uncaptured(stream, patch.original)  # type: ignore[return-value]


class LineAssembler:
    """Turns captured text, written in pieces by any number of threads, into whole prefixed lines.

    ``print("x")`` writes ``"x"`` and ``"\\n"`` separately; a piece without a line break waits
    for the rest of its line *from the same thread*, so two threads printing at once never share
    a line. A line that is only a line break gets no prefix. A carriage return rewinds the line,
    as on a terminal: of a progress bar drawn with ``\\r`` only what it shows last is kept (and
    its updates cost no more than one line). A line growing past `MAX_LINE` characters without a
    break is written out in parts. Callers hold their own lock.
    """

    MAX_LINE = 65536

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.waiting = 0  # threads with an unfinished line
        self._partial: dict[int, list[str]] = {}  # thread -> pieces of its unfinished line
        self._sizes: dict[int, int] = {}

    def feed(self, text: str, thread: int | None = None) -> str:
        """The whole lines `text` (written by `thread`, default: this one) completes (prefixed, each
        ending in a line break), as one string."""
        thread = threading.get_ident() if thread is None else thread
        if "\r\n" in text:
            text = text.replace("\r\n", "\n")
        end = text.rfind("\n")
        if end < 0:
            return self._wait(thread, text)
        lines = (self._take(thread) + text[:end]).split("\n")
        if end + 1 < len(text):
            self._wait(thread, text[end + 1 :])
        self.waiting = len(self._partial)
        return "".join(self._line(line) for line in lines)

    def finish(self, thread: int | None = None) -> str:
        """End the unfinished line of `thread` (of every thread if None) with a line break."""
        threads = list(self._partial) if thread is None else [thread] if thread in self._partial else []
        lines = "".join(self._line(self._take(t)) for t in threads)
        self.waiting = len(self._partial)
        return lines

    def _wait(self, thread: int, piece: str) -> str:
        """Keep `piece` for `thread`'s line; return the line if it grew too long to keep."""
        if "\r" in piece:  # the line rewinds: what came before is drawn over
            self._partial[thread], self._sizes[thread] = [], 0
            piece = _shown(piece)
        self._partial.setdefault(thread, []).append(piece)
        self._sizes[thread] = self._sizes.get(thread, 0) + len(piece)
        self.waiting = len(self._partial)
        return self.finish(thread) if self._sizes[thread] > self.MAX_LINE else ""

    def _take(self, thread: int) -> str:
        self._sizes.pop(thread, None)
        return "".join(self._partial.pop(thread, ()))

    def _line(self, line: str) -> str:
        if "\r" in line:
            line = _shown(line)
        return f"{self.prefix}{line}\n" if line else "\n"


def _shown(text: str) -> str:
    """What a terminal shows last of text with carriage returns: its last non-empty segment."""
    return next((segment for segment in reversed(text.split("\r")) if segment), "")
