"""Resuming a run: the `resume` setting, and the run's record in its manifest.

A run keeps, in ``{run_name}/run-rank{rank}.json`` (see `composer_cfg.manifest`), under ``"run"``:
its name and world size, each destination's identity (an MLflow run id, a W&B id, file paths)
and how far it was written, the last checkpoint mark, its status, and one entry per attempt
(started, ended, status, where it resumed). A later attempt with ``resume=auto`` reads it to add
to the same files and tracker runs; an attempt found ``RUNNING`` was killed and is recorded as
``CRASHED``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer_cfg.core.errors import ConfigError
from composer_cfg.manifest import manifest_path, read_manifest, write_manifest
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus
from composer_cfg.core.timestamp import COUNTERS, Timestamp

if TYPE_CHECKING:
    from composer_cfg.destination import LoggerDestination

CRASHED = "CRASHED"  # an attempt that never said how it ended (SIGKILL, a lost node)


class Resume(str, Enum):
    """What a run does when its run name already has a run.

    >>> Resume.parse("Auto"), Resume.parse(Resume.MUST)
    (<Resume.AUTO: 'auto'>, <Resume.MUST: 'must'>)
    """

    NEVER = "never"  # an existing run is an error
    AUTO = "auto"  # continue it if there is one, else start it
    MUST = "must"  # continue it; no run to continue is an error

    @classmethod
    def parse(cls, value: object, key: str = "resume") -> Resume:
        """A member or its value in any case; else `ConfigError` naming `key` and the valid values."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and value.strip().lower() in cls._value2member_map_:
            return cls(value.strip().lower())
        raise ConfigError(f"{key}: expected one of never, auto, must, got {value!r}", key=key)

    def __str__(self) -> str:
        return self.value


def run_manifest(run_name: str, rank: int, root: Path | None = None) -> Path:
    """The manifest of `run_name`'s `rank`, under `root` (default: the working directory)."""
    return manifest_path((root or Path()).absolute() / run_name, rank)


def existing_run(run_name: str, rank: int, root: Path | None = None) -> dict[str, Any] | None:
    """The record of a run named `run_name` under `root` (rank `rank`), or None when there is none."""
    return read_manifest(run_manifest(run_name, rank, root)).get("run")


def timestamp_fields(timestamp: Timestamp) -> dict[str, int]:
    """Where a run is, as its manifest says it (``Timestamp(**fields)`` is where it was)."""
    return {name: int(getattr(timestamp, name)) for name in COUNTERS}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunKeeper:
    """Keeps the ``"run"`` record of one rank's manifest while a `Logger` runs.

    `begin` (before the destinations start) continues an existing run or starts one; `started`
    records what each destination wrote to; `checkpoint` records a checkpoint mark; `end` how
    the attempt ended. Each writes the whole manifest again, atomically.
    """

    def __init__(self, state: State, policy: Resume) -> None:
        self.state = state
        self.policy = policy
        self.path = run_manifest(state.run_name, state.rank)
        self.resumed = False

    def begin(self, destinations: Iterable[tuple[str, LoggerDestination]]) -> None:
        """Before `Event.INIT`: tell each destination what to continue, and open a new attempt."""
        manifest = read_manifest(self.path)
        run = manifest.get("run")
        if run is None and self.policy is Resume.MUST:
            raise ConfigError(f"resume: 'must', but there is no run {self.state.run_name!r} to continue "
                              f"(no {self.path}); use resume=auto to start it when it is missing", key="resume")
        if run is None:
            run = {"run_name": self.state.run_name, "world_size": self.state.world_size, "rank": self.state.rank,
                   "destinations": {}, "attempts": []}
        else:
            self.resumed = True
            for name, destination in destinations:  # one without an identity yet continues what it can (a file)
                destination.continue_run(run["destinations"].get(name, {}).get("identity") or {})
            if run["attempts"] and run["attempts"][-1]["status"] == "RUNNING":
                run["attempts"][-1]["status"] = CRASHED
        run["status"] = "RUNNING"
        run["attempts"].append({"started": _now(), "status": "RUNNING",
                                "resumed_at": timestamp_fields(self.state.timestamp) if self.resumed else None})
        manifest["run"] = run
        write_manifest(self.path, manifest)

    def started(self, destinations: Iterable[tuple[str, LoggerDestination]]) -> None:
        """After `Event.INIT`: record each destination's identity (a tracker's run id, a path)."""
        self._update(destinations, lambda run: None)

    def checkpoint(self, destinations: Iterable[tuple[str, LoggerDestination]]) -> None:
        """A checkpoint was saved and everything logged before it is written: mark the timestamp."""
        mark = timestamp_fields(self.state.timestamp)

        def update(run: dict[str, Any]) -> None:
            run["checkpoint"] = mark
            for entry in run["destinations"].values():
                entry["through"] = mark

        self._update(destinations, update)

    def end(self, status: RunStatus) -> None:
        """The attempt ended with `status` (a FINISHED one has written everything). Identities
        are not recorded here: one known only now may name a tracker run its store never kept
        (seen with MLflow killed while it created its store)."""
        def update(run: dict[str, Any]) -> None:
            run["status"] = status.value
            run["attempts"][-1].update(status=status.value, ended=_now())
            if status is RunStatus.FINISHED:
                for entry in run["destinations"].values():
                    entry["through"] = timestamp_fields(self.state.timestamp)

        self._update((), update)

    def _update(self, destinations: Iterable[tuple[str, LoggerDestination]], change: Any) -> None:
        """Record the destinations' identities, then `change`."""
        identities = {name: destination.run_identity() for name, destination in destinations}
        manifest = read_manifest(self.path)  # as it is now: composer-cfg-sync writes beside "run"
        run = manifest["run"]
        for name, identity in identities.items():
            entry = run["destinations"].setdefault(name, {})
            if identity:
                entry["identity"] = identity
        change(run)
        write_manifest(self.path, manifest)
