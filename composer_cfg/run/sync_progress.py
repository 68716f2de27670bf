"""`SyncProgress`: the only reader-writer of what ``composer-cfg-sync`` sent of a run's files,
``sync-progress-rank{rank}.json`` beside them.

The sync's own file: the run's manifest belongs to the run (resume reads it, a live attempt may
hold it), and a sync never writes it. It holds, per records file or spool (by name), destination
and target (`Policies.sync_target`)::

    {"metrics-rank0.jsonl": {"mlflow": {"sqlite:////runs/mlflow.db": {"through": {...}, "identity": {...}}}}}

``through``: how far the file was sent (`composer_cfg.run.sync`); ``identity``: the tracker run it
went into (`Policies.run_identity`). Written whole under locks (`composer_cfg.run.locked_json`).

Where the file has nothing for a target, the run's manifest says where a sync starts: the
tracker run a live run names for its spool (`RunRecord.add_spool`), or what an earlier version of
composer_cfg recorded there of its syncs. Those are read, never written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from typing_extensions import Required, TypedDict  # pydantic reads TypedDicts from here before Python 3.12

from composer_cfg.core.errors import ConfigError
from composer_cfg.run.locked_json import LockedJson, read_checked
from composer_cfg.run.run_record import progress_key

_PATTERN = "sync-progress-rank{rank}.json"


def progress_path(directory: Path, rank: int) -> Path:
    """Where the progress of syncs of `rank`'s files in `directory` is kept."""
    return directory / _PATTERN.format(rank=rank)


class _Through(TypedDict, total=False):
    """How far a file was sent: the last point, the level/key pairs and items sent at it, and of a
    records file the byte offset of the last record sent."""

    __pydantic_config__ = {"extra": "forbid"}  # type: ignore[misc]  # a pydantic ConfigDict
    epoch: Required[int]
    batch: Required[int]
    keys: Required[list[str]]
    items: dict[str, int]
    offset: int


class _Entry(TypedDict, total=False):
    __pydantic_config__ = {"extra": "forbid"}  # type: ignore[misc]
    through: _Through | None
    identity: dict[str, Any]


#: file name -> destination -> target -> entry: the shape every reader relies on.
_Progress = dict[str, dict[str, dict[str, _Entry]]]


class DamagedSyncProgress(ConfigError):
    """A progress file that is not one (cut short, edited by hand): said in one line, naming the file."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: damaged sync progress ({why}); restore it, or move it aside and sync with "
                         f"--fresh (everything is sent again, into new tracker runs)")


def read_progress(path: Path) -> dict[str, Any]:
    """The progress file at `path`, or {} when there is none; `DamagedSyncProgress` when it is not one."""
    return read_checked(path, _Progress, DamagedSyncProgress)


def check_progress(directories: Iterable[Path]) -> None:
    """`DamagedSyncProgress` for a damaged progress file in any of `directories` (before a sync sends anything)."""
    for directory in sorted(set(directories)):
        for path in sorted(directory.glob(_PATTERN.format(rank="*"))):
            read_progress(path)


class SyncProgress:
    """The progress of syncs of one rank's files in one directory (see the module's docstring)."""

    def __init__(self, directory: Path, rank: int) -> None:
        self._file = LockedJson(progress_path(directory, rank), read_progress)

    def start(self, manifest: Mapping[str, Any], file: str, destination: str, target: str) -> dict[str, Any] | None:
        """Where a sync of `file` into `destination`'s `target` starts (None when nothing is known):
        this file's entry; else the run's `manifest`'s for that target (a spool's tracker run, an
        earlier version's progress); else an earlier version's entry from before targets (by
        destination alone), which counts for the first target to start from it: it is recorded here
        as that target's at once."""
        entries = read_progress(self._file.path).get(file, {}).get(destination, {})
        if target in entries:
            return entries[target]
        earlier = manifest.get("sync", {}).get(file, {})
        entry = earlier.get(progress_key(destination, target))
        taken = entry is None and not entries and "target" not in earlier.get(destination, {"target": None})
        if taken:
            entry = earlier[destination]
        if entry is None:
            return None
        entry = {name: entry[name] for name in ("through", "identity") if name in entry}
        if taken:
            self.record(file, destination, target, entry)
        return entry

    def record(self, file: str, destination: str, target: str, entry: Mapping[str, Any]) -> None:
        """What was sent of `file` into `destination`'s `target` (``through``), and where (``identity``)."""
        self._file.change(lambda progress: progress.setdefault(file, {}).setdefault(destination, {}).update(
            {target: dict(entry)}))
