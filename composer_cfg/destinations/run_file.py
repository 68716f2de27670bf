"""`RunFile`: a file a destination writes for a run, named by templates, published on flush."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

from composer_cfg.log_level import LogLevel
from composer_cfg.params import require_rank_field
from composer_cfg.state import State
from composer_cfg.templates import DIST_FIELDS, Template, check_artifact_name

if TYPE_CHECKING:
    from composer_cfg.logger import Logger


def default_artifact_name(filename: str) -> str:
    """A file's artifact name: ``/`` separators, no leading ``/``, ``.`` or ``..`` parts."""
    parts = filename.replace(os.path.sep, "/").split("/")
    while parts and parts[0] in ("", ".", ".."):
        parts.pop(0)
    return "/".join(parts)


class RunFile:
    """One file per rank (``filename`` template), opened when first needed.

    `overwrite=False` refuses to replace an existing file. `flush` flushes, fsyncs, then
    offers the file to every destination as `artifact_name` (default: the filename).
    """

    def __init__(self, kind: str, filename: str, artifact_name: str | None, *, overwrite: bool, buffering: int = -1):
        self.kind = kind
        self._filename = Template(filename, DIST_FIELDS, key="filename")
        artifact = default_artifact_name(filename) if artifact_name is None else artifact_name
        check_artifact_name(artifact, key="artifact_name")
        self._artifact_name = Template(artifact, DIST_FIELDS, key="artifact_name")
        self.overwrite = bool(overwrite)
        self.buffering = buffering
        self.file: IO[str] | None = None
        self.path: str | None = None
        self.artifact_name: str | None = None

    def open(self, state: State) -> IO[str]:
        """Create the file for this run and rank (and its directory)."""
        require_rank_field(self._filename, state.dist.world_size, key="filename")
        fields = {"run_name": state.run_name, **state.dist.template_fields()}
        self.path = self._filename.fill(fields)
        self.artifact_name = self._artifact_name.fill(fields)
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.file = open(path, "w" if self.overwrite else "x", buffering=self.buffering, encoding="utf-8")
        except FileExistsError:
            raise FileExistsError(
                f"{self.kind} {str(path)!r} already exists: pass overwrite=True to replace it, "
                f"or use another run_name or filename"
            ) from None
        return self.file

    def flush(self, logger: Logger | None) -> None:
        """Flush and fsync, then publish the file through `logger` (when one is known)."""
        if self.file is not None:
            self.flush_file(self.file, logger)

    def flush_file(self, file: IO[str], logger: Logger | None) -> None:
        file.flush()  # to the OS: survives the process being killed
        os.fsync(file.fileno())  # to the disk: survives the machine going down
        if logger is not None and self.path is not None and self.artifact_name is not None:
            logger.file_artifact(LogLevel.FIT, self.artifact_name, self.path, overwrite=True)

    def close(self, logger: Logger | None) -> None:
        """Flush, publish and close (closed even when the flush fails, e.g. on a full disk)."""
        if self.file is not None:
            file, self.file = self.file, None
            try:
                self.flush_file(file, logger)
            finally:
                try:
                    file.close()
                except OSError:
                    pass  # the flush's error is the one to report

    def location(self) -> str | None:
        return os.path.abspath(self.path) if self.path is not None else None

    def known(self, what: str) -> str:
        value = self.path if what == "filename" else self.artifact_name
        if value is None:
            raise RuntimeError(f"{what} is known only after Event.INIT or the first write")
        return value
