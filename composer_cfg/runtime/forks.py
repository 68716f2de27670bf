"""A forked child never touches its parent's run: fork safety, in one place.

A process forked while a `Logger` is live (a torch ``DataLoader`` worker, a ``multiprocessing``
child) starts with copies of it: its channels, files with text still buffered, the run's lock,
the exit hooks. Left alone, the child's exit would flush that text into the parent's files a
second time and close the parent's run. So, in the child, at the fork itself
(``os.register_at_fork``):

* every Logger of the parent becomes inert: its calls, events and `close` do nothing, and each
  channel's lock is new (a parent thread may have held the old one at the fork);
* what the child prints reaches its stream only, not the parent's captured log
  (`composer_cfg.destinations.capture`);
* the exit hooks forget the parent's Loggers and leave SIGTERM to its default
  (`composer_cfg.runtime.exit_hooks.forget_in_child`);
* every file a destination opened (`own`) is pointed at ``/dev/null`` in the child only, so
  whatever the child's copy still buffers goes nowhere; the parent's file is untouched;
* the run's attempt lock stays the parent's (`filelock` never releases a parent's lock in a child).

A Logger the child builds for itself works as in any process.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import IO, Any, Protocol

from composer_cfg.runtime import exit_hooks


class Forgetful(Protocol):
    def forget(self) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()  # Loggers (anything with `forget`)
_files: weakref.WeakSet[IO[Any]] = weakref.WeakSet()
_always: list[Any] = []  # module-level state (`watch(..., always=True)`): forgotten in every child, and its children


def watch(owner: Forgetful, always: bool = False) -> None:
    """Have `owner.forget()` called in a child forked while it lives; with `always`, in the
    children of that child too (module-level state, such as a module's lock)."""
    _live.add(owner)
    if always:
        _always.append(owner)


def own(file: IO[Any]) -> IO[Any]:
    """`file` (open, ours): pointed at ``/dev/null`` in a child forked while it is open; returns it."""
    _files.add(file)
    return file


def _in_child() -> None:
    for owner in list(_live):
        owner.forget()
    _live.clear()
    _live.update(_always)
    files = [file for file in list(_files) if not file.closed]
    _files.clear()
    if files:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            for file in files:
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(null, file.fileno())
        finally:
            os.close(null)
    exit_hooks.forget_in_child()


os.register_at_fork(after_in_child=_in_child)
