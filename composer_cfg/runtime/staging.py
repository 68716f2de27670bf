"""`Staging`: the Logger's own copy of each published file, made once for every destination.

`Logger.file_artifact` returns at once, and the caller may change or delete the file afterwards
(a log file keeps growing; a checkpoint is replaced by the next one). So the file is copied
at the call, once, into a private directory, named as the artifact's last part (trackers name an
artifact after its file), and every destination that stores artifacts reads that copy, whenever its channel gets
to it. The copy is removed as soon as no destination holds the artifact any more (a newer version
replaced it in an upload queue, or every upload finished); what is left goes with the directory
when the Logger closes.

>>> import tempfile, pathlib
>>> staging = Staging()
>>> source = pathlib.Path(tempfile.mkdtemp()) / "log.txt"
>>> _ = source.write_text("line 1")
>>> artifact = staging.artifact("run/log.txt", source, overwrite=True)
>>> _ = source.write_text("line 1 and 2")
>>> artifact.path.name, artifact.path.read_text()
('log.txt', 'line 1')
>>> copy = artifact.path; del artifact   # no destination holds it any more
>>> copy.exists()
False
>>> staging.close()
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from pathlib import Path

from composer_cfg.core.record import Artifact


class Staging:
    """A private directory of copies (made on first use, removed by `close`)."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._lock = threading.Lock()

    def artifact(self, name: str, path: Path, overwrite: bool) -> Artifact:
        """The artifact `name`, holding a copy of the file at `path`, removed with the artifact. A
        file that is not there is not an error here (as in Composer): the destinations that read
        it say so."""
        try:
            copy = self._copy(path, name.rpartition("/")[2])
        except FileNotFoundError:
            return Artifact(name, path, overwrite)
        artifact = Artifact(name, copy, overwrite, source=path)
        weakref.finalize(artifact, shutil.rmtree, copy.parent, True)
        return artifact

    def _copy(self, path: Path, file_name: str) -> Path:
        """A copy of the file at `path`, named `file_name`, in a directory of its own."""
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="composer_cfg-staging-"))
            root = self._root
        directory = Path(tempfile.mkdtemp(dir=root))
        try:
            return Path(shutil.copyfile(path, directory / file_name))
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def close(self) -> None:
        """Remove every copy still here."""
        with self._lock:
            root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
