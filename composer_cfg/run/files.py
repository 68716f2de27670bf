"""Writing files without following a symbolic link the run did not create.

A link planted where the run writes (pointing at a victim file elsewhere) is never followed. A
file written as it goes (a log) is opened with ``O_NOFOLLOW``; a file written whole (a checkpoint,
a plot, an artifact) is written under an unpredictable name created exclusively beside its path,
then renamed over it, which replaces a link there rather than its target.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from composer_cfg.runtime import forks

_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; Windows has none


def open_text(path: Path, *, overwrite: bool, buffering: int = -1, append: bool = False) -> IO[str]:
    """Open `path` to write UTF-8 text, never through a symbolic link: with `append`, added to
    (created if missing; a last line cut short by a crash is removed first); else truncated if
    `overwrite`, else created (`FileExistsError` if anything is there). A link there raises `OSError`.
    The file is the process's own: a forked child never writes to it (`composer_cfg.runtime.forks`)."""
    if append:
        flags = os.O_RDWR | os.O_CREAT | _NO_FOLLOW | os.O_APPEND  # read: to find a torn last line
    else:
        flags = os.O_WRONLY | os.O_CREAT | _NO_FOLLOW | (os.O_TRUNC if overwrite else os.O_EXCL)
    descriptor = os.open(path, flags, 0o666)
    if append:
        _cut_torn_line(descriptor)
    try:
        # A lone surrogate in logged text is written as its escape, never an error at the write.
        return forks.own(os.fdopen(descriptor, "w", buffering=buffering, encoding="utf-8", errors="backslashreplace"))
    except BaseException:
        os.close(descriptor)
        raise


def _cut_torn_line(descriptor: int) -> None:
    """Truncate an open file after its last newline: what follows it is a line a killed process
    left half written."""
    size = end = os.fstat(descriptor).st_size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(descriptor, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        os.ftruncate(descriptor, end)


def unique_beside(path: Path) -> Path:
    """An unpredictable name next to `path`, for writing it before a rename."""
    return path.with_name(f".{path.name}.{os.urandom(8).hex()}.partial")


def write_exclusively(source: Any, path: Path) -> None:
    """Copy the open binary `source` into a new file at `path`, created exclusively (an existing
    file or symbolic link there is an error, never followed), with the usual permissions."""
    with open(path, "xb") as target:
        shutil.copyfileobj(source, target)


@contextmanager
def replacing(path: Path) -> Iterator[IO[bytes]]:
    """A new binary file that replaces `path` when the block ends without an error: a reader sees
    the old file or the whole new one, and a link at `path` is replaced, not followed."""
    partial = unique_beside(path)
    try:
        with open(partial, "xb") as file:
            yield file
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
