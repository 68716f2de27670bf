"""`ObjectStoreLogger`: publish file artifacts to any fsspec URL (local, memory, S3, GCS...)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable

from composer_cfg.background import FINALIZE_RESERVE, BackgroundWorker, budget
from composer_cfg.delivery import DeliveryPolicy
from composer_cfg.destination import LoggerDestination
from composer_cfg.destinations.transient import is_transient
from composer_cfg.destinations.uploads import UploadQueue
from composer_cfg.run.files import unique_beside, write_exclusively
from composer_cfg.core.log_level import LogLevel
from composer_cfg.config.params import (
    NON_NEGATIVE,
    CallablePath,
    NON_NEGATIVE_INT,
    POSITIVE,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StoreRoot,
    StoreURL,
    TemplateParam,
    WhenFull,
    local_root,
    positive_int,
)
from composer_cfg.core.state import State
from composer_cfg.core.templates import DIST_FIELDS, Template, check_artifact_name

if TYPE_CHECKING:
    from composer_cfg.logger import Logger

LOG = logging.getLogger("composer_cfg")
OBJECT_FIELDS = {**DIST_FIELDS, "artifact_name": "run/file.txt"}
ObjectTemplate = Annotated[str, TemplateParam(OBJECT_FIELDS, artifact=True)]
ArtifactFilter = Callable[[State, LogLevel, str], bool]
ARTIFACT_FILTER = CallablePath("(state, log_level, artifact_name)")


class ObjectStoreLogger(LoggerDestination):
    """Uploads every file artifact to ``<url>/<object_name>``, in background threads.

    Args:
        url: the root, any fsspec URL: ``file:///data/runs``, a relative path, ``memory://x``,
            ``s3://bucket/prefix``, ``gs://...``. Credentials come from the environment or from
            the file system's own configuration (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL_S3``...).
            A local root may not be the working directory or contain it: uploads would replace
            the files other destinations are writing (a live log) with snapshots.
        object_name: template of the object's name: ``{artifact_name}`` plus the dist fields.
        storage_options: keyword arguments of the fsspec file system (not credentials: those
            belong in the environment, where no config print or saved config shows them).
        should_log_artifact: a ``(state, log_level, artifact_name) -> bool`` filter, or its
            import path (``my_module.my_filter``); default: every artifact.
        num_concurrent_uploads: upload threads.
        max_retries, retry_backoff: a transient error (connection refused, reset or timed out,
            throttling, HTTP 5xx: see `composer_cfg.destinations.transient`) is retried up to
            `max_retries` times, waiting about ``retry_backoff * 2**attempt`` seconds plus a random
            jitter of up to `retry_backoff`.
        close_timeout: at close, how long to wait for pending uploads; those still running after
            it are reported as not delivered.
        queue_size, when_full: at most `queue_size` artifacts wait or upload at once (a new
            version of a waiting one takes its place); one more makes the logging thread wait
            for room (``block``: at most `close_timeout` seconds, once per outage) or is not
            uploaded (``drop``: a warning names it, and `post_close` raises naming them all).

    The file is copied to a staging directory before `log_file_artifact` returns (the caller
    may delete it). An upload is atomic: a reader sees the whole object or none (local files:
    a temporary name, then a rename; object stores: one PUT). ``overwrite=False`` never replaces
    an existing object (an exclusive create, so racing writers can not both win). Per object name
    only one upload runs at a time and only the newest waiting version is kept (`UploadQueue`).
    A failed upload is raised at every later ``batch_end``, ``epoch_end`` and ``fit_end`` and after
    pending uploads finish, in `post_close` (through a `Logger`: once, then counted).
    """

    thread_safe = True
    remote = True

    def __init__(
        self,
        url: StoreURL,
        object_name: ObjectTemplate = "{artifact_name}",
        *,
        storage_options: dict[str, Any] | None = None,
        should_log_artifact: Annotated[str | ArtifactFilter, ARTIFACT_FILTER] | None = None,
        num_concurrent_uploads: PositiveInt = 4,
        max_retries: NonNegativeInt = 4,
        retry_backoff: NonNegativeFloat = 1.0,
        close_timeout: PositiveFloat = 120.0,
        queue_size: PositiveInt = 100,
        when_full: WhenFull = "block",
    ) -> None:
        self.url = StoreRoot().check("url", url)  # a known protocol whose package is installed
        self._object_name = Template(object_name, OBJECT_FIELDS, key="object_name")
        self._local = local_root(url) is not None
        self._storage_options = dict(storage_options or {})
        self._filesystem: tuple[Any, str] | None = None  # made on first use: it may start I/O threads
        self._filter = None if should_log_artifact is None else ARTIFACT_FILTER.check("should_log_artifact",
                                                                                    should_log_artifact)
        self.max_retries = NON_NEGATIVE_INT.check("max_retries", max_retries)
        self.retry_backoff = float(NON_NEGATIVE.check("retry_backoff", retry_backoff))
        self.close_timeout = float(POSITIVE.check("close_timeout", close_timeout))
        policy = DeliveryPolicy.checked(queue_size, when_full, "drop", self.close_timeout)
        self._uploads = UploadQueue(self._upload, positive_int("num_concurrent_uploads", num_concurrent_uploads),
                                    policy=policy)
        self._staging: Path | None = None
        self._lock = threading.Lock()
        self._fields: dict[str, Any] | None = None
        self._in_place: set[str] = set()  # objects that are the very files published as them

    def can_log_file_artifacts(self) -> bool:
        return True

    def output_location(self) -> str:
        return self.url

    def object_path(self, artifact_name: str, state: State | None = None) -> str:
        """Where `artifact_name` is stored, within the file system (``bucket/prefix/name``)."""
        if state is not None:
            self._fields = state.template_fields()
        if self._fields is None:
            raise RuntimeError("object names are known only after Event.INIT or the first artifact")
        name = self._object_name.fill({**self._fields, "artifact_name": artifact_name}).lstrip("/")
        check_artifact_name(name, key="object_name")
        return f"{self._fs_and_root()[1].rstrip('/')}/{name}"

    def get_uri_for_artifact(self, artifact_name: str) -> str:
        """The URL of `artifact_name` in the store, e.g. ``s3://bucket/prefix/run/logs.txt``."""
        return self._fs_and_root()[0].unstrip_protocol(self.object_path(artifact_name))

    def log_file_artifact(
        self, state: State, log_level: LogLevel, artifact_name: str, file_path: Path, *, overwrite: bool
    ) -> None:
        if self._filter is not None and not self._filter(state, log_level, artifact_name):
            return
        target = self.object_path(artifact_name, state)
        if self._local and Path(target).resolve() == Path(file_path).resolve():
            if target not in self._in_place:  # the object is the live file itself: a copy could only lose lines
                self._in_place.add(target)
                LOG.warning("ObjectStoreLogger: %s is already the object for artifact %r (the store holds the live "
                            "file itself); it is not copied over itself", target, artifact_name)
            return
        if self._uploads.stopped:
            raise RuntimeError(f"ObjectStoreLogger for {self.url} is closed: it takes no more artifacts")
        staged = self._stage(file_path, artifact_name)
        try:
            queued = self._uploads.submit(target, staged, overwrite)
        except Exception:
            staged.unlink(missing_ok=True)
            raise
        if not queued:
            staged.unlink(missing_ok=True)
            LOG.warning("ObjectStoreLogger: the upload queue to %s is full; artifact %r is not uploaded", self.url,
                        artifact_name)

    def report(self) -> dict[str, Any]:
        """The upload queue's counts (`UploadQueue.report`)."""
        return self._uploads.report()

    def get_file_artifact(
        self, artifact_name: str, destination: str | Path, overwrite: bool = False, progress_bar: bool = True,
        *, timeout: float | None = None,
    ) -> None:
        """Download `artifact_name` to `destination` (an existing file is an error unless `overwrite`),
        waiting at most `timeout` seconds (default `close_timeout`); the file appears whole or not at all."""
        destination = Path(destination)
        if destination.exists() and not overwrite:
            raise FileExistsError(f"{destination} exists: pass overwrite=True to replace it")
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = unique_beside(destination)
        worker = BackgroundWorker("download")
        try:
            worker.call(f"downloading {artifact_name!r} from {self.url}", self._download, artifact_name, partial,
                        timeout=self.close_timeout if timeout is None else timeout)
            os.replace(partial, destination)
        finally:
            worker.stop()
            partial.unlink(missing_ok=True)

    def _download(self, artifact_name: str, partial: Path) -> None:
        with self._fs_and_root()[0].open(self.object_path(artifact_name), "rb") as source:
            write_exclusively(source, partial)

    def wait(self, timeout: float | None = None) -> list[str]:
        """Wait until every upload so far has finished (at most `timeout` seconds); return the object
        names still pending."""
        return self._uploads.drain(timeout)

    # -- events: failures surface here --------------------------------------------------------

    def init(self, state: State, logger: Logger) -> None:
        self._fields = state.template_fields()

    def batch_end(self, state: State, logger: Logger) -> None:
        self._raise_failures()

    def epoch_end(self, state: State, logger: Logger) -> None:
        self._raise_failures()

    def fit_end(self, state: State, logger: Logger) -> None:
        self._raise_failures()

    def post_close(self) -> None:
        """Wait (at most `close_timeout` seconds) for the uploads, including the final ones other
        destinations published while closing; then report what failed or did not finish."""
        allowed = budget(self.close_timeout, FINALIZE_RESERVE)  # less when a SIGTERM is ending the process
        try:
            undelivered = self._uploads.drain(allowed)
            self._uploads.stop()
            if undelivered:
                raise TimeoutError(f"{len(undelivered)} upload(s) to {self.url} did not finish within "
                                   f"{allowed:.3g} s: {', '.join(undelivered)}")
            if self._uploads.dropped:
                raise RuntimeError(f"{len(self._uploads.dropped)} artifact(s) were not uploaded to {self.url}: the "
                                   f"upload queue was full: {', '.join(self._uploads.dropped)}")
            self._raise_failures()
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging = None

    # -- internals ---------------------------------------------------------------------------

    def _fs_and_root(self) -> tuple[Any, str]:
        """The file system and the root path within it (made on first use)."""
        if self._filesystem is None:
            from fsspec.core import url_to_fs

            with self._lock:
                if self._filesystem is None:
                    self._filesystem = url_to_fs(self.url, **self._storage_options)
        return self._filesystem

    def _stage(self, file_path: Path, artifact_name: str) -> Path:
        """A private copy of the file (the caller may change or delete it once we return)."""
        with self._lock:
            if self._staging is None:
                self._staging = Path(tempfile.mkdtemp(prefix="composer_cfg-staging-"))
            staging = self._staging
        handle, staged = tempfile.mkstemp(dir=staging, suffix=f"-{Path(artifact_name).name}")
        os.close(handle)
        shutil.copyfile(file_path, staged)
        return Path(staged)

    def _upload(self, staged: Path, target: str, overwrite: bool) -> None:
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.max_retries + 1),
                wait=wait_exponential(multiplier=self.retry_backoff) + wait_random(0, self.retry_backoff),
                retry=retry_if_exception(is_transient),
                before_sleep=lambda retry: self._say_retrying(target, retry),
                reraise=True,
            ):
                with attempt:
                    self._publish(staged, target, overwrite)
        except FileExistsError:
            if overwrite:  # not a refusal to replace: a file where a directory of the path should be
                raise
            raise FileExistsError(f"{target} already exists and overwrite is False") from None
        finally:
            staged.unlink(missing_ok=True)

    def _say_retrying(self, target: str, retry: Any) -> None:
        error = retry.outcome.exception()
        LOG.warning("upload of %s failed (%s: %s); retry %d of %d in %.2g s", target, type(error).__name__, error,
                    retry.attempt_number, self.max_retries, retry.next_action.sleep)

    def _publish(self, staged: Path, target: str, overwrite: bool) -> None:
        """Make `target` hold the staged file, all at once, replacing it only if `overwrite`."""
        if self._local:
            final = Path(target)
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = unique_beside(final)
            try:
                with open(staged, "rb") as source:
                    write_exclusively(source, partial)
                if overwrite:
                    os.replace(partial, final)
                else:
                    os.link(partial, final)  # fails if final exists: an atomic no-clobber rename
            finally:
                partial.unlink(missing_ok=True)
        else:
            self._fs_and_root()[0].put_file(str(staged), target, mode="overwrite" if overwrite else "create")

    def _raise_failures(self) -> None:
        """From the first failed upload on, raise the latest at every call (as Composer raised at
        every event once an upload worker had died). The `Logger` raises each distinct failure
        once and counts the repeats, so a run driven by a Logger sees each failure once."""
        failures = list(self._uploads.failures)  # a snapshot: uploads may fail meanwhile
        if failures:
            latest = failures[-1]
            so_far = f" ({len(failures)} failed uploads so far)" if len(failures) > 1 else ""
            raise RuntimeError(f"artifact upload failed: {type(latest).__name__}: {latest}{so_far}") from latest

