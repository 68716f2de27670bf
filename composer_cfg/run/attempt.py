"""`RunAttempt`: what one process's run leaves in its manifest (`RunRecord`), for its `Logger`.

A resumable run (``resume=auto|must``) is begun before any destination opens (continuing the run
recorded there, or starting one), marked at each checkpoint with how far each destination got,
and ended with its status. Any run lists its JSON Lines records files there (those inside the
run's directory), and any run whose tracker spooled records enters the spool there, so that
readers and ``composer-cfg-sync`` find them; a run that is not resumable makes its manifest then,
and only then. At the end, the Logger's report goes in too, if this attempt wrote there (a refused
second attempt leaves the live one's manifest alone).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from composer_cfg.core.sink import Policies
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.run.resume import Resume
from composer_cfg.run.run_record import RunRecord, run_directory
from composer_cfg.run.spool import Spool

LOG = logging.getLogger("composer_cfg")
#: The start of the name of a file of records a tracker's channel sealed at a checkpoint.
HELD = "held-"
HELD_ID = 12  # hex digits of its id
Identities = Mapping[str, Mapping[str, Any]]


class RunAttempt:
    """The manifest side of one `Logger`'s run (see the module's docstring)."""

    def __init__(self, state: State, resume: Resume | str) -> None:
        self._state = state
        self.resume = Resume.parse(resume)
        self.resumable = self.resume is not Resume.NEVER
        self._directory = run_directory(state.run_name, state.directory)
        self._record = RunRecord(self._directory, state.rank) if self.resumable else None
        self._lock = threading.Lock()
        self._begun = False
        self._wrote = False  # this attempt began a run there, or entered a spool: the report is its to add
        self.identities: Identities | None = None  # each destination's identity, when a run is continued
        self.resumed_from: Timestamp | None = None  # and the point it continues from
        self.key: str | None = None  # a resumable run's own id (`RunRecord.key`), once begun

    def begin(self) -> None:
        """Before the destinations open: continue or start the recorded run (resumable runs only);
        a continued run's state starts at its last checkpoint's mark, which is said."""
        if self.resumable:
            state = self._state
            given = state.timestamp
            continued = self._record.begin(state.run_name, state.world_size, self.resume, given)  # type: ignore[union-attr]
            self.key = self._record.key  # type: ignore[union-attr]
            if continued is not None:
                self.identities, self.resumed_from = continued.identities, continued.start
                cut_back(continued.cut_back)
                kept = {Path(file) for identity in continued.identities.values() for file in identity.get("held_files", ())}
                for path in self._directory.glob(f"{HELD}*.pkl"):
                    if path not in kept and _held_of_rank(path.name, state.rank):  # sealed for a checkpoint
                        path.unlink(missing_ok=True)  # that was never marked, or delivered
                if continued.marked:
                    _say_start(state.run_name, continued.start, given)
                    state.timestamp = continued.start
            self._begun = self._wrote = True

    def started(self, identities: Identities, records: Identities, rolled_back: Identities) -> None:
        """Every destination opened: record who they are (an MLflow run id, a W&B id...), which of
        them (`records`, a subset of `identities`) write the run's records files, and where, and
        the files of those (`rolled_back`) a next attempt cuts back to the last checkpoint."""
        if self._begun:
            self._record.started(identities, _files(rolled_back))  # type: ignore[union-attr]
        files = {name: path for name, path in _files(records).items() if path.is_relative_to(self._directory)}
        if files:
            self._manifest().add_records(files)
            self._wrote = True

    def held_path(self, name: str) -> Path | None:
        """Where destination `name`'s channel seals, at a checkpoint, what it held for it (a new
        file each time); None when the run is not resumable."""
        if not self._begun:
            return None
        return self._directory / f"{HELD}{name}-rank{self._state.rank}-{uuid.uuid4().hex[:HELD_ID]}.pkl"

    def checkpoint(self, identities: Identities, held: Mapping[str, list[Path]], epoch_ended: bool) -> None:
        """Everything logged so far is durable, and what trackers held is sealed in the files
        `held` (by destination, oldest first): record the mark, where a next attempt continues:
        the end of the `TrainingLoop` body in progress (`State.after_body`); without one, after
        an epoch's checkpoint fired before the timestamp moved on, the start of the next epoch."""
        if self._begun:
            state = self._state
            mark = state.timestamp if state.after_body is None else state.after_body(state.timestamp)
            if state.after_body is None and epoch_ended and mark.batch_in_epoch:
                mark = mark.to_next_epoch()
            files = {name: [path.name for path in paths] for name, paths in held.items()}
            self._record.checkpoint(mark, identities, files)  # type: ignore[union-attr]

    def end(self, status: RunStatus, report: Callable[[], Mapping[str, Any]]) -> None:
        """The run ended with `status`; the report goes in if there is a manifest."""
        if self._begun:
            self._record.end(status, self._state.timestamp)  # type: ignore[union-attr]
            self._begun = False
        if self._wrote and self._record is not None:
            self._record.record_report(report())

    def _manifest(self) -> RunRecord:
        """This run's manifest (made when first needed, for a run that is not resumable)."""
        with self._lock:
            if self._record is None:
                self._record = RunRecord(self._directory, self._state.rank)
            return self._record

    def forget(self) -> None:
        """In a forked child: the parent's attempt is not this process's to end."""
        self._begun = False
        self._record = None

    def spool_for(self, name: str, destination: Policies) -> Callable[[], Spool]:
        """How `destination` (named `name`) makes its spool, entered in the manifest when first
        written, with the target it writes to (what a sync completes with it)."""

        def spool() -> Spool:
            record, run = self._manifest(), self._state.facts()
            target = destination.sync_target(run)

            def register(file: str, identity: Mapping[str, Any]) -> None:
                self._wrote = True
                record.add_spool(file, name, identity, target)

            return Spool(self._directory, name, run, register)

        return spool


def _held_of_rank(name: str, rank: int) -> bool:
    """Whether a file named `name` is one `RunAttempt.held_path` gives `rank` (a destination's name
    may hold ``-rank0-`` itself)."""
    return re.fullmatch(rf"{HELD}.+-rank{rank}-[0-9a-f]{{{HELD_ID}}}\.pkl", name) is not None


def _files(identities: Identities) -> dict[str, Path]:
    """The file each destination writes (its identity's ``filename``), by name."""
    return {name: Path(identity["filename"]) for name, identity in identities.items() if identity.get("filename")}


def cut_back(files: Mapping[Path, int]) -> None:
    """Each file as it was at the run's last checkpoint: cut to its size then, or removed if it was
    made after it (what a killed attempt wrote after its last checkpoint goes; the next attempt
    writes it again)."""
    for path, size in files.items():
        if not size:
            path.unlink(missing_ok=True)
        elif path.is_file() and path.stat().st_size > size:
            os.truncate(path, size)


def _say_start(run_name: str, mark: Timestamp, given: Timestamp) -> None:
    """Say where a continued run starts: its last checkpoint's mark (and that it is not the
    point the state was given, if one was given)."""
    LOG.info("run %r continues from its last checkpoint: epoch %d, batch %d (load your model's checkpoint of that "
             "point)", run_name, mark.epoch, mark.batch)
    if (given.epoch, given.batch) not in ((0, 0), (mark.epoch, mark.batch)):
        LOG.warning("run %r: the state was given epoch %d, batch %d, but the run's last checkpoint marked epoch %d, "
                    "batch %d; it continues from the mark (what every destination has)", run_name, given.epoch,
                    given.batch, mark.epoch, mark.batch)
