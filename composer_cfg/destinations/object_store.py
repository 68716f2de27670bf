"""`ObjectStoreLogger`: publish file artifacts to any fsspec URL (local, memory, S3, GCS...)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable

from composer_cfg.destination import LoggerDestination
from composer_cfg.log_level import LogLevel
from composer_cfg.params import PositiveInt, TemplateParam, positive_int
from composer_cfg.state import State
from composer_cfg.templates import DIST_FIELDS, Template, check_artifact_name

if TYPE_CHECKING:
    from composer_cfg.logger import Logger

LOG = logging.getLogger("composer_cfg")
OBJECT_FIELDS = {**DIST_FIELDS, "artifact_name": "run/file.txt"}
ObjectTemplate = Annotated[str, TemplateParam(OBJECT_FIELDS, artifact=True)]
ArtifactFilter = Callable[[State, LogLevel, str], bool]
_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN}
_TRANSIENT_NAMES = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError")
_TRANSIENT_WORDS = ("SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError", "Throttl", "503", "500")


class ObjectStoreLogger(LoggerDestination):
    """Uploads every file artifact to ``<url>/<object_name>``, in background threads.

    Args:
        url: the root, any fsspec URL: ``file:///data/runs``, a relative path, ``memory://x``,
            ``s3://bucket/prefix``, ``gs://...``. Credentials come from the environment or from
            the file system's own configuration (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL_S3``...).
        object_name: template of the object's name: ``{artifact_name}`` plus the dist fields.
        storage_options: keyword arguments of the fsspec file system (not credentials: those
            belong in the environment, where no config print or saved config shows them).
        should_log_artifact: a ``(state, log_level, artifact_name) -> bool`` filter, or its
            import path (``my_module.my_filter``); default: every artifact.
        num_concurrent_uploads: upload threads.
        max_retries, retry_backoff: a transient error (connection reset, time-out, throttling)
            is retried up to `max_retries` times, waiting ``retry_backoff * 2**attempt`` seconds.

    The file is copied to a staging directory before `log_file_artifact` returns (the caller
    may delete it). An upload is atomic: a reader sees the whole object or none (local files:
    a temporary name, then a rename; object stores: one PUT). ``overwrite=False`` never replaces
    an existing object (an exclusive create, so racing writers can not both win). A failed
    upload is raised at the next event and at `close`, which first waits for pending uploads.
    """

    def __init__(
        self,
        url: str,
        object_name: ObjectTemplate = "{artifact_name}",
        *,
        storage_options: dict[str, Any] | None = None,
        should_log_artifact: str | ArtifactFilter | None = None,
        num_concurrent_uploads: PositiveInt = 4,
        max_retries: int = 4,
        retry_backoff: float = 1.0,
    ) -> None:
        from fsspec.core import url_to_fs

        self.url = url
        self._object_name = Template(object_name, OBJECT_FIELDS, key="object_name")
        self._fs, self._root = url_to_fs(url, **(storage_options or {}))
        self._local = "file" in _protocols(self._fs)
        self._filter = _load_filter(should_log_artifact)
        self._workers = positive_int("num_concurrent_uploads", num_concurrent_uploads)
        self.max_retries = int(max_retries)
        self.retry_backoff = float(retry_backoff)
        self._executor: ThreadPoolExecutor | None = None
        self._staging: Path | None = None
        self._pending: list[Future[None]] = []
        self._failures: list[Exception] = []
        self._reported = 0
        self._lock = threading.Lock()
        self._fields: dict[str, Any] | None = None

    def can_log_file_artifacts(self) -> bool:
        return True

    def output_location(self) -> str:
        return self.url

    def object_path(self, artifact_name: str, state: State | None = None) -> str:
        """Where `artifact_name` is stored, within the file system (``bucket/prefix/name``)."""
        if state is not None:
            self._fields = {"run_name": state.run_name, **state.dist.template_fields()}
        if self._fields is None:
            raise RuntimeError("object names are known only after Event.INIT or the first artifact")
        name = self._object_name.fill({**self._fields, "artifact_name": artifact_name}).lstrip("/")
        check_artifact_name(name, key="object_name")
        return f"{self._root.rstrip('/')}/{name}"

    def log_file_artifact(
        self, state: State, log_level: LogLevel, artifact_name: str, file_path: Path, *, overwrite: bool
    ) -> None:
        if self._filter is not None and not self._filter(state, log_level, artifact_name):
            return
        target = self.object_path(artifact_name, state)
        staged = self._staging_dir() / f"{uuid.uuid4().hex}-{Path(artifact_name).name}"
        shutil.copyfile(file_path, staged)
        future = self._pool().submit(self._upload, staged, target, overwrite)
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [future]

    def get_file_artifact(
        self, artifact_name: str, destination: str | Path, overwrite: bool = False, progress_bar: bool = True
    ) -> None:
        """Download `artifact_name` to `destination` (an existing file is an error unless `overwrite`)."""
        destination = Path(destination)
        if destination.exists() and not overwrite:
            raise FileExistsError(f"{destination} exists: pass overwrite=True to replace it")
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.partial")
        self._fs.get_file(self.object_path(artifact_name), str(partial))
        os.replace(partial, destination)

    def wait(self) -> None:
        """Block until every upload so far has finished (successfully or not)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            future.exception()

    # -- events: failures surface here --------------------------------------------------------

    def init(self, state: State, logger: Logger) -> None:
        self._fields = {"run_name": state.run_name, **state.dist.template_fields()}

    def batch_end(self, state: State, logger: Logger) -> None:
        self._raise_failures()

    def epoch_end(self, state: State, logger: Logger) -> None:
        self._raise_failures()

    def fit_end(self, state: State, logger: Logger) -> None:
        self._raise_failures()

    def close(self, state: State, logger: Logger) -> None:
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        self._raise_failures()

    # -- internals ---------------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="composer_cfg-upload")
        return self._executor

    def _staging_dir(self) -> Path:
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="composer_cfg-staging-"))
        return self._staging

    def _upload(self, staged: Path, target: str, overwrite: bool) -> None:
        try:
            for attempt in range(self.max_retries + 1):
                try:
                    self._publish(staged, target, overwrite)
                    return
                except FileExistsError:
                    raise FileExistsError(f"{target} already exists and overwrite is False") from None
                except Exception as error:  # noqa: BLE001 - classified below
                    if attempt == self.max_retries or not _is_transient(error):
                        raise
                    delay = self.retry_backoff * 2**attempt
                    LOG.warning("upload of %s failed (%s: %s); retry %d of %d in %.2g s", target,
                                type(error).__name__, error, attempt + 1, self.max_retries, delay)
                    time.sleep(delay)
        except Exception as error:
            with self._lock:
                self._failures.append(error)
            raise
        finally:
            staged.unlink(missing_ok=True)

    def _publish(self, staged: Path, target: str, overwrite: bool) -> None:
        """Make `target` hold the staged file, all at once, replacing it only if `overwrite`."""
        if self._local:
            final = Path(target)
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = final.with_name(f".{final.name}.{uuid.uuid4().hex}.partial")
            shutil.copyfile(staged, partial)
            try:
                if overwrite:
                    os.replace(partial, final)
                else:
                    os.link(partial, final)  # fails if final exists: an atomic no-clobber rename
            finally:
                partial.unlink(missing_ok=True)
        else:
            self._fs.put_file(str(staged), target, mode="overwrite" if overwrite else "create")

    def _raise_failures(self) -> None:
        with self._lock:
            new = self._failures[self._reported :]
            self._reported = len(self._failures)
        if new:
            more = f" (and {len(new) - 1} more failed uploads)" if len(new) > 1 else ""
            raise RuntimeError(f"artifact upload failed: {type(new[0]).__name__}: {new[0]}{more}") from new[0]


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _is_transient(error: Exception) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
        return True
    if type(error).__name__ in _TRANSIENT_NAMES:
        return True
    return any(word in str(error) for word in _TRANSIENT_WORDS)


def _load_filter(spec: str | ArtifactFilter | None) -> ArtifactFilter | None:
    if spec is None or callable(spec):
        return spec
    from composer_cfg.config.validate import locate

    found = locate(spec.replace(":", "."))
    if not callable(found):
        raise TypeError(f"should_log_artifact: {spec!r} is not callable")
    return found
