"""A JSON file one module alone reads and writes (a run's manifest, a sync's progress).

Its shape is checked where it is read (a pydantic TypedDict, strictly): a file that is not one
(cut short, edited by hand) is one line naming it. Every change is a read-modify-write of the
whole file under two locks, one for the threads of this process and one for other processes
(`filelock`, ``<file>.lock``), then an atomic replace (`composer_cfg.run.files.replacing`): a
reader sees the old file or the new one, never half of either, and no writer loses another's change.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from composer_cfg.core.errors import ConfigError
from composer_cfg.run.files import replacing

#: ``damaged(path, why)``: the error saying that `path` is not what it should be, and how to recover.
Damaged = Callable[[Path, str], ConfigError]


@functools.cache
def _adapter(shape: Any) -> Any:
    from pydantic import TypeAdapter  # imported when such a file is first read, not with the package

    return TypeAdapter(shape)


def read_checked(path: Path, shape: Any, damaged: Damaged) -> dict[str, Any]:
    """The JSON object at `path`, or {} when there is none yet; `damaged(path, why)` is raised
    when it is not JSON or not of `shape` (`why` names the first place that is not)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise damaged(path, f"not JSON: {error}") from None
    from pydantic import ValidationError

    try:
        _adapter(shape).validate_python(content, strict=True)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the whole file"
        raise damaged(path, f"{where}: {first['msg'].lower()}") from None
    return content


class LockedJson:
    """The JSON file at `path`, read by `read` (`read_checked`), changed whole under both locks."""

    def __init__(self, path: Path, read: Callable[[Path], dict[str, Any]]) -> None:
        self.path = path
        self._read = read
        self._lock = threading.RLock()
        self._writing = FileLock(f"{path}.lock", thread_local=False)

    def change(self, change: Callable[[dict[str, Any]], Any]) -> Any:
        """Read the file, apply `change` to its content, write it whole; `change`'s result."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._writing:
                content = self._read(self.path)
                result = change(content)
                with replacing(self.path) as file:
                    file.write(json.dumps(content, indent=2, sort_keys=True).encode("utf-8") + b"\n")
                return result
