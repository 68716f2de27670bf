"""MLFlowLogger against a real SQLite tracking store, read back with MlflowClient."""

import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient

from composer_cfg import Logger, MLFlowLogger, State, TrainingLoop, build_logger
from conftest import ranks



def store() -> MlflowClient:
    """A client of this test's store (an absolute URI: MLflow caches stores by URI string)."""
    return MlflowClient(tracking_uri=f"sqlite:///{Path('ml_run/mlflow.db').resolve()}")


def train(logger: Logger, epochs: int = 2, batches: int = 5) -> None:
    Path("weights.txt").write_text("w")
    loop = TrainingLoop(logger)
    logger.data_fit({"lr": 0.1, "optimizer": {"name": "sgd", "momentum": 0.9}, "notes": "x" * 7000})
    for epoch in loop.epochs(epochs):
        for batch in loop.batches(batches):
            logger.data_batch({"loss/train": 1.0 / (batch + 1), "phase": "train"})
        logger.data_epoch({"metrics/epoch/accuracy": 0.5 + 0.25 * epoch})
        logger.file_artifact("epoch", "{run_name}/checkpoints/ep{epoch}.txt", "weights.txt")


def the_run(client: MlflowClient):
    (run,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
    return run


def test_metrics_params_artifacts_and_status_read_back(caplog):
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        with Logger(State("ml_run"), MLFlowLogger()) as logger:
            train(logger)
    client = store()
    run = the_run(client)
    assert run.info.status == "FINISHED" and run.info.run_name == "ml_run"
    history = client.get_metric_history(run.info.run_id, "loss/train")
    assert [(m.step, m.value) for m in history] == [(b, 1.0 / (b + 1)) for b in range(10)]
    epochs = client.get_metric_history(run.info.run_id, "metrics/epoch/accuracy")
    assert [(m.step, m.value) for m in epochs] == [(5, 0.5), (10, 0.75)]
    assert run.data.params == {"lr": "0.1", "optimizer/name": "sgd", "optimizer/momentum": "0.9", "notes": "x" * 6000}
    artifacts = client.list_artifacts(run.info.run_id, "ml_run/checkpoints")
    assert [a.path for a in artifacts] == ["ml_run/checkpoints/ep0.txt", "ml_run/checkpoints/ep1.txt"]
    local = client.download_artifacts(run.info.run_id, "ml_run/checkpoints/ep1.txt", ".")
    assert Path(local).read_text() == "w"
    assert caplog.messages == [
        "MLFlowLogger: parameter 'notes' truncated to MLflow's limits (key 250, value 6000 chars)",
        "MLFlowLogger: 'phase' is not a number (str); it is not logged as a metric",
    ]


def test_metrics_are_sent_in_batches_not_per_value():
    destination = MLFlowLogger(flush_interval=4)
    with Logger(State("ml_run"), destination) as logger:
        logger.run_event("init")
        calls = []
        send = destination._client.log_batch
        destination._client.log_batch = lambda *args, **kwargs: (calls.append(len(kwargs.get("metrics", []))),
                                                                   send(*args, **kwargs))
        loop = TrainingLoop(logger)
        for _ in loop.epochs(1):
            for batch in loop.batches(10):
                logger.data_batch({"a": 1.0, "b": 2.0})
    # Flush points: batch_end after batches 4 and 8, then epoch_end. Requests run on a background
    # thread, each taking every metric queued by then: at most one request per flush point.
    assert sum(calls) == 20 and 1 <= len(calls) <= 3
    client = store()
    assert len(client.get_metric_history(the_run(client).info.run_id, "a")) == 10


def test_more_than_1000_metrics_at_once_are_chunked():
    with Logger(State("ml_run"), MLFlowLogger(flush_interval=10_000)) as logger:
        logger.data_batch({f"m{i}": float(i) for i in range(2500)})
    run = the_run(store())
    assert len(run.data.metrics) == 2500


def test_an_exception_marks_the_run_failed():
    with pytest.raises(ValueError, match="nan loss"):
        with Logger(State("ml_run"), MLFlowLogger()) as logger:
            logger.data_batch({"loss": 1.0})
            raise ValueError("nan loss")
    assert the_run(store()).info.status == "FAILED"


def test_other_ranks_do_not_touch_the_store():
    with Logger(State("ml_run", dist_info=ranks(2, rank=1)), MLFlowLogger()) as logger:
        train(logger, epochs=1)
    assert not Path("ml_run/mlflow.db").exists()


def test_selected_from_the_config():
    with build_logger(overrides=["run_name=ml_run", "logger/destinations=[mlflow]",
                                 "logger.destinations.mlflow.experiment_name=from_config"]) as logger:
        logger.data_batch({"x": 3.0})
    client = store()
    (run,) = client.search_runs([client.get_experiment_by_name("from_config").experiment_id])
    assert run.data.metrics == {"x": 3.0}
