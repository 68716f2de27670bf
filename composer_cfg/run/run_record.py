"""`RunRecord`: the only reader-writer of a run's manifest, ``{run_name}/run-rank{rank}.json``.

The manifest says what went where: under ``"run"`` (a resumable run) its name and world size,
each destination's identity (an MLflow run id, a W&B id, file paths) and how far it was written,
the run's own id, the last checkpoint mark (and the size then of each records file and of each
file a next attempt cuts back to it, such as TensorBoard's event files), the status,
and one entry per attempt (started, ended, status, where it resumed, and the process that ran
it); under ``"records"`` its records files; under ``"spools"`` and ``"sync"`` the spools of
undelivered records, their destinations, targets and tracker runs; under ``"logging"`` the
Logger's report at close. ``composer-cfg-sync`` reads it and never writes it: it keeps its progress
in a file of its own (`composer_cfg.run.sync_progress`); what an earlier version kept of its syncs
under ``"sync"`` is read there, as where a sync starts.

Every change is a read-modify-write of the whole file under two locks, then an atomic replace
(`composer_cfg.run.locked_json`): a reader sees the old manifest or the new one, never half of
either, and no writer loses another's change. An attempt of a resumable run also holds the run's
attempt lock (``run-rank{rank}.lock``) from `begin` to `end`: a second live attempt of the same run
is refused, naming the live one. The operating system releases the lock of a killed process, so a
requeued job takes it over.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from filelock import FileLock, Timeout
from typing_extensions import Required, TypedDict  # pydantic reads TypedDicts from here before Python 3.12

from composer_cfg.core.errors import ConfigError
from composer_cfg.core.status import RunStatus
from composer_cfg.core.timestamp import COUNTERS, Timestamp
from composer_cfg.run.locked_json import LockedJson, read_checked
from composer_cfg.run.resume import Resume

CRASHED = "CRASHED"  # an attempt that never said how it ended (SIGKILL, a lost node)


def manifest_path(directory: Path, rank: int) -> Path:
    """Where the manifest of `rank` lives in a run's `directory`."""
    return directory / f"run-rank{rank}.json"


def run_directory(run_name: str, root: Path | None = None) -> Path:
    """The directory of `run_name`'s files under `root` (default: the working directory)."""
    return (root or Path()).absolute() / run_name


class _Point(TypedDict, total=False):
    """A `Timestamp`'s counters (`timestamp_fields`)."""

    __pydantic_config__ = {"extra": "forbid"}  # type: ignore[misc]  # a pydantic ConfigDict
    epoch: int
    batch: int
    batch_in_epoch: int
    sample: int
    sample_in_epoch: int
    token: int
    token_in_epoch: int


class _Attempt(TypedDict, total=False):
    status: Required[str]
    started: str
    ended: str
    pid: int
    host: str
    resumed_at: _Point | None


class _Destination(TypedDict, total=False):
    identity: dict[str, Any]
    through: _Point


class _Run(TypedDict, total=False):
    run_name: Required[str]
    world_size: int
    rank: int
    status: str
    key: str  # the run's own id, the same in every attempt (a tracker's run is tagged with it)
    checkpoint: _Point
    held: dict[str, list[str]]  # destination -> the files of what it held until the last checkpoint, oldest first
    records_at_checkpoint: dict[str, int]  # records file (as under "records" or "cut_back") -> its size in bytes then
    cut_back: dict[str, str]  # file (relative to the manifest, or absolute) -> destination: cut back on resume
    destinations: Required[dict[str, _Destination]]
    attempts: Required[list[_Attempt]]


class _Manifest(TypedDict, total=False):
    """What a manifest holds (see the module's docstring): the shape every reader relies on."""

    run: _Run
    records: dict[str, str]  # path (relative to the manifest) -> destination name
    spools: dict[str, str]
    # file -> `progress_key` -> {"target", "identity"}: a spool's; an earlier version's sync progress adds "through"
    sync: dict[str, dict[str, dict[str, Any]]]
    logging: dict[str, Any]


class DamagedManifest(ConfigError):
    """A manifest that is not one (cut short, edited by hand): said in one line, naming the file."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: a damaged run manifest ({why}); restore it, or move the run's directory "
                         f"aside and start the run again")


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path`, or {} when there is none yet; `DamagedManifest` when it is not one."""
    return read_checked(path, _Manifest, DamagedManifest)


class Continued(NamedTuple):
    """What a continued run starts from: each destination's identity in its back end, by name, and
    the point it starts at: its last checkpoint's mark (everything logged before it was delivered),
    else the point the attempt was started at; and the size each file cut back on resume had at
    that mark (0: a file made after it)."""

    identities: dict[str, Any]
    start: Timestamp
    marked: bool  # `start` is a checkpoint's mark
    cut_back: dict[Path, int]


class RunFiles(NamedTuple):
    """What a run or sweep directory holds to read: records files and trackers' spools."""

    records: list[Path]
    spools: list[Path]


def run_files(source: Path) -> RunFiles:
    """The records files and spools under the directory `source`, each sorted. The records files
    are those the runs' manifests list, and every other ``*.jsonl`` file that is no spool, outside
    the directories of those manifests, and not a copy of a listed one (a file of the same run and
    rank: a tracker's artifact store keeps one, wherever it is). `DamagedManifest` names a
    damaged manifest."""
    listed: set[Path] = set()
    spools: set[Path] = set()
    covered: list[Path] = []
    for path in sorted(source.rglob("run-rank*.json")):
        manifest = read_manifest(path)
        spools.update(path.parent / name for name in manifest.get("spools", {}))
        records = manifest.get("records") or {}
        if records:
            covered.append(path.parent)
            listed.update(path.parent / name for name in records)
    listed = {file for file in listed if file.is_file()}
    runs = {_run_of(file) for file in listed}
    unlisted = {file for file in source.rglob("*.jsonl") if file not in spools and file not in listed
                and not any(file.is_relative_to(directory) for directory in covered) and _run_of(file) not in runs}
    return RunFiles(sorted(listed | unlisted), sorted(file for file in spools if file.is_file()))


def _run_of(file: Path) -> tuple[Any, Any] | None:
    """The run name and rank of the first record in `file` (None if it has none)."""
    try:
        with open(file, encoding="utf-8") as lines:
            first = json.loads(lines.readline())
        return first.get("run_name"), first.get("rank", 0)
    except (ValueError, AttributeError, OSError):
        return None


def progress_key(destination: str, target: str) -> str:
    """Where a manifest's ``"sync"`` names a file's `destination` and `target` (`Policies.sync_target`):
    a spool's (`RunRecord.add_spool`), or an earlier version's sync progress."""
    return f"{destination} {target}" if target else destination


def existing_run(run_name: str, rank: int, root: Path | None = None) -> dict[str, Any] | None:
    """The ``"run"`` record of `run_name`'s `rank` under `root`, or None when there is none."""
    return read_manifest(manifest_path(run_directory(run_name, root), rank)).get("run")


def timestamp_fields(timestamp: Timestamp) -> dict[str, int]:
    """Where a run is, as its manifest says it (``Timestamp(**fields)`` is where it was)."""
    return {name: int(getattr(timestamp, name)) for name in COUNTERS}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunRecord:
    """The manifest of one rank of one run (see the module's docstring)."""

    def __init__(self, directory: Path, rank: int) -> None:
        self.path = manifest_path(directory, rank)
        self.rank = rank
        self._file = LockedJson(self.path, read_manifest)
        self._attempt = FileLock(self.path.with_suffix(".lock"), thread_local=False)
        self._live = False  # this process holds the attempt lock
        self.key: str | None = None  # the run's own id, once an attempt began (`begin`)

    def read(self) -> dict[str, Any]:
        """The whole manifest ({} when there is none)."""
        return read_manifest(self.path)

    # -- a resumable run's attempts ------------------------------------------------------------

    def begin(self, run_name: str, world_size: int, policy: Resume, timestamp: Timestamp) -> Continued | None:
        """Before any destination opens: take the attempt lock, continue the run recorded here or
        start one, and open a new attempt (started at `timestamp`, unless a checkpoint's mark says
        otherwise). Returns what the run continues from; None when it starts.

        `ConfigError` when `policy` is ``must`` and there is no run, or when another attempt of
        this run is live (naming it). Nothing is created before a refusal."""
        if policy is Resume.MUST and not self.exists():
            self._open_attempt({}, run_name, world_size, policy, timestamp)  # raises: nothing to continue
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._attempt.acquire(timeout=0)
        except Timeout:
            raise ConfigError(f"run_name: run {run_name!r} (rank {self.rank}) is already running: "
                              f"{self._live_attempt()}; wait for it to end, or stop it, before starting it again",
                              key="run_name") from None
        self._live = True
        try:
            return self._file.change(lambda manifest: self._open_attempt(manifest, run_name, world_size, policy,
                                                                    timestamp))
        except BaseException:
            self._release()
            raise

    def _open_attempt(self, manifest: dict[str, Any], run_name: str, world_size: int, policy: Resume,
                      timestamp: Timestamp) -> Continued | None:
        run = manifest.get("run")
        if run is None and policy is Resume.MUST:
            raise ConfigError(f"resume: 'must', but there is no run {run_name!r} to continue (no {self.path}); "
                              f"use resume=auto to start it when it is missing", key="resume")
        continued = None
        if run is None:
            run = {"run_name": run_name, "world_size": world_size, "rank": self.rank, "destinations": {},
                   "attempts": []}
        else:
            identities = {name: entry.get("identity") or {} for name, entry in run["destinations"].items()}
            kept = {str(self.path.parent / file): size for file, size in run.get("records_at_checkpoint", {}).items()}
            for file, name in manifest.get("records", {}).items():
                if name in identities and str(self.path.parent / file) in kept:  # what a records file keeps of
                    identities[name] = {**identities[name], "kept_bytes": kept}  # itself, by path (`resume_record`)
            for name, files in run.get("held", {}).items():
                if name in identities:
                    identities[name] = {**identities[name], "held_files": [str(self.path.parent / f) for f in files]}
            mark = run.get("checkpoint")
            sizes = run.get("records_at_checkpoint", {}) if mark is not None else {}
            cut_back = {self.path.parent / file: sizes.get(file, 0) for file in run.get("cut_back", {})}
            continued = Continued(identities, timestamp if mark is None else Timestamp(**mark), mark is not None,
                                  cut_back)
            if run["attempts"] and run["attempts"][-1]["status"] == "RUNNING":
                run["attempts"][-1]["status"] = CRASHED
        run["status"] = "RUNNING"
        self.key = run.setdefault("key", uuid.uuid4().hex)
        run["attempts"].append({"started": _now(), "status": "RUNNING", "pid": os.getpid(), "host": socket.gethostname(),
                                "resumed_at": timestamp_fields(continued.start) if continued else None})
        manifest["run"] = run
        return continued

    def started(self, identities: Mapping[str, Mapping[str, Any]], cut_back: Mapping[str, Path]) -> None:
        """After INIT: each destination's identity (a tracker's run id, a path), by name; and the
        files (by destination) that a next attempt cuts back to their size at the last checkpoint."""
        def change(manifest: dict[str, Any]) -> None:
            run = manifest["run"]
            _identify(run, identities)
            run.setdefault("cut_back", {}).update({self._named(path): name for name, path in cut_back.items()})

        self._file.change(change)

    def checkpoint(self, timestamp: Timestamp, identities: Mapping[str, Mapping[str, Any]],
                   held: Mapping[str, list[str]]) -> None:
        """A checkpoint was saved and everything logged before it is durable: mark `timestamp`.
        `held`: by destination, the files (in the manifest's directory, oldest first) of the records
        its channel held and delivers next; a next attempt delivers those still there again."""
        def change(manifest: dict[str, Any]) -> None:
            _identify(manifest["run"], identities)
            self._mark(manifest, timestamp, identities)
            manifest["run"]["held"] = {name: list(files) for name, files in held.items()}

        self._file.change(change)

    def end(self, status: RunStatus, timestamp: Timestamp) -> None:
        """The attempt ended with `status`; the attempt lock is released. A FINISHED one has
        delivered everything: its end is the mark a next attempt continues from (so it redoes and
        logs again nothing the trackers have). Identities are not recorded here: one known only now
        may name a tracker run its store never kept (seen with MLflow killed while it created its store)."""
        def change(manifest: dict[str, Any]) -> None:
            run = manifest["run"]
            run["status"] = status.value
            run["attempts"][-1].update(status=status.value, ended=_now())
            if status is RunStatus.FINISHED:
                self._mark(manifest, timestamp)
                run["held"] = {}  # delivered at close

        try:
            self._file.change(change)
        finally:
            self._release()

    # -- any run -----------------------------------------------------------------------------

    def add_spool(self, file_name: str, destination: str, identity: Mapping[str, Any], target: str) -> None:
        """The spool `file_name` belongs to `destination`, writing to `target` (`progress_key`), whose
        tracker run is `identity` (once known)."""
        def change(manifest: dict[str, Any]) -> None:
            manifest.setdefault("spools", {})[file_name] = destination
            key = progress_key(destination, target)
            entry = manifest.setdefault("sync", {}).setdefault(file_name, {}).setdefault(key, {"target": target})
            if identity and not entry.get("identity"):
                entry["identity"] = dict(identity)

        self._file.change(change)

    def add_records(self, files: Mapping[str, Path]) -> None:
        """Records files (each inside the manifest's directory), by destination name: listed by
        path, so every Logger of the run (training, then evaluation) adds its own."""
        self._file.change(lambda manifest: manifest.setdefault("records", {}).update(
            {self._named(path): name for name, path in files.items()}))

    def record_report(self, report: Mapping[str, Any]) -> None:
        """The Logger's report at close, under ``"logging"``."""
        self._file.change(lambda manifest: manifest.update(logging=dict(report)))

    def exists(self) -> bool:
        return self.path.is_file()

    # -- internals ---------------------------------------------------------------------------

    def _mark(self, manifest: dict[str, Any], timestamp: Timestamp,
              identities: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Everything logged so far is delivered: `timestamp` is where a next attempt continues,
        and each records file's size now is what it keeps of it (`composer_cfg.run.records`), as
        is each file cut back on resume (the size its destination's identity, in `identities`,
        says it flushed, if it says one)."""
        run, mark = manifest["run"], timestamp_fields(timestamp)
        run["checkpoint"] = mark
        files = [*manifest.get("records", {}), *run.get("cut_back", {})]
        sizes = {file: (self.path.parent / file).stat().st_size for file in files if (self.path.parent / file).is_file()}
        for file, name in run.get("cut_back", {}).items():
            identity = (identities or {}).get(name) or {}
            if "flushed_bytes" in identity and Path(identity.get("filename") or "") == self.path.parent / file:
                sizes[file] = int(identity["flushed_bytes"])
        run["records_at_checkpoint"] = sizes
        for entry in run["destinations"].values():
            entry["through"] = mark

    def _named(self, path: Path) -> str:
        """`path` as the manifest names a file: relative to its directory when inside it."""
        return path.relative_to(self.path.parent).as_posix() if path.is_relative_to(self.path.parent) else str(path)

    def _live_attempt(self) -> str:
        """The attempt holding the lock, as its record says it."""
        try:
            attempts = (read_manifest(self.path).get("run") or {}).get("attempts") or [{}]
        except ValueError:
            attempts = [{}]
        last = attempts[-1]
        if "pid" not in last:
            return f"another process holds {self._attempt.lock_file}"
        return f"attempt started {last.get('started')} by process {last['pid']} on {last.get('host')}"

    def _release(self) -> None:
        if self._live:
            self._live = False
            self._attempt.release()


def _identify(run: dict[str, Any], identities: Mapping[str, Mapping[str, Any]]) -> None:
    for name, identity in identities.items():
        entry = run["destinations"].setdefault(name, {})
        if identity:
            entry["identity"] = dict(identity)
