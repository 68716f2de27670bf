"""Host transfers of logged tensors, counted with `DeviceTensor` (a CPU tensor that counts every copy
to the host): one per tensor per call for all destinations together, and with ``defer_tensors``
one per flush for all the tensors logged since the last one. Every destination is read back from
its own store (text log, JSON Lines file, InMemoryLogger, TensorBoard event file, MLflow SQLite)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from tensorboard.backend.event_processing import event_accumulator as ea

from composer_cfg import (FileLogger, InMemoryLogger, JSONLinesLogger, Logger, LogLevel, MLFlowLogger, State,
                          TensorboardLogger, TrainingLoop)
from composer_cfg.records import read_records
from counting_tensor import DeviceTensor, on_device

KEYS = [f"metric/{index}" for index in range(8)]


def five_destinations(run_name: str, flush_interval: int = 10) -> Logger:
    return Logger(State(run_name), {
        "file": FileLogger(log_level="batch", flush_interval=flush_interval, capture_stdout=False,
                           capture_stderr=False),
        "jsonl": JSONLinesLogger(flush_interval=flush_interval),
        "in_memory": InMemoryLogger(),
        "tensorboard": TensorboardLogger(flush_interval=flush_interval),
        "mlflow": MLFlowLogger(flush_interval=flush_interval),
    })


def read_back(logger: Logger) -> dict[str, Any]:
    """What each destination kept: per destination, (step, key, value) in the order it kept them."""
    run = logger.state.run_name
    memory = logger.destinations["in_memory"]
    events = ea.EventAccumulator(f"{run}/tensorboard", size_guidance={ea.SCALARS: 0})
    events.Reload()
    client = MlflowClient(tracking_uri=f"sqlite:///{Path(run, 'mlflow.db').resolve()}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
    return {
        "file": Path(run, "logs-rank0.txt").read_text().splitlines(),
        "jsonl": [(r["batch"], r["level"], r["data"]) for r in read_records(Path(run, "metrics-rank0.jsonl"))],
        "in_memory": {key: [(int(ts.batch), level, float(value)) for ts, level, value in series]
                      for key, series in memory.data.items()},
        "tensorboard": {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]},
        "mlflow": {key: [(m.step, m.value) for m in client.get_metric_history(mlflow_run.info.run_id, key)]
                   for key in sorted(mlflow_run.data.metrics)},
    }


def value(batch: int, index: int) -> float:
    return (batch * 8 + index) / 64  # exact in float32, so every store can hold it exactly


def train(logger: Logger, batches: int = 100) -> list[tuple[float, float]]:
    """Log the 8 metrics as device tensors every batch; the wall-clock span of each call."""
    spans = []
    with logger:
        loop = TrainingLoop(logger)
        for _ in loop.epochs(1):
            for batch in loop.batches(batches):
                metrics = {key: on_device(value(batch, index)) for index, key in enumerate(KEYS)}
                before = time.time()
                logger.data_batch(metrics)
                spans.append((before, time.time()))
    return spans


def test_a_tensor_logged_once_crosses_to_the_host_once_for_five_destinations():
    logger = five_destinations("eager")
    DeviceTensor.transfers = 0
    with logger:
        logger.data_batch({"loss": on_device(0.375)})
        assert DeviceTensor.transfers == 1
    assert DeviceTensor.transfers == 1  # no destination read the device tensor again, closing included
    kept = read_back(logger)
    assert kept["file"] == ['[BATCH][batch=0]: { "loss": 0.3750, }']
    assert kept["jsonl"] == [(0, "BATCH", {"loss": 0.375})]
    assert kept["in_memory"] == {"loss": [(0, LogLevel.BATCH, 0.375)]}
    assert kept["tensorboard"] == {"loss": [(0, 0.375)]}
    assert kept["mlflow"] == {"loss": [(0, 0.375)]}
