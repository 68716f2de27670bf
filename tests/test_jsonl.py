import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from composer_cfg import JSONLinesLogger, Logger, LogLevel, State, TrainingLoop
from composer_cfg.run.records import read_records
from conftest import Recorder, ranks, needs

torch = needs("torch")


def records(path="run/metrics-rank0.jsonl"):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_every_call_is_one_record_with_its_time_point():
    with Logger(State("run"), JSONLinesLogger()) as logger:
        loop = TrainingLoop(logger)
        logger.data_fit({"lr": 0.1})
        for epoch in loop.epochs(2):
            for batch in loop.batches(2, samples=8):
                logger.data_batch({"loss": 1.0 / (batch + 1)})
            logger.data_epoch({"epoch": epoch})
    written = records()
    assert [{k: v for k, v in r.items() if k != "time"} for r in written] == [
        {"level": "FIT", "run_name": "run", "rank": 0, "epoch": 0, "batch": 0, "batch_in_epoch": 0, "sample": 0,
         "data": {"lr": 0.1}},
        {"level": "BATCH", "run_name": "run", "rank": 0, "epoch": 0, "batch": 0, "batch_in_epoch": 0, "sample": 0,
         "data": {"loss": 1.0}},
        {"level": "BATCH", "run_name": "run", "rank": 0, "epoch": 0, "batch": 1, "batch_in_epoch": 1, "sample": 8,
         "data": {"loss": 0.5}},
        {"level": "EPOCH", "run_name": "run", "rank": 0, "epoch": 0, "batch": 2, "batch_in_epoch": 2, "sample": 16,
         "data": {"epoch": 0}},
        {"level": "BATCH", "run_name": "run", "rank": 0, "epoch": 1, "batch": 2, "batch_in_epoch": 0, "sample": 16,
         "data": {"loss": 1 / 3}},
        {"level": "BATCH", "run_name": "run", "rank": 0, "epoch": 1, "batch": 3, "batch_in_epoch": 1, "sample": 24,
         "data": {"loss": 0.25}},
        {"level": "EPOCH", "run_name": "run", "rank": 0, "epoch": 1, "batch": 4, "batch_in_epoch": 2, "sample": 32,
         "data": {"epoch": 1}},
    ]
    times = [r["time"] for r in written]
    assert times == sorted(times) and all(isinstance(t, float) for t in times)


def test_threshold_rank_and_file_name():
    state = State("run", dist_info=ranks(4, rank=3))
    with Logger(state, JSONLinesLogger(log_level="epoch")) as logger:
        logger.data_batch({"loss": 1.0})
        logger.data_epoch({"acc": 0.5})
    (record,) = records("run/metrics-rank3.jsonl")
    assert (record["level"], record["rank"], record["data"]) == ("EPOCH", 3, {"acc": 0.5})


def test_records_are_written_in_whole_groups_of_flush_interval():
    destination = JSONLinesLogger(flush_interval=3)
    logger = Logger(State("run"), destination)
    logger.data_batch({"i": 0})
    logger.data_batch({"i": 1})
    assert records() == []  # the file opened at the first record; nothing written yet
    logger.data_batch({"i": 2})
    assert [r["data"]["i"] for r in records()] == [0, 1, 2]
    logger.data_batch({"i": 3})
    assert len(records()) == 3
    logger.close()
    assert [r["data"]["i"] for r in records()] == [0, 1, 2, 3]
    assert Path("run/metrics-rank0.jsonl").read_text().endswith("}\n")


def test_epoch_end_flushes_and_publishes_the_file():
    published = Recorder()
    with Logger(State("run"), [JSONLinesLogger(), published]) as logger:
        logger.run_event("init")
        loop = TrainingLoop(logger)
        for _ in loop.epochs(1):
            for _ in loop.batches(2):
                logger.data_batch({"x": 1})
            assert not records()  # still pending
        assert len(records()) == 2
    artifacts = [c for c in published.calls if c[0] == "artifact"]
    assert artifacts[0] == ("artifact", LogLevel.FIT, "run/metrics-rank0.jsonl",
                            Path("run/metrics-rank0.jsonl").absolute(), True)


def test_values_are_made_json_safe():
    data = {"np_float": np.float32(0.5), "np_int": np.int64(7), "array": np.array([[1, 2], [3, 4]]),
            "tensor": torch.tensor(2.5), "tensor_vec": torch.tensor([1.0, 2.0]), "tuple": (1, "a"),
            "nested": {"list": [1, {"deep": True}]}, "none": None, "other": Path("x")}
    with Logger(State("run"), JSONLinesLogger()) as logger:
        logger.data_batch(data)
    assert records()[0]["data"] == {"np_float": 0.5, "np_int": 7, "array": [[1, 2], [3, 4]], "tensor": 2.5,
                                    "tensor_vec": [1.0, 2.0], "tuple": [1, "a"], "nested": {"list": [1, {"deep": True}]},
                                    "none": None, "other": "x"}


def test_non_finite_floats_are_strict_json_and_read_back_as_floats():
    with Logger(State("run"), JSONLinesLogger()) as logger:
        logger.data_batch({"nan": math.nan, "inf": math.inf, "neg": -math.inf, "nested": [np.float32("nan"), 1.0]})
    line = Path("run/metrics-rank0.jsonl").read_text()
    assert '"data": {"nan": "NaN", "inf": "Infinity", "neg": "-Infinity", "nested": ["NaN", 1.0]}' in line
    json.loads(line, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))
    (record,) = read_records("run/metrics-rank0.jsonl")
    data = record["data"]
    assert math.isnan(data["nan"]) and data["inf"] == math.inf and data["neg"] == -math.inf
    assert math.isnan(data["nested"][0]) and data["nested"][1] == 1.0


def test_non_string_key_is_a_type_error_and_nothing_is_written():
    logger = Logger(State("run"), JSONLinesLogger(flush_interval=1))
    with pytest.raises(TypeError, match=r"log data keys must be strings, got 3 \(int\)"):
        logger.data_batch({3: 1.0})
    logger.data_batch({"ok": 1})
    logger.close()
    assert [r["data"] for r in records()] == [{"ok": 1}]


def test_existing_file_is_not_clobbered():
    Path("run").mkdir()
    Path("run/metrics-rank0.jsonl").write_text("old\n")
    logger = Logger(State("run"), JSONLinesLogger(flush_interval=1))
    with pytest.raises(FileExistsError, match="metrics file '.*/run/metrics-rank0.jsonl' already exists"):
        logger.data_batch({"x": 1})
    assert Path("run/metrics-rank0.jsonl").read_text() == "old\n"


def test_reader_reads_every_rank_of_a_run_directory():
    for rank in range(2):
        with Logger(State("run", dist_info=ranks(2, rank=rank)), JSONLinesLogger()) as logger:
            logger.data_batch({"rank_value": rank})
    assert [(r["rank"], r["data"]["rank_value"]) for r in read_records("run")] == [(0, 0), (1, 1)]


def test_reader_skips_a_torn_last_line_and_says_so(caplog):
    Path("m.jsonl").write_text('{"batch": 0, "rank": 0, "data": {"x": 1}}\n{"batch": 1, "rank": 0, "da')
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        assert [r["data"] for r in read_records("m.jsonl")] == [{"x": 1}]
    assert caplog.messages == [
        "m.jsonl: skipped the torn last line 2 (Unterminated string starting at: line 1 column 25 (char 24))"
    ]


def test_reader_refuses_a_bad_line_in_the_middle():
    Path("m.jsonl").write_text('{"data": {}}\nnot json\n{"data": {}}\n')
    with pytest.raises(ValueError, match="m.jsonl:2: not a JSON record"):
        list(read_records("m.jsonl"))


def test_a_cyclic_value_is_a_value_error():
    loop: list = []
    loop.append(loop)
    logger = Logger(State("run"), JSONLinesLogger())
    with pytest.raises(ValueError, match=r"log data value for key 'loop\[0\]' contains itself"):
        logger.data_batch({"loop": loop})
    logger.close()


def test_control_characters_quotes_and_backslashes_stay_inside_one_record():
    data = {'k", "forged': "v\n{\"level\": \"FIT\"}", "esc\x1b": "\u2028\\\x00", "ok": 1}
    with Logger(State("run"), JSONLinesLogger()) as logger:
        logger.data_batch(data)
        logger.data_batch({"ok": 2})
    assert len(Path("run/metrics-rank0.jsonl").read_text().splitlines()) == 2
    assert [r["data"] for r in records()] == [data, {"ok": 2}]


def test_flush_seconds_writes_pending_records_at_the_first_call_once_they_passed(clock):
    destination = JSONLinesLogger(flush_interval=1000, flush_seconds=5)
    logger = Logger(State("run"), destination)
    logger.data_batch({"i": 0})
    clock.now = 4.9
    logger.data_batch({"i": 1})
    assert records() == []
    clock.now = 5.0  # the time alone writes nothing: the next call does
    assert records() == []
    logger.data_batch({"i": 2})
    assert [r["data"]["i"] for r in records()] == [0, 1, 2]
    clock.now = 9.9  # counted from that write
    logger.data_batch({"i": 3})
    assert len(records()) == 3
    clock.now = 10.0  # an event is an opportunity too
    logger.run_event("batch_start")
    assert [r["data"]["i"] for r in records()] == [0, 1, 2, 3]
    logger.close()


def test_a_write_by_count_restarts_the_seconds(clock):
    logger = Logger(State("run"), JSONLinesLogger(flush_interval=2, flush_seconds=5))
    logger.data_batch({"i": 0})
    clock.now = 4.0
    logger.data_batch({"i": 1})  # written: 2 records
    clock.now = 8.0
    logger.data_batch({"i": 2})
    assert len(records()) == 2  # 4 s since the last write
    clock.now = 9.0
    logger.data_batch({"i": 3})  # by count again
    clock.now = 13.0
    logger.data_batch({"i": 4})
    assert len(records()) == 4
    clock.now = 14.0
    logger.data_batch({"i": 5})
    assert len(records()) == 6
    logger.close()


def test_without_flush_seconds_the_clock_is_never_read(clock):
    with Logger(State("run"), JSONLinesLogger(flush_interval=2)) as logger:
        loop = TrainingLoop(logger)
        for _ in loop.epochs(2):
            for _ in loop.batches(3):
                logger.data_batch({"x": 1})
    assert clock.reads == 0 and len(records()) == 6
