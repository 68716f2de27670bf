"""`Spool`: the records a destination could not deliver, kept on disk for ``composer-cfg-sync``.

A channel gives up a record when its queue is full and its policy drops, or when a barrier or
close waited as long as it may (`composer_cfg.core.sink.DeliveryPolicy`). With
``undelivered=spool`` the record is appended to ``{run_name}/undelivered-<destination>-rank<r>.jsonl``
in the JSON Lines records format (`composer_cfg.run.records`): data as it was logged,
hyperparameters as one FIT record, an artifact as its name and the path of the file it was
published from (the file itself is not copied: a sync uploads it as it is then; the last
version of a log file is the one wanted), an image or a table with its files beside the spool
(`composer_cfg.run.media_files`). Each write reaches the OS before it returns; `close`
fsyncs.
The run record names the file's destination and, as soon as it is known, the identity of the
tracker run it belongs to, so a sync sends it to that destination alone and adds to that run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.record import Kind, Record, RunFacts
from composer_cfg.run.files import open_text
from composer_cfg.run.media_files import media_line, sync_files
from composer_cfg.run.records import artifact_line, record_line

_KEPT = frozenset({Kind.DATA, Kind.HYPERPARAMETERS, Kind.ARTIFACT, Kind.MEDIA})
#: ``register(file name, identity)``: name the spool in the run record (identity {} while unknown).
Register = Callable[[str, Mapping[str, Any]], None]


class Spool:
    """The spool file of one destination of one rank (see the module's docstring)."""

    def __init__(self, directory: Path, destination: str, run: RunFacts, register: Register) -> None:
        self.path = directory / f"undelivered-{destination}-rank{run.rank}.jsonl"
        self._run = run
        self._register = register
        self._identified = False
        self._file: IO[str] | None = None
        self._media_files: list[Path] = []  # written for its records, fsynced at close

    @staticmethod
    def keeps(record: Record) -> bool:
        """Whether a record of this kind can wait in a spool (data, hyperparameters and artifacts
        can; events and printed text can not)."""
        return record.kind in _KEPT

    def write(self, records: Sequence[Record]) -> int:
        """Append the records it `keeps`, flushed to the OS before returning; how many."""
        kept = [record for record in records if self.keeps(record)]
        if not kept:
            return 0
        text = "".join(map(self._line, kept))
        if self._file is None:
            self._register(self.path.name, {})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open_text(self.path, overwrite=False, append=True)
        self._file.write(text)
        self._file.flush()
        return len(kept)

    def _line(self, record: Record) -> str:
        run, level = self._run, record.level or LogLevel.FIT
        if record.kind is Kind.ARTIFACT:
            artifact = record.payload
            return artifact_line(level, run.run_name, run.rank, record.timestamp, record.time, artifact.name,
                                 str(Path(artifact.source).absolute()), artifact.overwrite)
        if record.kind is Kind.MEDIA:
            return media_line(json.dumps(run.run_name), run.rank, record, self.path.parent, self._media_file)
        return record_line(level, json.dumps(run.run_name), run.rank, record.timestamp, record.time, record.payload)

    def _media_file(self, path: Path, written: bool) -> None:
        if written:
            self._media_files.append(path)

    def close(self, identity: Mapping[str, Any]) -> None:
        """Fsync (the media files its records use first) and close the file; name the tracker run
        (`identity`) in the run record."""
        if self._file is None:
            return
        try:
            files, self._media_files = self._media_files, []
            sync_files(files)
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
            if identity:
                self._register(self.path.name, identity)
