"""`MLFlowLogger`: metrics, parameters and artifacts in an MLflow tracking store."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Mapping

from filelock import FileLock

from composer_cfg.compat.destination import SinkDestination
from composer_cfg.config.params import (
    POSITIVE,
    Level,
    NameTemplate,
    PositiveFloat,
    PositiveInt,
    Undelivered,
    WhenFull,
    checked_delivery,
    launch_directory,
    positive_int,
)
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.hyperparameters import flatten
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.media import KINDS
from composer_cfg.core.record import Kind, Record, RunFacts
from composer_cfg.core.secrets import redact, redact_text
from composer_cfg.core.sink import Sink, SinkContext, refuse
from composer_cfg.core.status import RunStatus
from composer_cfg.core.templates import DIST_FIELDS, Template
from composer_cfg.core.values import scalar
from composer_cfg.destinations.mlflow_params import ExperimentName, RunTags, TrackingURI, file_store_path
from composer_cfg.destinations.mlflow_params import first_sentence as _first_sentence
from composer_cfg.destinations.mlflow_params import sqlite_path as _sqlite_path
from composer_cfg.destinations.mlflow_media import Refused, uploads
from composer_cfg.destinations.steps import refused_step, storable

LOG = logging.getLogger("composer_cfg")
_SUPPRESS_URLS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"  # MLflow's own switch for its "View run" lines
_QUIET_URLS = threading.Lock()
MAX_ENTITIES_PER_BATCH = 1000  # a tracking server's per-request limits
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 5000
#: The tag naming a resumable run (its own id, from its manifest) and rank on its MLflow run: an
#: attempt stopped before it recorded its MLflow run is continued in it.
RUN_TAG = "composer_cfg.run"
#: The project's store (the default), in the directory the program was started from.
PROJECT_STORE = "mlflow.db"
#: Where MLflow says it creates a SQLite store's tables.
_STORE_CREATION_LOG = "mlflow.store.db.utils"


class MLFlowLogger(SinkDestination):
    """Sends metrics (``step=batch``), FIT data as parameters, and artifacts to MLflow.

    Args:
        tracking_uri: template of the store's URI. None (the default): the project's store, a
            SQLite database ``mlflow.db`` in the directory the program was started from (Hydra's
            original working directory inside a Hydra job), shared by every run and sweep started
            there, so one ``mlflow ui`` shows them all; created once (one process at a time) and
            quietly. A real store, nothing to run.
        experiment_name: created on first use; a new one keeps its artifacts beside a SQLite
            store (``<db dir>/mlartifacts``), apart from the runs' own files.
        run_name: template of the MLflow run's name (default: the run name).
        log_level: threshold. EPOCH and BATCH numbers become metrics; FIT data becomes
            parameters (nested dicts flattened with ``/``; keys over 250 and values over 6000
            characters truncated, with a warning).
        flush_interval: what was logged is sent every n batches (at ``batch_end``), at epoch end,
            at close, and when 256 calls wait or one waited a second: one ``log_batch`` request
            for all of it, not one per value.
        flush_seconds: also send at the first event once this many seconds have passed since the
            last flush; None: off.
        rank_zero_only: only global rank 0 talks to the tracking store.
        tags: tags of the MLflow run; the value of a secret-named tag (``api_token``) is stored
            masked, as is a URL's password in any tag (`composer_cfg.core.secrets`). The tracking
            URI's password is masked in messages; when there is one, MLflow's own "View run"
            lines, which would show it, are not printed.
        timeout: the longest, in seconds, the training thread waits for the tracking store: when
            the run starts at `Event.INIT`, for room in a full queue (``block``), at a checkpoint,
            and at close (delivering what is left, then ending the run).
        queue_size, when_full, undelivered: the delivery queue (`composer_cfg.core.sink.DeliveryPolicy`):
            at most `queue_size` logged calls wait for the store; when it is full the training
            thread does not wait (``drop``, the default) or waits for room (``block``, at most
            `timeout` seconds, once per outage); what is given up, then, at a checkpoint the store
            did not answer in time, or at close, is appended to
            ``{run_name}/undelivered-<name>-rank<rank>.jsonl`` (``spool``: ``composer-cfg-sync``
            adds it to the same MLflow run later) or lost (``drop``), and counted.

    Images, tables and histograms (`Logger.log_images`, `log_table`, `log_histogram`) are shown
    as MLflow shows them, at the call's step (`composer_cfg.destinations.mlflow_media`): images
    with ``MlflowClient.log_image`` under the key ``<name>`` (``<name>.0``, ``<name>.1``... when a
    call logs several), masks as colour images of their own (needs Pillow); tables with
    ``log_table`` as ``tables/<name>/step<step>.json`` (needs pandas); histograms as
    ``histograms/<name>/step<step>.json``.

    Every request runs in order on a thread of the destination's own: logging only queues, so a
    slow or hung server never stalls training. A metric name MLflow refuses (``acc@1``, a
    300-character name) is a `ValueError` raised at the next call or flush point, naming it; the
    call's other metrics are sent. So is an image, table or histogram that can not be sent
    (pandas or Pillow missing); the rest is sent. A request that fails is sent again at the next
    flush point (MLflow keeps one copy of a point sent twice; of a media record, the uploads made
    already are not made again; but one given up part-way, to the spool, is sent whole by the sync
    that delivers it: its first images may then show twice). Closing ends the run FINISHED, FAILED or KILLED and releases the store's connections.
    """

    hyperparameters_as_fit_data = True
    channel_kind = "thread"
    remote = True
    holds_until_checkpoint = True  # MLflow has no way to delete a metric's points
    shows_media = frozenset(KINDS)
    requires = {"mlflow": "mlflow", "sqlalchemy": "mlflow", "alembic": "mlflow", "PIL": "mlflow", "pandas": "mlflow"}

    def __init__(
        self,
        tracking_uri: Annotated[str, TrackingURI()] | None = None,
        experiment_name: Annotated[str, ExperimentName()] = "composer_cfg",
        run_name: NameTemplate = "{run_name}",
        *,
        log_level: Level = LogLevel.BATCH,
        flush_interval: PositiveInt = 100,
        flush_seconds: PositiveFloat | None = None,
        rank_zero_only: bool = True,
        tags: Annotated[Mapping[str, str], RunTags()] | None = None,
        timeout: PositiveFloat = 30.0,
        queue_size: PositiveInt = 10_000,
        when_full: WhenFull = "drop",
        undelivered: Undelivered = "spool",
    ) -> None:
        self.tracking_uri_template = None if tracking_uri is None else Template(tracking_uri, DIST_FIELDS,
                                                                                 key="tracking_uri")
        self.run_name_template = Template(run_name, DIST_FIELDS, key="run_name")
        self.experiment_name = experiment_name
        self.log_level = LogLevel.parse(log_level)
        self.flush_interval = positive_int("flush_interval", flush_interval)
        self.flush_schedule = FlushSchedule(self.flush_interval, LogLevel.BATCH, seconds=flush_seconds)
        self.flush_seconds = self.flush_schedule.seconds
        self.rank_zero_only = bool(rank_zero_only)
        self.tags = redact(dict(tags or {}))
        self.timeout = float(POSITIVE.check("timeout", timeout))
        self.delivery_policy = checked_delivery(queue_size, when_full, undelivered, self.timeout)

    def join_sweep(self, sweep: str, overrides: Sequence[str]) -> None:
        """Tags ``sweep`` (the sweep's id) and ``sweep.overrides`` (the job's, one string) on the run."""
        self.tags = {**self.tags, "sweep": sweep, "sweep.overrides": " ".join(overrides)[:MAX_TAG_VALUE]}

    def can_log_file_artifacts(self) -> bool:
        return True

    @property
    def run_id(self) -> str | None:
        """The MLflow run's id, once it exists."""
        return self.sink().run_id  # type: ignore[attr-defined]

    @property
    def tracking_uri(self) -> str | None:
        """The store's URI, once the run started (a SQLite path made absolute)."""
        return self.sink().tracking_uri  # type: ignore[attr-defined]

    @property
    def shown_uri(self) -> str | None:
        """The tracking URI as messages show it: a password in it masked."""
        return None if self.tracking_uri is None else redact_text(self.tracking_uri)

    def make_sink(self) -> Sink:
        return MLflowSink(self)

    def store_uri(self, run: RunFacts) -> str:
        """The URI of the store `run` logs to (a SQLite path as given)."""
        if self.tracking_uri_template is None:
            return f"sqlite:///{launch_directory() / PROJECT_STORE}"
        return self.tracking_uri_template.fill(run.template_fields())

    def sync_target(self, run: RunFacts) -> str:
        """The store: a local one by its absolute path, any other by its URI (password masked)."""
        return redact_text(_absolute_local_uri(self.store_uri(run), run, create=False))

    def refuses(self, record: Record) -> str | None:
        """The metric and parameter names MLflow would refuse (``acc@1``, a 300-character name), by
        its own rules, said at the call that logs them; the sink leaves them out."""
        if record.kind is Kind.MEDIA:  # its name becomes a key the sink makes acceptable
            return refused_step(record)
        if record.level is LogLevel.FIT:
            refused = [f"{key!r} ({reason})" for key in flatten(record.payload)
                       if (reason := self.refused_name(_param_key(key), _validate_param)) is not None]
            what = "parameter name(s) {}; the others were logged"
        else:
            refused = [f"{key!r} ({reason})" for key in record.payload
                       if (reason := self.refused_name(key, _validate_metric)) is not None]
            what = "metric name(s) {}; the call's other metrics were logged"
        return refused_step(record) or (f"MLflow refuses the {what.format(', '.join(refused))}" if refused else None)

    def refused_name(self, key: str, validate: Any) -> str | None:
        """Why MLflow refuses `key` (`validate`: its rule for metrics or parameters), or None;
        each name is checked once."""
        known = self.__dict__.setdefault("_names", {})
        if (validate, key) not in known:
            try:
                validate(key)
                known[validate, key] = None
            except Exception as error:  # noqa: BLE001 - MlflowException; its message says why
                known[validate, key] = _first_sentence(error)
        return known[validate, key]


class MLflowSink(Sink):
    """Sends an `MLFlowLogger`'s records, on its channel's thread (see there)."""

    def __init__(self, settings: MLFlowLogger) -> None:
        self._settings = settings
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self._client: Any = None
        self._skipped: set[str] = set()  # keys whose values are not numbers (said once)
        self._params: dict[str, str] = {}  # parameters the store has
        self._artifacts: set[str] = set()
        # Media records of a write that failed, by id: how many of their uploads were sent (None:
        # all, or refused); a remote sink's records are written again, and these are not sent twice.
        self._shown: dict[int, tuple[Record, int | None]] = {}
        self._legends: dict[str, Any] = {}  # images name -> the mask legend the run has

    @property
    def shown_uri(self) -> str | None:
        return None if self.tracking_uri is None else redact_text(self.tracking_uri)

    def open(self, context: SinkContext) -> None:
        from mlflow import MlflowClient

        settings, fields = self._settings, context.run.template_fields()
        uri = self.tracking_uri = _absolute_local_uri(settings.store_uri(context.run), context.run)
        database = _sqlite_path(uri)
        with _creating(database):
            self._client = MlflowClient(tracking_uri=uri)
            experiment_id = self._experiment(settings.experiment_name, database)
        key = context.run_key and f"{context.run_key} rank {context.run.rank}"  # a resumable run's, in every attempt
        resumed = (context.resumed or {}).get("run_id") or (key and self._unrecorded(experiment_id, key))
        if resumed:
            run = self._client.get_run(resumed)  # an unknown id raises, naming it
            self._client.update_run(resumed, status="RUNNING")
            self.run_id = resumed
            self._params = dict(run.data.params)  # one an attempt changes is said and left out, as within a run
            return
        tags = {**settings.tags, RUN_TAG: key} if key else settings.tags
        self.run_id = self._client.create_run(experiment_id, run_name=settings.run_name_template.fill(fields),
                                              tags=tags).info.run_id

    def _experiment(self, name: str, database: Path | None) -> str:
        """The id of the experiment `name`, created if missing (keeping its artifacts beside a SQLite
        store); another process creating it at the same moment is no error."""
        from mlflow.exceptions import MlflowException

        experiment = self._client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = (database.parent / "mlartifacts").as_uri() if database is not None else None
        try:
            return self._client.create_experiment(name, artifact_location=location)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self._client.get_experiment_by_name(name).experiment_id

    def _unrecorded(self, experiment_id: str, key: str) -> str | None:
        """The run an attempt of this run made and was stopped before recording (a SIGTERM while
        the destinations started): the last unfinished one tagged with `key` (the run's own id,
        in its manifest), if any. It holds nothing of that attempt: a resumable run's tracker
        receives data at checkpoints, and one would have recorded it."""
        found = self._client.search_runs([experiment_id], f"tags.`{RUN_TAG}` = '{key}' and attributes.status != 'FINISHED'",
                                         max_results=1, order_by=["attributes.start_time DESC"])
        return found[0].info.run_id if found else None

    def write(self, records: Sequence[Record]) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            raise RuntimeError(f"there is no MLflow run at {self.shown_uri}: starting it failed")
        metrics, params, refused = [], {}, None
        for record in filter(storable, records):
            if record.kind is Kind.ARTIFACT or record.kind is Kind.MEDIA:
                self._send(metrics, params)  # in order: what was logged before it first
                metrics, params = [], {}
                try:
                    self._upload(record.payload) if record.kind is Kind.ARTIFACT else self._show(record)
                except (Refused, FileExistsError) as error:  # the item itself: the rest is sent, it never is
                    refused = refuse(refused, error)
            elif record.kind is Kind.HYPERPARAMETERS or (record.kind is Kind.DATA and record.level is LogLevel.FIT):
                self._add_params(params, record.payload)
            elif record.kind is Kind.DATA:
                when, step = int(record.time * 1000), int(record.timestamp.batch)
                metrics += [Metric(key, number, when, step) for key, number in self._numbers(record.payload)]
        self._send(metrics, params)
        if refused is not None:
            raise refused  # (the channel sends none of this write again)
        self._shown.clear()

    def close(self, status: RunStatus) -> None:
        """End the MLflow run with `status`; release the store's connections. MLflow prints "View
        run <url>" lines then, left out when the URI holds a password (the lines would show it)."""
        client, self._client = self._client, None
        if client is None or self.run_id is None:
            return
        try:
            if self.shown_uri == self.tracking_uri:
                client.set_terminated(self.run_id, status.value)
            else:
                with _QUIET_URLS:  # one flag for the process: set and restored by one logger at a time
                    before = os.environ.get(_SUPPRESS_URLS)
                    os.environ[_SUPPRESS_URLS] = "true"
                    try:
                        client.set_terminated(self.run_id, status.value)
                    finally:
                        if before is None:
                            os.environ.pop(_SUPPRESS_URLS, None)
                        else:
                            os.environ[_SUPPRESS_URLS] = before
        finally:
            _dispose_store(client)  # an in-process sweep would run out of file descriptors otherwise

    def identity(self) -> dict[str, Any]:
        return {"run_id": self.run_id} if self.run_id else {}

    def location(self) -> str | None:
        if self.tracking_uri is None:
            return None
        return f"{self.shown_uri} (run {self.run_id})" if self.run_id else self.shown_uri

    # -- internals ---------------------------------------------------------------------------

    def _numbers(self, data: Mapping[str, Any]) -> list[tuple[str, float]]:
        """The numbers of `data` MLflow takes as metrics (names it refuses were said at the call)."""
        numbers = []
        for key, value in data.items():
            number = scalar(value)
            if number is None:
                if key not in self._skipped:
                    self._skipped.add(key)
                    LOG.warning("MLFlowLogger: %r is not a number MLflow can store (%s); it is not logged as a metric",
                                key, type(value).__name__)
            elif self._settings.refused_name(key, _validate_metric) is None:
                numbers.append((key, number))
        return numbers

    def _add_params(self, params: dict[str, str], data: Mapping[str, Any]) -> None:
        """Add `data`'s parameters to the request: not one the store has, nor one it has with
        another value (MLflow parameters can not change: said, left out)."""
        for key, value in flatten(data).items():
            text = str(value)
            if len(key) > MAX_PARAM_KEY or len(text) > MAX_PARAM_VALUE:
                LOG.warning("MLFlowLogger: parameter %r truncated to MLflow's limits (key 250, value 6000 chars)", key)
                key, text = key[:MAX_PARAM_KEY], text[:MAX_PARAM_VALUE]
            if self._settings.refused_name(key, _validate_param) is not None:
                continue
            known = self._params.get(key, params.get(key))
            if known is None:
                params[key] = text
            elif known != text:
                LOG.warning("MLFlowLogger: parameter %r was already logged as %r; MLflow parameters can not "
                            "change, so %r is not logged", key, known, text)

    def _send(self, metrics: list[Any], params: dict[str, str]) -> None:
        """Send within the store's per-request limits, parameters first; the parameters are the
        store's once it took them."""
        from mlflow.entities import Param

        pending = [Param(key, text) for key, text in params.items()]
        while pending or metrics:
            batch, pending = pending[:MAX_PARAMS_PER_BATCH], pending[MAX_PARAMS_PER_BATCH:]
            room = MAX_ENTITIES_PER_BATCH - len(batch)
            chunk, metrics = metrics[:room], metrics[room:]
            self._client.log_batch(self.run_id, metrics=chunk, params=batch)
            self._params.update((param.key, param.value) for param in batch)

    def _show(self, record: Record) -> None:
        """Upload a media record's images or files; of a record written again after a failed
        write, only what was not sent (MLflow would keep an image twice, a table's rows twice)."""
        _, sent = self._shown.get(id(record), (record, 0))
        if sent is None:
            return
        try:
            requests = uploads(self._client, self.run_id, record.payload, int(record.timestamp.batch),
                               int(record.time * 1000), self._legends)
        except Refused:
            self._shown[id(record)] = (record, None)
            raise
        for number in range(sent, len(requests)):
            requests[number]()
            self._shown[id(record)] = (record, number + 1)
        self._shown[id(record)] = (record, None)

    def _upload(self, artifact: Any) -> None:
        """Log the artifact's file (the Logger's copy, named as the artifact's last part)."""
        directory, _, _ = artifact.name.rpartition("/")
        directory = directory or None
        if not artifact.overwrite and (artifact.name in self._artifacts or any(
                entry.path == artifact.name for entry in self._client.list_artifacts(self.run_id, directory))):
            raise FileExistsError(f"MLflow artifact {artifact.name!r} already exists and overwrite is False")
        self._client.log_artifact(self.run_id, str(artifact.path), artifact_path=directory)
        self._artifacts.add(artifact.name)


def _validate_metric(key: str) -> None:
    from mlflow.utils.validation import _validate_metric as validate  # MLflow's own rules, as its store applies them

    validate(key, 0.0, 0, 0)


def _validate_param(key: str) -> None:
    from mlflow.utils.validation import _validate_param_name

    _validate_param_name(key)


def _param_key(key: str) -> str:
    """A parameter's name as it is sent (cut to MLflow's limit)."""
    return key[:MAX_PARAM_KEY]


def _dispose_store(client: Any) -> None:
    """Close the pooled connections of the client's SQL store (MLflow caches one per URI)."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()


@contextlib.contextmanager
def _creating(database: Path | None) -> Iterator[None]:
    """Around the first use of a store, which creates a SQLite one: one process at a time (the
    runs of a sweep share one; two creating its tables at once break its schema), and without
    MLflow's lines about creating its tables."""
    if database is None:
        yield
        return
    with FileLock(f"{database}.lock"), _quiet(_STORE_CREATION_LOG):
        yield


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Leave out the log `name`'s records below WARNING meanwhile (a filter of this call's own:
    another thread's call adds and removes its own)."""
    def quiet(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING

    log = logging.getLogger(name)
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


def _absolute_local_uri(uri: str, run: RunFacts, create: bool = True) -> str:
    """A local store's URI with an absolute path, a relative one under the run's directory (with
    `create`, a SQLite database's directory, or a file store's, made). MLflow caches a store per
    URI string: a relative one would follow the first working directory it was used in."""
    database, directory = _sqlite_path(uri), file_store_path(uri)
    if database is not None:
        database = run.path(database).resolve()
        if create:
            database.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{database}"
    if directory is not None:
        directory = run.path(directory).resolve()
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        return directory.as_uri()
    return uri
