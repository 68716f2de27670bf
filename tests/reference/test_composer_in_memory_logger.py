"""Composer 0.7.1/0.8.0's ``tests/loggers/test_in_memory_logger.py``, replayed on composer_cfg."""

import numpy as np

from composer_cfg import InMemoryLogger, Logger, LogLevel, State, Time, Timestamp


def test_in_memory_logger():
    state = State("run")
    in_memory_logger = InMemoryLogger(LogLevel.EPOCH)
    logger = Logger(state, destinations=[in_memory_logger])
    logger.data_batch({"batch": "should_be_ignored"})
    logger.data_epoch({"epoch": "should_be_recorded"})
    state.timestamp = state.timestamp.to_next_batch(samples=1, tokens=1)
    logger.data_epoch({"epoch": "should_be_recorded_and_override"})

    assert "batch" not in in_memory_logger.data  # the threshold is EPOCH
    assert len(in_memory_logger.data["epoch"]) == 2
    timestamp, _, data = in_memory_logger.data["epoch"][0]
    assert timestamp.batch == 0
    assert data == "should_be_recorded"
    timestamp, _, data = in_memory_logger.data["epoch"][1]
    assert timestamp.batch == 1
    assert data == "should_be_recorded_and_override"
    assert in_memory_logger.most_recent_values["epoch"] == "should_be_recorded_and_override"
    assert in_memory_logger.most_recent_timestamps["epoch"].batch == 1


def test_in_memory_logger_get_timeseries():
    in_memory_logger = InMemoryLogger(LogLevel.BATCH)
    expected = {"accuracy/val": [], "batch": [], "batch_in_epoch": []}
    for i in range(10):
        batch, batch_in_epoch = i, i % 3
        timestamp = Timestamp(epoch=Time(0, "ep"), batch=Time(batch, "ba"), batch_in_epoch=Time(batch_in_epoch, "ba"),
                              sample=Time(0, "sp"), sample_in_epoch=Time(0, "sp"), token=Time(0, "tok"),
                              token_in_epoch=Time(0, "tok"))
        datapoint = i / 3
        # Upstream hands log_data a mock with a `timestamp`; a real State is what destinations get here.
        in_memory_logger.log_data(state=State("run", timestamp=timestamp), log_level=LogLevel.BATCH,
                                  data={"accuracy/val": datapoint})
        expected["accuracy/val"].append(datapoint)
        expected["batch"].append(batch)
        expected["batch_in_epoch"].append(batch_in_epoch)

    timeseries = in_memory_logger.get_timeseries("accuracy/val")
    for key, values in expected.items():
        assert np.all(timeseries[key] == np.array(values))
