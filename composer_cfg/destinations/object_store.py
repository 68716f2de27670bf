"""`ObjectStoreLogger`: publish file artifacts to any fsspec URL (local, memory, S3, GCS...)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Callable

from composer_cfg.compat.destination import SinkDestination
from composer_cfg.config.params import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    CallablePath,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StoreRoot,
    StoreURL,
    TemplateParam,
    WhenFull,
    checked_delivery,
    local_root,
    positive_int,
)
from composer_cfg.core.events import Event
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.record import Record, RunFacts
from composer_cfg.core.sink import KeyedSink, Sink, SinkContext
from composer_cfg.core.state import State
from composer_cfg.core.templates import DIST_FIELDS, Template, check_artifact_name
from composer_cfg.destinations.transient import is_transient
from composer_cfg.run.files import unique_beside, write_exclusively
from composer_cfg.runtime.workers import run_bounded

LOG = logging.getLogger("composer_cfg")
OBJECT_FIELDS = {**DIST_FIELDS, "artifact_name": "run/file.txt"}
ObjectTemplate = Annotated[str, TemplateParam(OBJECT_FIELDS, artifact=True)]
ArtifactFilter = Callable[[State, LogLevel, str], bool]
ARTIFACT_FILTER = CallablePath("(state, log_level, artifact_name)")


class ObjectStoreLogger(SinkDestination):
    """Uploads every file artifact to ``<url>/<object_name>``, on threads of its own.

    Args:
        url: the root, any fsspec URL: ``file:///data/runs``, a relative path, ``memory://x``,
            ``s3://bucket/prefix``, ``gs://...``. Credentials come from the environment or from
            the file system's own configuration (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL_S3``...).
            A relative local root resolves when the destination opens, in the run's directory
            (`State.directory`), as every destination's relative paths do; `output_location`
            is the URL as given until then, the absolute root after. A local root may not be
            the run's directory or contain it: uploads would replace the files other
            destinations are writing (a live log) with snapshots.
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
        close_timeout: at close (and at a checkpoint), how long to wait for pending uploads; those
            still running after it are reported as not delivered (an unfinished S3 multipart
            upload of theirs is aborted).
        queue_size, when_full: at most `queue_size` artifacts wait or upload at once (a new
            version of a waiting one takes its place); one more makes the logging thread wait
            for room (``block``: at most `close_timeout` seconds, once per outage) or is not
            uploaded (``drop``: a warning names it, and close raises naming them all).

    The Logger copies the file before the call returns (the caller may delete it). An upload is
    atomic: a reader sees the whole object or none (local files: a temporary name, then a rename;
    object stores: one PUT, or a multipart upload completed at once). ``overwrite=False`` never
    replaces an existing object (an exclusive create, so racing writers can not both win). Per
    object name only one upload runs at a time and only the newest waiting version is kept
    (`composer_cfg.runtime.keyed_channel`). A failed upload is raised at every later
    ``batch_end``, ``epoch_end`` and ``fit_end``, and at close (through a `Logger`: once, then
    counted).
    """

    channel_kind = "keyed"
    takes_data = False
    remote = True
    event_hooks = frozenset({Event.BATCH_END, Event.EPOCH_END, Event.FIT_END})  # where failed uploads are raised

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
        self.object_name = Template(object_name, OBJECT_FIELDS, key="object_name")
        self._local_path = _local_path(url)
        self.local = self._local_path is not None
        self.storage_options = dict(storage_options or {})
        self.should_log_artifact = None if should_log_artifact is None else ARTIFACT_FILTER.check(
            "should_log_artifact", should_log_artifact)
        self.upload_workers = positive_int("num_concurrent_uploads", num_concurrent_uploads)
        self.max_retries = NON_NEGATIVE_INT.check("max_retries", max_retries)
        self.retry_backoff = float(NON_NEGATIVE.check("retry_backoff", retry_backoff))
        self.close_timeout = float(POSITIVE.check("close_timeout", close_timeout))
        self.delivery_policy = checked_delivery(queue_size, when_full, "drop", self.close_timeout)
        self._files = _FileSystem(self.url, self.storage_options)

    def can_log_file_artifacts(self) -> bool:
        return True

    def output_location(self) -> str:
        """The URL as given; once open, a local root's absolute path."""
        run = self.sink().run  # type: ignore[attr-defined]
        return self.url if run is None or not self.local else self.root(run)

    def root(self, run: RunFacts) -> str:
        """The store's root within its file system for `run`: a relative local one in the run's
        directory (`RunFacts.path`)."""
        if self._local_path is None:
            return self._files.root
        return str(run.path(self._local_path).resolve())

    def object_path(self, artifact_name: str, state: State | None = None) -> str:
        """Where `artifact_name` is stored, within the file system (``bucket/prefix/name``): for
        `state`'s run, else for the run the destination was opened for."""
        run = state.facts() if state is not None else self.sink().run  # type: ignore[attr-defined]
        if run is None:
            raise RuntimeError("object names are known only after Event.INIT or the first artifact")
        name = self.object_name.fill({**run.template_fields(), "artifact_name": artifact_name}).lstrip("/")
        check_artifact_name(name, key="object_name")
        return f"{self.root(run).rstrip('/')}/{name}"

    def get_uri_for_artifact(self, artifact_name: str) -> str:
        """The URL of `artifact_name` in the store, e.g. ``s3://bucket/prefix/run/logs.txt``."""
        return self._files.fs.unstrip_protocol(self.object_path(artifact_name))

    def wait(self, timeout: float | None = None) -> list[str]:
        """Wait until every upload so far has finished (at most `timeout` seconds); the object names
        still pending."""
        super().wait(timeout)
        channel = self.__dict__.get("_channel")
        return [] if channel is None else channel.pending()

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
        source = self.object_path(artifact_name)

        def download() -> None:
            with self._files.fs.open(source, "rb") as remote:
                write_exclusively(remote, partial)

        try:
            run_bounded(f"downloading {artifact_name!r} from {self.url}", download,
                        self.close_timeout if timeout is None else timeout)
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)

    def make_sink(self) -> Sink:
        return ObjectStoreSink(self)


def _local_path(url: str) -> Path | None:
    """The path of a local root (``file://...`` or a plain path, see `local_root`) as given,
    relative or not; None for other file systems."""
    from fsspec.core import split_protocol

    return None if local_root(url) is None else Path(split_protocol(url)[1] or ".").expanduser()


class _FileSystem:
    """The store's file system and root path within it, made on first use (it may start I/O threads)."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url, self._options = url, options
        self._made: tuple[Any, str] | None = None
        self._lock = threading.Lock()

    def _make(self) -> tuple[Any, str]:
        with self._lock:
            if self._made is None:
                from fsspec.core import url_to_fs

                self._made = url_to_fs(self._url, **self._options)
            return self._made

    @property
    def fs(self) -> Any:
        return self._made[0] if self._made is not None else self._make()[0]

    @property
    def root(self) -> str:
        return self._made[1] if self._made is not None else self._make()[1]


class ObjectStoreSink(KeyedSink):
    """Uploads an `ObjectStoreLogger`'s artifacts; `write` runs on several threads at once, one
    object name each (see `composer_cfg.runtime.keyed_channel`)."""

    def __init__(self, settings: ObjectStoreLogger) -> None:
        self._settings = settings
        self.run: RunFacts | None = None  # the run it was opened for
        self._state: Any = None
        self._in_place: set[str] = set()  # objects that are the very files published as them

    def open(self, context: SinkContext) -> None:
        self.run = context.run
        self._state = context.logger.state if context.logger is not None else State.of(context.run, context.timestamp)

    def key(self, record: Record) -> str | None:
        """The object name of an artifact record, or None to leave it out (filtered, or the object
        is the live file itself). On the calling thread."""
        settings, artifact = self._settings, record.payload
        if settings.should_log_artifact is not None and not settings.should_log_artifact(
                self._state, record.level, artifact.name):
            return None
        target = settings.object_path(artifact.name)
        if settings.local and Path(target).resolve() == Path(artifact.source).resolve():
            if target not in self._in_place:  # the object is the live file itself: a copy could only lose lines
                self._in_place.add(target)
                LOG.warning("ObjectStoreLogger: %s is already the object for artifact %r (the store holds the live "
                            "file itself); it is not copied over itself", target, artifact.name)
            return None
        return target

    def write(self, records: Sequence[Record]) -> None:
        for record in records:
            self._upload(record.payload, self._settings.object_path(record.payload.name))

    def abort(self, keys: Sequence[str]) -> None:
        """Uploads left unfinished at close: abort their S3 multipart uploads, so no parts of them
        stay in the bucket (nothing to do elsewhere)."""
        fs = self._settings._files.fs
        if type(fs).__module__.split(".")[0] != "s3fs":
            return
        for key in keys:
            bucket, _, name = key.partition("/")
            try:
                uploads = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=name).get("Uploads", [])
                for upload in uploads:
                    if upload["Key"] == name:
                        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=name, UploadId=upload["UploadId"])
            except Exception as error:  # noqa: BLE001 - said; the close goes on
                LOG.warning("ObjectStoreLogger: could not abort the unfinished upload of %s: %s: %s", key,
                            type(error).__name__, error)

    def location(self) -> str:
        return self._settings.output_location()

    def _upload(self, artifact: Any, target: str) -> None:
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

        settings = self._settings
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(settings.max_retries + 1),
                wait=wait_exponential(multiplier=settings.retry_backoff) + wait_random(0, settings.retry_backoff),
                retry=retry_if_exception(is_transient),
                before_sleep=lambda retry: self._say_retrying(target, retry),
                reraise=True,
            ):
                with attempt:
                    self._publish(artifact.path, target, artifact.overwrite)
        except FileExistsError:
            if artifact.overwrite:  # not a refusal to replace: a file where a directory of the path should be
                raise
            raise FileExistsError(f"{target} already exists and overwrite is False") from None

    def _say_retrying(self, target: str, retry: Any) -> None:
        error = retry.outcome.exception()
        LOG.warning("upload of %s failed (%s: %s); retry %d of %d in %.2g s", target, type(error).__name__, error,
                    retry.attempt_number, self._settings.max_retries, retry.next_action.sleep)

    def _publish(self, staged: Path, target: str, overwrite: bool) -> None:
        """Make `target` hold the staged file, all at once, replacing it only if `overwrite`."""
        if self._settings.local:
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
            self._settings._files.fs.put_file(str(staged), target, mode="overwrite" if overwrite else "create")
