"""`RunFile`: a file a destination writes for a run, named by templates, published on flush."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Mapping

from composer_cfg.destination import LoggerDestination
from composer_cfg.run.files import open_text
from composer_cfg.core.log_level import LogLevel
from composer_cfg.config.params import ARTIFACT_NAME, FILE, check_published_path, require_rank_field
from composer_cfg.core.state import State
from composer_cfg.core.templates import default_artifact_name, literal

if TYPE_CHECKING:
    from composer_cfg.logger import Logger


def check_file_names(filename: str, artifact_name: str | None) -> None:
    """A file published under its own path (`artifact_name` None) may use ``..`` only at the start."""
    if artifact_name is None:
        check_published_path(filename, key="filename", hint="; or name the artifact with artifact_name")


class RunFileDestination(LoggerDestination):
    """A destination that writes a `RunFile` named by its ``filename`` and ``artifact_name``."""

    _run_file: RunFile

    @classmethod
    def check_config(cls, params: Mapping[str, Any], world_size: int) -> None:
        if isinstance(params.get("filename"), str):
            check_file_names(params["filename"], params.get("artifact_name"))

    def report(self) -> dict[str, Any]:
        """``bytes_written``: what this run added to its file so far, as far as the OS has it."""
        return {"bytes_written": self._run_file.bytes_written()}


class RunFile:
    """One file per rank (``filename`` template), opened when first needed.

    `overwrite=False` refuses to replace an existing file; a symbolic link at the path is
    never written through, whatever `overwrite` says. The path is made absolute when the
    file opens, so a later change of working directory does not move it. Not thread-safe: the
    destination that owns it holds its own lock around `open`, writes and `sync`.
    """

    def __init__(self, kind: str, filename: str, artifact_name: str | None, *, overwrite: bool, buffering: int = -1):
        self.kind = kind
        self._filename = FILE.check("filename", filename)
        check_file_names(filename, artifact_name)
        artifact = default_artifact_name(filename) if artifact_name is None else artifact_name
        self._artifact_name = ARTIFACT_NAME.check("artifact_name", artifact, 1)
        self.overwrite = bool(overwrite)
        self.buffering = buffering
        self.append = False  # continue an earlier attempt's file (see `continue_run`)
        self.file: IO[str] | None = None
        self.path: str | None = None
        self.artifact_name: str | None = None
        self._opened = False
        self._size_at_open = 0

    def resolve(self, state: State) -> str:
        """Fix the file's absolute path and artifact name (once: a later change of working
        directory, as at interpreter exit, does not move the file)."""
        if self.path is None:
            require_rank_field(self._filename, state.dist.world_size, key="filename")
            fields = state.template_fields()
            path = str(Path(self._filename.fill(fields)).absolute())
            self.artifact_name = self._artifact_name.fill(fields)
            self.path = path
        return self.path

    def open(self, state: State) -> IO[str]:
        """Create the file for this run and rank (and its directory)."""
        path = Path(self.resolve(state))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.file = open_text(path, overwrite=self.overwrite, buffering=self.buffering, append=self.append)
        except OSError as error:
            if path.is_symlink():
                raise FileExistsError(
                    f"{self.kind} {str(path)!r} is a symbolic link, which composer_cfg never writes through "
                    f"(it could point at any file): remove it, or use another run_name or filename"
                ) from None
            if isinstance(error, FileExistsError):
                raise FileExistsError(
                    f"{self.kind} {str(path)!r} already exists: pass overwrite=True to replace it, "
                    f"or use another run_name or filename"
                ) from None
            raise
        self._opened = True
        self._size_at_open = self.file.tell()  # an appended file's earlier attempts are not this run's
        return self.file

    def bytes_written(self) -> int:
        """Bytes this run added to the file that reached the OS (0 before it opens)."""
        try:
            return os.stat(self.path).st_size - self._size_at_open if self._opened else 0  # type: ignore[arg-type]
        except FileNotFoundError:  # removed under us
            return 0

    def sync(self) -> None:
        """Flush to the OS (survives the process being killed), then fsync (survives the machine)."""
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def publish(self, logger: Logger | None) -> None:
        """Offer the file to every destination of `logger` as `artifact_name` (once it exists)."""
        if logger is not None and self._opened:
            logger.file_artifact(LogLevel.FIT, self.artifact_name, literal(self.path), overwrite=True)  # type: ignore[arg-type]

    def close(self) -> None:
        """Sync and close; the file is closed even when the sync fails (a full disk)."""
        if self.file is None:
            return
        try:
            self.sync()
        finally:
            file, self.file = self.file, None
            try:
                file.close()
            except OSError:
                pass  # the sync's error is the one to report

    def location(self) -> str | None:
        """The file's path, once it exists."""
        return self.path if self._opened else None

    def known(self, what: str) -> str:
        value = self.location() if what == "filename" else self.artifact_name
        if value is None:
            raise RuntimeError(f"{what} is known only after Event.INIT or the first write")
        return value
