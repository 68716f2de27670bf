"""Host transfers of logged device tensors, counted with `DeviceTensor` (a tensor that plays one on a
device and counts every copy to the host): one batched copy per flush point for all the tensors
logged since the last one, whatever the number of destinations; every destination keeps what it
would keep of the same values logged as floats. Every destination is read back from its own store
(text log, JSON Lines file, InMemoryLogger, TensorBoard event file, MLflow SQLite)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from composer_cfg import (
    FileLogger,
    InMemoryLogger,
    JSONLinesLogger,
    Logger,
    LogLevel,
    MLFlowLogger,
    State,
    TensorboardLogger,
    TrainingLoop,
)
from composer_cfg.core.values import BadLogData
from composer_cfg.run.records import read_records
from conftest import Recorder, needs
from counting_tensor import DeviceTensor, on_device

torch = needs("torch")
MlflowClient = needs("mlflow").MlflowClient
ea = needs("tensorboard.backend.event_processing.event_accumulator")

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
    client = MlflowClient(tracking_uri=f"sqlite:///{Path('mlflow.db').resolve()}")
    mlflow_run = client.get_run(logger.destinations["mlflow"].run_id)
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


def train(logger: Logger, batches: int = 100, tensors: bool = True) -> list[tuple[float, float]]:
    """Log the 8 metrics every batch (as device tensors, or floats); the wall-clock span of each call."""
    spans = []
    with logger:
        loop = TrainingLoop(logger)
        for _ in loop.epochs(1):
            for batch in loop.batches(batches):
                metrics = {key: on_device(value(batch, index)) if tensors else value(batch, index)
                           for index, key in enumerate(KEYS)}
                before = time.time()
                logger.data_batch(metrics)
                spans.append((before, time.time()))
    return spans


@pytest.mark.slow
def test_a_tensor_logged_once_crosses_to_the_host_once_for_five_destinations(project_store):
    logger = five_destinations("once")
    DeviceTensor.transfers = 0
    with logger:
        logger.data_batch({"loss": on_device(0.375)})
        assert DeviceTensor.transfers == 0  # no device sync on the logging call: it waits for a flush point
    assert DeviceTensor.transfers == 1  # one copy at close, for every destination; none read it again
    kept = read_back(logger)
    assert kept["file"] == ['[BATCH][batch=0]: { "loss": 0.3750, }']
    assert kept["jsonl"] == [(0, "BATCH", {"loss": 0.375})]
    assert kept["in_memory"] == {"loss": [(0, LogLevel.BATCH, 0.375)]}
    assert kept["tensorboard"] == {"loss": [(0, 0.375)]}
    assert kept["mlflow"] == {"loss": [(0, 0.375)]}


@pytest.mark.slow
def test_tensors_cross_once_per_flush_point_and_every_destination_keeps_what_floats_give(project_store):
    floats = five_destinations("floats")
    train(floats, tensors=False)
    DeviceTensor.transfers = 0
    tensors = five_destinations("tensors")
    spans = train(tensors)
    assert DeviceTensor.transfers == 10  # flushes after batches 10, 20, ..., 100: one batched copy each, not 800
    float_kept, tensor_kept = read_back(floats), read_back(tensors)
    for name in float_kept:
        assert tensor_kept[name] == float_kept[name], name
    assert tensor_kept["tensorboard"]["metric/3"][:2] == [(0, value(0, 3)), (1, value(1, 3))]
    assert len(tensor_kept["jsonl"]) == 100 and tensor_kept["jsonl"][99] == (
        99, "BATCH", {key: value(99, index) for index, key in enumerate(KEYS)})
    # each record carries the wall-clock time of its call, not of the flush that delivered it
    times = [record["time"] for record in read_records(Path("tensors", "metrics-rank0.jsonl"))]
    assert all(before <= when <= after for when, (before, after) in zip(times, spans))


class Stamps(Recorder):
    """Records each data call with the batch and wall-clock time its state carries."""

    def log_data(self, state, log_level, data):
        self.calls.append(("data", log_level, int(state.timestamp.batch), state.log_time, data))


def data_calls(recorder: Recorder) -> list[tuple[Any, ...]]:
    return [call[1:] for call in recorder.calls if call[0] == "data"]


def test_staged_calls_keep_their_order_level_timestamp_and_time_and_plain_calls_wait_their_turn():
    stamps = Stamps()
    state = State("run")
    with Logger(state, stamps) as logger:
        before = time.time()
        logger.data_batch({"plain": 1.0})  # nothing queued, no tensor: delivered at once
        ((level, batch, when, data),) = data_calls(stamps)
        assert (level, batch, data) == (LogLevel.BATCH, 0, {"plain": 1.0}) and before <= when <= time.time()
        before = time.time()
        logger.data_batch({"loss": on_device(0.5)})
        after = time.time()
        state.timestamp = state.timestamp.to_next_batch()
        state.log_time = 1000.0
        logger.data_epoch({"acc": 0.25, "nested": {"values": [on_device(1.5), 2]}})
        state.log_time = None
        logger.data_batch({"plain": 3.0})  # waits its turn behind the queued calls
        assert len(data_calls(stamps)) == 1
        DeviceTensor.transfers = 0
        logger.flush()
        assert DeviceTensor.transfers == 1  # both tensors in one copy
        loss, later, plain = data_calls(stamps)[1:]
        assert loss[:2] == (LogLevel.BATCH, 0) and before <= loss[2] <= after  # the time of the call
        assert type(loss[3]["loss"]) is torch.Tensor and loss[3]["loss"].item() == 0.5
        assert later[:3] == (LogLevel.EPOCH, 1, 1000.0) and later[3]["acc"] == 0.25
        assert later[3]["nested"]["values"][0].item() == 1.5 and later[3]["nested"]["values"][1] == 2
        assert plain[:2] == (LogLevel.BATCH, 1) and plain[3] == {"plain": 3.0}
        logger.data_batch({"last": on_device(2.0)})
        assert len(data_calls(stamps)) == 4
    assert data_calls(stamps)[-1][3]["last"].item() == 2.0  # close delivers what is still queued


def test_staged_values_are_those_of_the_call_in_their_dtypes_and_shapes():
    memory = InMemoryLogger()
    tensor = on_device(0.25)
    matrix = torch.arange(4, dtype=torch.float32).reshape(2, 2).as_subclass(DeviceTensor)
    data = {"loss": tensor, "count": on_device(7, torch.int64), "matrix": matrix, "lr": 0.1}
    with Logger(State("run"), memory) as logger:
        logger.data_batch(data)
        tensor.add_(1)  # the caller reuses its tensor and its dict, as a training loop does
        data["lr"] = 0.2
        DeviceTensor.transfers = 0
    assert DeviceTensor.transfers == 2  # one copy per dtype: float32 (loss and matrix), int64 (count)
    kept = memory.most_recent_values
    assert kept["loss"].dtype == torch.float32 and kept["loss"].shape == () and kept["loss"].item() == 0.25
    assert kept["count"].dtype == torch.int64 and kept["count"].item() == 7
    assert kept["matrix"].tolist() == [[0.0, 1.0], [2.0, 3.0]] and kept["lr"] == 0.1
    assert all(type(value) is torch.Tensor for key, value in kept.items() if key != "lr")


def test_a_call_holding_device_tensors_is_checked_when_it_is_made():
    stamps = Stamps()
    with Logger(State("run"), stamps) as logger:
        logger.data_batch({"loss": on_device(0.5)})
        with pytest.raises(TypeError, match="log data keys must be strings, got 1"):
            logger.data_batch({1: on_device(0.5)})
    assert [call[3]["loss"].item() for call in data_calls(stamps)] == [0.5]


def test_a_destination_failing_on_staged_data_does_not_keep_it_from_the_others():
    class Broken(Recorder):
        def log_data(self, state, log_level, data):
            raise OSError("disk full")

    stamps = Stamps()
    with Logger(State("run"), {"broken": Broken(), "stamps": stamps}) as logger:
        logger.data_batch({"a": on_device(1.0)})
        logger.data_batch({"b": on_device(2.0)})
        with pytest.raises(OSError, match="disk full"):
            logger.flush()
    assert [list(call[3]) for call in data_calls(stamps)] == [["a"], ["b"]]


class LostDevice(DeviceTensor):
    """A device that fails when its values are copied to the host."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) == "to":
            raise RuntimeError("device lost")
        return super().__torch_function__(func, types, args, kwargs)


def test_a_tensor_whose_copy_fails_loses_its_own_call_only_and_the_error_names_the_key():
    stamps = Stamps()
    logger = Logger(State("run"), {"stamps": stamps})
    for step in range(20):
        logger.data_batch({"loss": on_device(float(step))})
        if step == 7:
            logger.data_batch({"broken": torch.tensor(0.5).as_subclass(LostDevice)})
    with pytest.raises(BadLogData, match="log data value for key 'broken': its tensor could not be copied to the "
                                         "host: RuntimeError: device lost"):
        logger.close()
    assert [call[3]["loss"].item() for call in data_calls(stamps)] == [float(step) for step in range(20)]
    assert stamps.calls[-1] == ("post_close",)


@pytest.mark.slow
def test_sparse_and_nested_tensors_are_copied_at_the_call_and_a_meta_tensor_is_refused_naming_its_key():
    memory = InMemoryLogger()
    with Logger(State("run"), memory) as logger:
        DeviceTensor.transfers = 0
        logger.data_batch({"loss": on_device(1.0), "sparse": torch.eye(2).to_sparse(),
                           "nested": torch.nested.nested_tensor([torch.ones(2), torch.ones(3)], layout=torch.jagged)})
        with pytest.raises(BadLogData, match="log data value for key 'm' is a meta tensor: it has no values to log"):
            logger.data_batch({"m": torch.empty(2, device="meta")})
        values = memory.most_recent_values  # reading delivers what waits: one copy
        assert DeviceTensor.transfers == 1 and values["loss"].item() == 1.0
        assert values["sparse"].to_dense().tolist() == [[1.0, 0.0], [0.0, 1.0]]
        assert [t.tolist() for t in values["nested"].unbind()] == [[1.0, 1.0], [1.0, 1.0, 1.0]]
        assert "m" not in values


def test_a_call_made_while_another_thread_delivers_the_queue_stays_behind_it():
    import threading

    class Gate(Stamps):
        def __init__(self):
            super().__init__()
            self.entered, self.release = threading.Event(), threading.Event()

        def log_data(self, state, log_level, data):
            if "first" in data:
                self.entered.set()
                self.release.wait(30)
            super().log_data(state, log_level, data)

    gate = Gate()
    with Logger(State("run"), gate) as logger:
        logger.data_batch({"first": on_device(1.0)})
        delivering = threading.Thread(target=logger.flush)
        delivering.start()
        assert gate.entered.wait(30)
        logger.data_batch({"second": 2.0})  # no tensor, nothing queued, but a delivery is in progress
        gate.release.set()
        delivering.join(30)
    assert [list(call[3]) for call in data_calls(gate)] == [["first"], ["second"]]


def test_staged_fit_data_has_its_secrets_masked_as_any_fit_data():
    from composer_cfg.core.secrets import MASK

    stamps = Stamps()
    with Logger(State("run"), stamps) as logger:
        logger.data_fit({"api_key": "abc123", "loss": on_device(1.0)})
    ((_, _, _, data),) = data_calls(stamps)
    assert data["api_key"] == MASK and data["loss"].item() == 1.0


def test_a_queue_that_reaches_its_bound_is_delivered_without_waiting_for_a_flush_point(monkeypatch):
    from composer_cfg.runtime import tensor_stage

    monkeypatch.setattr(tensor_stage, "MAX_WAITING", 3)
    stamps = Stamps()
    with Logger(State("run"), stamps) as logger:
        DeviceTensor.transfers = 0
        for step in range(3):
            assert len(data_calls(stamps)) == 0
            logger.data_batch({"loss": on_device(float(step))})
        assert DeviceTensor.transfers == 1
        assert [call[3]["loss"].item() for call in data_calls(stamps)] == [0.0, 1.0, 2.0]
