"""`MLFlowLogger`: metrics, parameters and artifacts in an MLflow tracking store."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from composer_cfg.destination import LoggerDestination
from composer_cfg.log_level import LogLevel
from composer_cfg.params import Level, PositiveInt, positive_int
from composer_cfg.state import State
from composer_cfg.templates import DIST_FIELDS, Template
from composer_cfg.values import scalar

if TYPE_CHECKING:
    from composer_cfg.logger import Logger

LOG = logging.getLogger("composer_cfg")
MAX_METRICS_PER_BATCH = 1000  # a tracking server's per-request limit
MAX_PARAM_KEY = 250
MAX_PARAM_VALUE = 6000


class MLFlowLogger(LoggerDestination):
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
        flush_interval: metrics are sent with ``log_batch`` every n batches (at ``batch_end``),
            at epoch end and at close: one request per interval, not per value.
        rank_zero_only: only global rank 0 talks to the tracking store.

    The run ends FINISHED, or FAILED when the `Logger`'s ``with`` block ended with an exception.
    """

    def __init__(
        self,
        tracking_uri: str = "sqlite:///{run_name}/mlflow.db",
        experiment_name: str = "composer_cfg",
        run_name: str = "{run_name}",
        *,
        log_level: Level = LogLevel.BATCH,
        flush_interval: PositiveInt = 100,
        rank_zero_only: bool = True,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self._tracking_uri = Template(tracking_uri, DIST_FIELDS, key="tracking_uri")
        self._run_name = Template(run_name, DIST_FIELDS, key="run_name")
        self.experiment_name = experiment_name
        self.log_level = LogLevel.parse(log_level)
        self.flush_interval = positive_int("flush_interval", flush_interval)
        self.rank_zero_only = bool(rank_zero_only)
        self.tags = dict(tags or {})
        self._client: Any = None
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self._metrics: list[Any] = []
        self._params: dict[str, str] = {}
        self._skipped: set[str] = set()
        self._enabled = True

    def can_log_file_artifacts(self) -> bool:
        return True

    def output_location(self) -> str | None:
        return f"{self.tracking_uri} (run {self.run_id})" if self.run_id else None

    def log_data(self, state: State, log_level: LogLevel, data: dict[str, Any]) -> None:
        if not self._start(state):
            return
        if log_level is LogLevel.FIT:
            self._log_params(data)
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = state.timestamp.batch
        for key, value in data.items():
            number = scalar(value)
            if number is not None:
                self._metrics.append(Metric(key, number, now, step))
            elif key not in self._skipped:
                self._skipped.add(key)
                LOG.warning("MLFlowLogger: %r is not a number (%s); it is not logged as a metric",
                            key, type(value).__name__)

    def log_file_artifact(
        self, state: State, log_level: LogLevel, artifact_name: str, file_path: Path, *, overwrite: bool
    ) -> None:
        if not self._start(state):
            return
        directory, _, name = artifact_name.rpartition("/")
        if not overwrite and any(f.path == artifact_name for f in self._client.list_artifacts(self.run_id, directory or None)):
            raise FileExistsError(f"MLflow artifact {artifact_name!r} already exists and overwrite is False")
        with tempfile.TemporaryDirectory(prefix="composer_cfg-mlflow-") as staging:
            staged = Path(staging) / name  # MLflow names the artifact after the file
            shutil.copyfile(file_path, staged)
            self._client.log_artifact(self.run_id, str(staged), artifact_path=directory or None)

    def flush(self) -> None:
        """Send the buffered metrics, in requests of at most 1000."""
        if self._metrics:
            metrics, self._metrics = self._metrics, []
            for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                self._client.log_batch(self.run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])

    # -- events ------------------------------------------------------------------------------

    def init(self, state: State, logger: Logger) -> None:
        self._start(state)

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.run_id and state.timestamp.batch % self.flush_interval == 0:
            self.flush()

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.run_id:
            self.flush()

    def close(self, state: State, logger: Logger) -> None:
        if self.run_id is None:
            return
        try:
            self.flush()
        finally:
            status = "FAILED" if getattr(logger, "exception", None) is not None else "FINISHED"
            self._client.set_terminated(self.run_id, status=status)

    # -- internals ---------------------------------------------------------------------------

    def _start(self, state: State) -> bool:
        """Create the run on first use; False on ranks that do not log."""
        if self.run_id is not None:
            return True
        if not self._enabled or (self.rank_zero_only and state.rank != 0):
            self._enabled = False
            return False
        from mlflow import MlflowClient

        fields = {"run_name": state.run_name, **state.dist.template_fields()}
        self.tracking_uri = self._tracking_uri.fill(fields)
        database = _sqlite_path(self.tracking_uri)
        if database is not None:
            # MLflow caches a store per URI string: a relative one would follow the first working
            # directory it was used in (one sweep job's database would receive the next job's runs).
            database = database.resolve()
            database.parent.mkdir(parents=True, exist_ok=True)
            self.tracking_uri = f"sqlite:///{database}"
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self._client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            location = (database.parent / "mlartifacts").as_uri() if database is not None else None
            experiment_id = self._client.create_experiment(self.experiment_name, artifact_location=location)
        else:
            experiment_id = experiment.experiment_id
        run = self._client.create_run(experiment_id, run_name=self._run_name.fill(fields), tags=self.tags)
        self.run_id = run.info.run_id
        return True

    def _log_params(self, data: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = []
        for key, value in _flatten(data).items():
            text = str(value)
            if len(key) > MAX_PARAM_KEY or len(text) > MAX_PARAM_VALUE:
                LOG.warning("MLFlowLogger: parameter %r truncated to MLflow's limits (key 250, value 6000 chars)", key)
                key, text = key[:MAX_PARAM_KEY], text[:MAX_PARAM_VALUE]
            if key in self._params:
                if self._params[key] != text:
                    LOG.warning("MLFlowLogger: parameter %r was already logged as %r; MLflow parameters can not "
                                "change, so %r is not logged", key, self._params[key], text)
                continue
            self._params[key] = text
            params.append(Param(key, text))
        for start in range(0, len(params), 100):  # a tracking server's per-request parameter limit
            self._client.log_batch(self.run_id, params=params[start : start + 100])


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None
