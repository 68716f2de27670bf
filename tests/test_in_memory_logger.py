import tracemalloc
from datetime import timedelta

import numpy as np
import pytest

from composer_cfg import InMemoryLogger, Logger, LogLevel, State, Timestamp, TrainingLoop
from conftest import needs

torch = needs("torch")


def logged(memory: InMemoryLogger, calls: list[tuple[Timestamp, LogLevel, dict]]) -> None:
    state = State("run")
    logger = Logger(state, memory)
    for timestamp, level, data in calls:
        state.timestamp = timestamp
        logger.data(level, data)


def test_data_holds_timestamp_level_and_value_in_call_order():
    memory = InMemoryLogger()
    t0, t1 = Timestamp(), Timestamp(batch=1, batch_in_epoch=1, batch_wct=timedelta(seconds=0.5))
    logged(memory, [(t0, LogLevel.FIT, {"lr": 0.1}), (t0, LogLevel.BATCH, {"loss": 0.9, "step": 0}),
                    (t1, LogLevel.BATCH, {"loss": 0.8, "step": 1})])
    assert memory.data == {
        "lr": [(t0, LogLevel.FIT, 0.1)],
        "loss": [(t0, LogLevel.BATCH, 0.9), (t1, LogLevel.BATCH, 0.8)],
        "step": [(t0, LogLevel.BATCH, 0), (t1, LogLevel.BATCH, 1)],
    }
    assert memory.most_recent_values == {"lr": 0.1, "loss": 0.8, "step": 1}
    assert memory.most_recent_timestamps == {"lr": t0, "loss": t1, "step": t1}
    assert type(memory.data["step"][0][2]) is int


def test_threshold():
    memory = InMemoryLogger(log_level="epoch")
    logged(memory, [(Timestamp(), LogLevel.BATCH, {"loss": 1.0}), (Timestamp(), LogLevel.EPOCH, {"acc": 0.5})])
    assert list(memory.data) == ["acc"]
    with pytest.raises(ValueError, match="invalid log level 'often'"):
        InMemoryLogger(log_level="often")


def test_get_timeseries_returns_numpy_arrays_of_values_and_time():
    memory = InMemoryLogger()
    logger = Logger(State("run"), memory)
    loop = TrainingLoop(logger)
    for _ in loop.epochs(2):
        for batch in loop.batches(2, samples=8, tokens=100):
            logger.data_batch({"loss": 1.0 / (batch + 1)})
    series = memory.get_timeseries("loss")
    assert list(series) == ["loss", "epoch", "batch", "batch_in_epoch", "sample", "sample_in_epoch", "token",
                            "token_in_epoch", "total_wct", "epoch_wct", "batch_wct"]
    np.testing.assert_array_equal(series["loss"], [1.0, 0.5, 1 / 3, 0.25])
    np.testing.assert_array_equal(series["epoch"], [0, 0, 1, 1])
    np.testing.assert_array_equal(series["batch"], [0, 1, 2, 3])
    np.testing.assert_array_equal(series["batch_in_epoch"], [0, 1, 0, 1])
    np.testing.assert_array_equal(series["sample"], [0, 8, 16, 24])
    np.testing.assert_array_equal(series["token_in_epoch"], [0, 100, 0, 100])
    assert series["batch"].dtype == np.int64 and series["total_wct"].dtype == np.float64
    assert (np.diff(series["total_wct"]) > 0).all()
    assert series["epoch_wct"][2] == 0.0


def test_get_timeseries_of_an_unknown_key():
    memory = InMemoryLogger()
    logged(memory, [(Timestamp(), LogLevel.BATCH, {"loss": 1.0, "acc": 0.5})])
    with pytest.raises(ValueError) as caught:
        memory.get_timeseries("los")
    assert str(caught.value) == "no values were logged for 'los'; logged keys: acc, loss"


def test_mutable_values_are_copied():
    memory = InMemoryLogger()
    values = [1, 2]
    nested = {"a": [1]}
    logged(memory, [(Timestamp(), LogLevel.BATCH, {"values": values, "nested": nested})])
    values.append(3)
    nested["a"].append(2)
    assert memory.most_recent_values == {"values": [1, 2], "nested": {"a": [1]}}


def test_mixed_types_in_one_key_read_back_as_logged():
    memory = InMemoryLogger()
    stamps = [Timestamp(batch=b) for b in range(5)]
    values = [1, 2.5, "three", None, 2**70]
    logged(memory, [(ts, LogLevel.BATCH, {"x": v}) for ts, v in zip(stamps, values)])
    assert [entry[2] for entry in memory.data["x"]] == values
    assert [type(entry[2]) for entry in memory.data["x"]] == [int, float, str, type(None), int]


def test_int_overflow_moves_the_key_to_exact_storage():
    memory = InMemoryLogger()
    logged(memory, [(Timestamp(), LogLevel.BATCH, {"n": 1}), (Timestamp(batch=1), LogLevel.BATCH, {"n": 2**64})])
    assert [entry[2] for entry in memory.data["n"]] == [1, 2**64]


def test_huge_counters_widen_the_time_rows():
    memory = InMemoryLogger()
    small, huge = Timestamp(token=5), Timestamp(token=2**40, batch=1)
    logged(memory, [(small, LogLevel.BATCH, {"loss": 1.0}), (huge, LogLevel.BATCH, {"loss": 0.5})])
    assert [entry[0] for entry in memory.data["loss"]] == [small, huge]
    np.testing.assert_array_equal(memory.get_timeseries("loss")["token"], [5, 2**40])


def test_tensor_values_become_a_numpy_array():
    memory = InMemoryLogger()
    logged(memory, [(Timestamp(batch=b), LogLevel.BATCH, {"t": torch.tensor(float(b))}) for b in range(3)])
    np.testing.assert_array_equal(memory.get_timeseries("t")["t"], np.array([0.0, 1.0, 2.0], dtype=np.float32))


def test_non_string_key_is_a_type_error():
    memory = InMemoryLogger()
    with pytest.raises(TypeError, match=r"log data keys must be strings, got 3 \(int\)"):
        logged(memory, [(Timestamp(), LogLevel.BATCH, {3: 1.0})])


@pytest.mark.slow
def test_memory_per_scalar_stays_small():
    memory = InMemoryLogger()
    state = State("run")
    logger = Logger(state, memory)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    calls = 20_000
    for batch in range(calls):
        state.timestamp = state.timestamp.to_next_batch(samples=32)
        logger.data_batch({"loss": batch * 0.001, "acc": 0.5, "lr": 0.001, "step": batch})
    state.timestamp = Timestamp()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert used / (calls * 4) < 40  # about 27 bytes measured; a tuple per value would be > 100


def test_data_is_one_dict_brought_up_to_date_on_each_read_and_changes_to_it_stay():
    memory = InMemoryLogger()
    state = State("run")
    logger = Logger(state, memory)
    logger.data_batch({"loss": 1.0})
    first = memory.data
    first_entry = first["loss"][0]
    first["notes"] = ["mine"]  # the caller's own change
    state.timestamp = state.timestamp.to_next_batch()
    logger.data_batch({"loss": 0.5, "acc": 0.25})
    second = memory.data
    assert second is first and second["notes"] == ["mine"]
    assert second["loss"][0] is first_entry  # taken in once, not rebuilt
    assert [(ts.batch, level, value) for ts, level, value in second["loss"]] == [(0, LogLevel.BATCH, 1.0),
                                                                              (1, LogLevel.BATCH, 0.5)]
    assert second["loss"][1][0] is second["acc"][0][0]  # one Timestamp per call, as Composer stored it
    del second["loss"]
    logger.data_batch({"loss": 0.25})
    assert [value for _, _, value in memory.data["loss"]] == [0.25]  # a deleted key comes back with what is new


def test_numpy_scalars_are_kept_as_logged():
    memory = InMemoryLogger()
    values = [np.float64(0.5), np.float32(0.25), np.int64(3)]
    logged(memory, [(Timestamp(batch=b), LogLevel.BATCH, {"x": v, "f": 1.5}) for b, v in enumerate(values)])
    assert [(type(value), value) for _, _, value in memory.data["x"]] == [(type(v), v) for v in values]
    assert type(memory.most_recent_values["x"]) is np.int64 and type(memory.most_recent_values["f"]) is float
