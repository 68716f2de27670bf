"""`MLFlowLogger`: metrics, parameters and artifacts in an MLflow tracking store."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Mapping, Sequence

from composer_cfg.background import FINALIZE_RESERVE, wait
from composer_cfg.delivery import Courier, DeliveryPolicy, DeliveryQueue, QueuedDelivery, Record
from composer_cfg.destination import LoggerDestination
from composer_cfg.destinations.mlflow_params import ExperimentName, RunTags, TrackingURI
from composer_cfg.destinations.mlflow_params import first_sentence as _first_sentence
from composer_cfg.destinations.mlflow_params import sqlite_path as _sqlite_path
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.hyperparameters import flatten
from composer_cfg.core.log_level import LogLevel
from composer_cfg.config.params import (POSITIVE, Level, NameTemplate, PositiveFloat, PositiveInt, Undelivered, WhenFull,
                                 positive_int)
from composer_cfg.core.secrets import redact, redact_text
from composer_cfg.core.state import State
from composer_cfg.core.status import RunStatus
from composer_cfg.core.templates import DIST_FIELDS, Template
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.core.values import scalar

if TYPE_CHECKING:
    from composer_cfg.logger import Logger

LOG = logging.getLogger("composer_cfg")
_SUPPRESS_URLS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"  # MLflow's own switch for its "View run" lines
_QUIET_URLS = threading.Lock()
MAX_ENTITIES_PER_BATCH = 1000  # a tracking server's per-request limits
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 5000


class MLFlowLogger(QueuedDelivery, LoggerDestination):
    """Sends metrics (``step=batch``), FIT data as parameters, and artifacts to MLflow.

    Args:
        tracking_uri: template of the store's URI. The default is a SQLite database in the run's
            directory (relative to the working directory): a real store, nothing to run.
        experiment_name: created on first use; a new one keeps its artifacts beside a SQLite
            store (``<db dir>/mlartifacts``).
        run_name: template of the MLflow run's name (default: the run name).
        log_level: threshold. EPOCH and BATCH numbers become metrics; FIT data becomes
            parameters (nested dicts flattened with ``/``; keys over 250 and values over 6000
            characters truncated, with a warning).
        flush_interval: queued metrics are sent with ``log_batch`` every n batches (at
            ``batch_end``), at epoch end and at close: one request per interval, not per value.
        flush_seconds: also send them at the first metric or event once this many seconds have
            passed since the last flush; None: off.
        rank_zero_only: only global rank 0 talks to the tracking store.
        tags: tags of the MLflow run; the value of a secret-named tag (``api_token``) is stored
            masked, as is a URL's password in any tag (`composer_cfg.core.secrets`). The tracking
            URI's password is masked in messages; when there is one, MLflow's own "View run"
            lines, which would show it, are not printed.
        timeout: the longest, in seconds, the training thread waits for the tracking store: when
            the run starts at `Event.INIT`, for room in a full queue, and in all at close
            (delivering what is left, then ending the run).
        queue_size, when_full, undelivered: the delivery queue (`composer_cfg.delivery`): at most
            `queue_size` logged calls wait for the store; when it is full the training thread
            does not wait (``drop``, the default) or waits for room (``block``, at most
            `timeout` seconds, once per outage); what leaves the queue undelivered, then or at
            close, is appended to
            ``{run_name}/undelivered-mlflow-rank<rank>.jsonl`` (``spool``: ``composer-cfg-sync``
            adds it to the same MLflow run later) or lost (``drop``), and counted.

    Every request runs in order on a background thread: logging only enqueues, so a slow or hung
    server never stalls training (a run started by a first data call, without INIT, does not even
    wait for the run to be created). A metric name MLflow refuses (``acc@1``, a 300-character
    name) is a `ValueError` at the call that logs it, naming it; the call's other metrics are
    kept. Metrics and parameters leave the queue only once the store has taken them, so a failed
    or interrupted request is sent again at the next flush (MLflow ignores exact duplicates).
    At close, what is still queued after `timeout` is spooled (a warning says where) or, with
    ``undelivered=drop``, lost (an error says how much).
    `finalize` ends the run FINISHED, FAILED or KILLED and releases the store's connections.
    """

    thread_safe = True
    hyperparameters_as_fit_data = True
    remote = True
    holds_until_checkpoint = True  # MLflow has no way to delete a metric's points
    requires = {"mlflow": "mlflow", "sqlalchemy": "mlflow", "alembic": "mlflow"}

    def __init__(
        self,
        tracking_uri: Annotated[str, TrackingURI()] = "sqlite:///{run_name}/mlflow.db",
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
        self._tracking_uri = Template(tracking_uri, DIST_FIELDS, key="tracking_uri")
        self._run_name = Template(run_name, DIST_FIELDS, key="run_name")
        self.experiment_name = experiment_name
        self.log_level = LogLevel.parse(log_level)
        self.flush_interval = positive_int("flush_interval", flush_interval)
        self.flush_schedule = FlushSchedule(self.flush_interval, LogLevel.BATCH, seconds=flush_seconds)
        self.flush_seconds = self.flush_schedule.seconds
        self._timed = self.flush_seconds is not None
        self.rank_zero_only = bool(rank_zero_only)
        self.tags = redact(dict(tags or {}))
        self.timeout = float(POSITIVE.check("timeout", timeout))
        self.policy = DeliveryPolicy.checked(queue_size, when_full, undelivered, self.timeout)
        self._queue = DeliveryQueue("MLflow", self.policy, self._spool, on_full=self._queue_delivery)
        self._name = "mlflow"  # its name in the Logger, known at INIT: the spool's file is named after it
        self._where: tuple[str, int] | None = None  # the run's name and rank, once started
        self._close_timestamp = Timestamp()
        self.run_id: str | None = None
        self._continued: str | None = None  # the id of an existing run to add to (`continue_run`)
        self.tracking_uri: str | None = None
        self._client: Any = None
        self._courier = Courier("mlflow", self._send, self._pending, self.timeout)
        self._lock = threading.Lock()  # the parameters and the flags below
        self._start_lock = threading.Lock()
        self._started: Future[Any] | None = None  # creating the run, on the worker
        self._params: list[Any] = []  # parameters not yet taken by the store, oldest first
        self._closing = False  # close started: no more data (artifacts still, until finalize)
        self._finished = False
        self._valid_keys: set[str] = set()
        self._param_values: dict[str, str] = {}
        self._artifacts: set[str] = set()
        self._skipped: set[str] = set()
        self._staging: Path | None = None

    def join_sweep(self, sweep: str, overrides: Sequence[str]) -> None:
        """Tags ``sweep`` (the sweep's id) and ``sweep.overrides`` (the job's, one string) on the run."""
        self.tags = {**self.tags, "sweep": sweep, "sweep.overrides": " ".join(overrides)[:MAX_TAG_VALUE]}

    def can_log_file_artifacts(self) -> bool:
        return True

    @property
    def shown_uri(self) -> str | None:
        """The tracking URI as messages show it: a password in it masked."""
        return None if self.tracking_uri is None else redact_text(self.tracking_uri)

    def output_location(self) -> str | None:
        return f"{self.shown_uri} (run {self.run_id})" if self.run_id else None

    def run_identity(self) -> dict[str, Any]:
        return {"run_id": self.run_id} if self.run_id else {}

    def continue_run(self, identity: Mapping[str, Any]) -> None:
        """Add to the MLflow run ``identity["run_id"]`` (in the same store) instead of creating one."""
        self._continued = identity.get("run_id") or None

    # -- data --------------------------------------------------------------------------------

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        self._start(state, block=False)
        if log_level is LogLevel.FIT:
            self._log_params(data)
            return
        metrics, refused = {}, []
        for key, value in data.items():
            number = scalar(value)
            if number is None:
                self._skip(key, value)
            elif key in self._valid_keys or self._accepts_metric(key, refused):
                metrics[key] = number
        if metrics:
            self._check_open()
            self._queue.put(Record(log_level, state.timestamp, time.time() if state.log_time is None else state.log_time,
                                   metrics))
        if self._timed and self.flush_schedule.seconds_due():
            self.flush_schedule.restart()
            self._queue_delivery()
        if refused:
            raise ValueError(f"MLflow refuses the metric name(s) {', '.join(refused)}; the call's other "
                             f"metrics were logged")

    def _check_open(self) -> None:
        if self._closing:  # a call still in flight when the Logger closed: nothing would send it
            raise RuntimeError(f"MLFlowLogger for {self.shown_uri} is closed: it takes no more data")

    def _accepts_metric(self, key: str, refused: list[str]) -> bool:
        from mlflow.utils.validation import _validate_metric  # MLflow's own rules, as its store applies them

        try:
            _validate_metric(key, 0.0, 0, 0)
        except Exception as error:  # noqa: BLE001 - MlflowException; its message says why
            refused.append(f"{key!r} ({_first_sentence(error)})")
            return False
        self._valid_keys.add(key)
        return True

    def _skip(self, key: str, value: Any) -> None:
        if key not in self._skipped:
            self._skipped.add(key)
            LOG.warning("MLFlowLogger: %r is not a number MLflow can store (%s); it is not logged as a metric",
                        key, type(value).__name__)

    def _log_params(self, data: Mapping[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import _validate_param_name

        params, refused = [], []
        for key, value in flatten(data).items():
            text = str(value)
            if len(key) > MAX_PARAM_KEY or len(text) > MAX_PARAM_VALUE:
                LOG.warning("MLFlowLogger: parameter %r truncated to MLflow's limits (key 250, value 6000 chars)", key)
                key, text = key[:MAX_PARAM_KEY], text[:MAX_PARAM_VALUE]
            try:
                _validate_param_name(key)
            except Exception as error:  # noqa: BLE001 - MlflowException
                refused.append(f"{key!r} ({_first_sentence(error)})")
                continue
            with self._lock:
                known = self._param_values.setdefault(key, text)
            if known is text:
                params.append(Param(key, text))
            elif known != text:
                LOG.warning("MLFlowLogger: parameter %r was already logged as %r; MLflow parameters can not "
                            "change, so %r is not logged", key, known, text)
            # else: the same value again: already queued or delivered (a batch may not repeat a key)
        with self._lock:
            self._check_open()
            self._params.extend(params)
        self._queue_delivery()  # parameters are few and logged once: send them now
        if refused:
            raise ValueError(f"MLflow refuses the parameter name(s) {', '.join(refused)}; the others were logged")

    def log_file_artifact(
        self, state: State, log_level: LogLevel, artifact_name: str, file_path: Path, *, overwrite: bool
    ) -> None:
        self._start(state, block=False)
        with self._lock:
            if not overwrite and artifact_name in self._artifacts:
                raise FileExistsError(f"MLflow artifact {artifact_name!r} was already logged and overwrite is False")
            self._artifacts.add(artifact_name)
            if self._staging is None:
                self._staging = Path(tempfile.mkdtemp(prefix="composer_cfg-mlflow-"))
            staged_dir = Path(tempfile.mkdtemp(dir=self._staging))
        directory, _, name = artifact_name.rpartition("/")
        staged = staged_dir / name  # MLflow names the artifact after the file
        shutil.copyfile(file_path, staged)  # the caller may change or delete the file once we return
        self._courier.request(self._upload, staged, directory or None, artifact_name, overwrite)

    def _upload(self, staged: Path, directory: str | None, artifact_name: str, overwrite: bool) -> None:
        try:
            run_id = self._run_id_or_fail()
            if not overwrite and any(f.path == artifact_name for f in self._client.list_artifacts(run_id, directory)):
                raise FileExistsError(f"MLflow artifact {artifact_name!r} already exists and overwrite is False")
            self._client.log_artifact(run_id, str(staged), artifact_path=directory)
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)

    # -- delivery ----------------------------------------------------------------------------

    def flush(self, state: State | None = None, logger: Logger | None = None) -> None:
        """Queue the buffered metrics for sending; raise a request that failed since the last flush."""
        self._courier.raise_failure()
        self._queue_delivery()

    def checkpoint_saved(self, state: State, logger: Logger) -> None:
        """Send what is queued and wait (at most `timeout` seconds) until the store has it."""
        self.flush(state, logger)
        request = self._courier.last_request
        if request is not None:
            try:
                wait("sending metrics to MLflow at a checkpoint", request, self.timeout)
            except TimeoutError:
                raise
            except Exception:  # noqa: BLE001 - the request's own failure: remembered by the courier
                self._courier.raise_failure()

    def _queue_delivery(self) -> None:
        if self._started is not None:  # the run's creation is queued first
            self._courier.deliver_soon()

    def _pending(self) -> bool:
        with self._lock:
            return bool(self._params) or len(self._queue) > 0

    def _send(self) -> bool:
        """On the worker: send one request within MLflow's limits, parameters first; what it held
        leaves the queues only once the store has it. False when nothing waited."""
        from mlflow.entities import Metric

        run_id = self._run_id_or_fail()
        with self._lock:
            params = self._params[:MAX_PARAMS_PER_BATCH]
        room = MAX_ENTITIES_PER_BATCH - len(params)
        metrics, records = [], 0
        for record in self._queue.waiting(room):
            if metrics and len(metrics) + len(record.data) > room:
                break
            when, step = int(record.time * 1000), int(record.timestamp.batch)
            metrics += [Metric(key, value, when, step) for key, value in record.data.items()]
            records += 1
        if not params and not records:
            return False
        for start in range(0, max(len(metrics), 1), room):  # one call may hold more than a request takes
            self._client.log_batch(run_id, metrics=metrics[start:start + room], params=params)
            with self._lock:
                del self._params[: len(params)]
            params = []
        self._queue.delivered(records)
        return True

    def _run_id_or_fail(self) -> str:
        if self.run_id is None:
            raise RuntimeError(f"there is no MLflow run at {self.shown_uri}: starting it failed")
        return self.run_id

    # -- lifecycle ---------------------------------------------------------------------------

    def init(self, state: State, logger: Logger) -> None:
        self._name = logger.name_of(self)
        self._start(state, block=True)

    def close(self, state: State, logger: Logger) -> None:
        """Take no more data; queue what is left (sent again if an earlier request failed).
        Other destinations may still publish files (their final flush) until `finalize`."""
        with self._start_lock, self._lock:
            self._closing = True
            self._courier.start_closing()
            self._close_timestamp = state.timestamp
        self._queue_delivery()

    def post_close(self) -> None:
        """Wait for every queued request (at most `timeout` seconds in all with `finalize`, which
        says what was not delivered)."""
        if self._courier.last_request is None:
            return
        try:
            # keep some of the time for finalize: recording how the run ended matters most
            reserve = min(FINALIZE_RESERVE, self.timeout / 4)
            wait("sending the last requests to MLflow", self._courier.last_request, self._courier.time_left(reserve),
                 FINALIZE_RESERVE)
        except Exception:  # noqa: BLE001 - a timeout: the worker goes on until finalize; a failure: just below
            pass
        self._courier.raise_failure()

    def _give_up(self) -> None:
        """What the store has not taken leaves for the spool (or is dropped), parameters first as one
        FIT record; a warning says where it waits, an error how much was lost."""
        with self._lock:
            params, self._params = self._params, []
        first = [Record(LogLevel.FIT, self._close_timestamp, time.time(), {p.key: p.value for p in params})] if params else []
        self._queue.settle(first)

    def finalize(self, status: RunStatus) -> None:
        """End the MLflow run with `status` (the worker delivers what is queued first); spool or drop
        what the store did not take; release the store's connections and the worker."""
        self._finished = True
        try:
            if self._started is not None:
                wait("starting the MLflow run", self._started, self._courier.time_left())
                self._courier.worker.call("ending the MLflow run", self._end_run, status, timeout=self._courier.time_left())
                self._courier.raise_failure()  # of an artifact other destinations published while closing
        finally:
            try:
                self._give_up()
            finally:
                self._release()

    def _end_run(self, status: RunStatus) -> None:
        """`set_terminated`; MLflow then prints "View run <url>" lines, left out when the URI holds a
        password (the lines would show it)."""
        if self.shown_uri == self.tracking_uri:
            self._client.set_terminated(self.run_id, status.value)
            return
        with _QUIET_URLS:  # one flag for the process: set and restored by one logger at a time
            before = os.environ.get(_SUPPRESS_URLS)
            os.environ[_SUPPRESS_URLS] = "true"
            try:
                self._client.set_terminated(self.run_id, status.value)
            finally:
                if before is None:
                    os.environ.pop(_SUPPRESS_URLS, None)
                else:
                    os.environ[_SUPPRESS_URLS] = before

    def _release(self) -> None:
        """Close the database connections MLflow keeps per store (an in-process sweep would run out
        of file descriptors otherwise), stop the worker, remove staged files."""
        client, self._client = self._client, None
        if client is not None:
            self._courier.worker.submit(_dispose_store, client)
        self._courier.worker.stop()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def _start(self, state: State, block: bool) -> None:
        """Queue the run's creation on first use; with `block` (at INIT), wait for it, at most
        `timeout` seconds. Only ever one run: a creation that timed out is not queued again."""
        started = self._started
        if started is None:
            with self._start_lock:
                if self._finished:  # the run has ended: never start a second one
                    raise RuntimeError(f"MLFlowLogger for {self.shown_uri} is closed: its run has ended")
                if self._started is None:
                    fields = state.template_fields()
                    uri = _absolute_sqlite_uri(self._tracking_uri.fill(fields))
                    self.tracking_uri = uri
                    self._where = (state.run_name, state.rank)
                    self._queue.what = f"MLflow ({self.shown_uri})"
                    self._started = self._courier.request(self._create_run, uri, self._run_name.fill(fields))
                started = self._started
        if block:
            wait(f"starting an MLflow run at {self.shown_uri}", started, self.timeout)

    def _create_run(self, uri: str, run_name: str) -> None:
        from mlflow import MlflowClient

        self._client = MlflowClient(tracking_uri=uri)
        if self._continued is not None:
            self._client.get_run(self._continued)  # an unknown id raises, naming it
            self._client.update_run(self._continued, status="RUNNING")
            self.run_id = self._continued
            return
        experiment = self._client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            database = _sqlite_path(uri)
            location = (database.parent / "mlartifacts").as_uri() if database is not None else None
            experiment_id = self._client.create_experiment(self.experiment_name, artifact_location=location)
        else:
            experiment_id = experiment.experiment_id
        self.run_id = self._client.create_run(experiment_id, run_name=run_name, tags=self.tags).info.run_id


def _dispose_store(client: Any) -> None:
    """Close the pooled connections of the client's SQL store (MLflow caches one per URI)."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()


def _absolute_sqlite_uri(uri: str) -> str:
    """A SQLite URI with an absolute path (its directory created). MLflow caches a store per URI
    string: a relative one would follow the first working directory it was used in."""
    database = _sqlite_path(uri)
    if database is None:
        return uri
    database = database.resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{database}"
