"""`RunFile`: a file a sink writes for a run, named by templates, published when flushed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Mapping

from composer_cfg.config.params import ARTIFACT_NAME, FILE, check_published_path, require_rank_field
from composer_cfg.core.record import RunFacts
from composer_cfg.core.sink import Publish, Sink
from composer_cfg.core.templates import default_artifact_name
from composer_cfg.run.files import open_text


def check_file_names(filename: str, artifact_name: str | None) -> None:
    """A file published under its own path (`artifact_name` None) may use ``..`` only at the start."""
    if artifact_name is None:
        check_published_path(filename, key="filename", hint="; or name the artifact with artifact_name")


class RunFileParams:
    """The checks a destination writing a `RunFile` shares (`check_config`), and the names it
    reports once its sink has opened the file."""

    @classmethod
    def check_config(cls, params: Mapping[str, Any], world_size: int) -> None:
        if isinstance(params.get("filename"), str):
            check_file_names(params["filename"], params.get("artifact_name"))

    @property
    def filename(self) -> str:
        """The file's name, as its template filled it (``run/logs-rank0.txt``); known once the file
        is open (at INIT or the first record)."""
        return self.sink().run_file.known("name")  # type: ignore[attr-defined]

    @property
    def artifact_name(self) -> str:
        """The name the file is published under."""
        return self.sink().run_file.known("artifact_name")  # type: ignore[attr-defined]


class RunFileSink(Sink):
    """A sink writing one `RunFile` (`run_file`): who it is, where, and what it wrote."""

    run_file: RunFile

    def identity(self) -> dict[str, Any]:
        return {"filename": self.run_file.path} if self.run_file.path else {}

    def report(self) -> dict[str, Any]:
        """``bytes_written``: what this run added to its file so far, as far as the OS has it."""
        return {"bytes_written": self.run_file.bytes_written()}

    def location(self) -> str | None:
        return self.run_file.path


class RunFile:
    """One file per rank (``filename`` template), opened by its sink.

    `overwrite=False` refuses to replace an existing file; a symbolic link at the path is never
    written through, whatever `overwrite` says. The path is made absolute when the file opens, so
    a later change of working directory does not move it. `resumed`: add to the file an earlier
    attempt wrote (after cutting a line it left half written), instead of creating it.
    """

    def __init__(self, kind: str, filename: str, artifact_name: str | None, *, overwrite: bool, buffering: int = -1):
        self.kind = kind
        self._filename = FILE.check("filename", filename)
        check_file_names(filename, artifact_name)
        artifact = default_artifact_name(filename) if artifact_name is None else artifact_name
        self._artifact_name = ARTIFACT_NAME.check("artifact_name", artifact, 1)
        self.overwrite = bool(overwrite)
        self.buffering = buffering
        self.file: IO[str] | None = None
        self.name: str | None = None  # the filled template, as given (relative or not)
        self.path: str | None = None  # absolute
        self.artifact_name: str | None = None
        self._size_at_open = 0

    def open(self, run: RunFacts, append: bool) -> IO[str]:
        """Create the file for this run and rank (and its directory); with `append`, add to it."""
        require_rank_field(self._filename, run.dist.world_size, key="filename")
        fields = run.template_fields()
        name = self._filename.fill(fields)
        path = run.path(name)
        self.artifact_name = self._artifact_name.fill(fields)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.file = open_text(path, overwrite=self.overwrite, buffering=self.buffering, append=append)
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
        self.name, self.path = name, str(path)
        self._size_at_open = os.fstat(self.file.fileno()).st_size  # what earlier attempts wrote is not this one's
        return self.file

    def bytes_written(self) -> int:
        """Bytes this run added to the file that reached the OS (0 before it opens)."""
        if self.path is None:
            return 0
        try:
            return os.stat(self.path).st_size - self._size_at_open
        except FileNotFoundError:  # removed under us
            return 0

    def sync(self) -> None:
        """Flush to the OS (survives the process being killed), then fsync (survives the machine)."""
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def publish(self, publish: Publish) -> None:
        """Offer the file to every destination that stores artifacts, as `artifact_name`."""
        if self.path is not None:
            publish(self.artifact_name, Path(self.path), True)  # type: ignore[arg-type]

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

    def known(self, what: str) -> str:
        """`name`, `path` or `artifact_name`, once the file is open."""
        value = getattr(self, what)
        if value is None:
            raise RuntimeError(f"{what} is known only after Event.INIT or the first write")
        return value
