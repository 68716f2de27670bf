import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from composer_cfg import (
    ConfigError,
    Event,
    JSONLinesLogger,
    Logger,
    LogLevel,
    State,
    TensorboardLogger,
    Timestamp,
    TrainingLoop,
    build_logger,
)
from composer_cfg.run.records import read_records
from conftest import Recorder, ranks, until, needs

torch = needs("torch")
ea = needs("tensorboard.backend.event_processing.event_accumulator")
EventFileLoader = needs("tensorboard.backend.event_processing.event_file_loader").EventFileLoader
tensor_util = needs("tensorboard.util.tensor_util")


def read(directory: str | Path) -> ea.EventAccumulator:
    accumulator = ea.EventAccumulator(str(directory), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def train(logger: Logger, epochs: int = 2, batches: int = 3) -> None:
    loop = TrainingLoop(logger)
    logger.data_fit({"lr": 0.1, "optimizer": "sgd"})
    for epoch in loop.epochs(epochs):
        for batch in loop.batches(batches):
            logger.data_batch({"loss": 1.0 / (batch + 1), "np": np.float32(batch), "tensor": torch.tensor(2.0 * batch),
                               "vector": [1, 2], "phase": "train"})
        logger.data_epoch({"accuracy": 0.5 + 0.25 * epoch})


def test_scalars_read_back_with_exact_steps_and_values(caplog):
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        with Logger(State("run"), TensorboardLogger()) as logger:
            train(logger)
    events = read("run/tensorboard")
    assert sorted(events.Tags()["scalars"]) == ["accuracy", "loss", "np", "tensor"]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [
        (b, np.float32(1.0 / (b + 1))) for b in range(6)
    ]
    assert [(e.step, e.value) for e in events.Scalars("tensor")] == [(b, 2.0 * b) for b in range(6)]
    assert [(e.step, e.value) for e in events.Scalars("accuracy")] == [(3, 0.5), (6, 0.75)]
    (text,) = events.Tensors("hparams/text_summary")
    assert tensor_util.make_ndarray(text.tensor_proto)[0].decode() == (
        '| key | value |\n|---|---|\n| lr | 0.1000 |\n| optimizer | "sgd" |\n'
    )
    assert caplog.messages == [
        "TensorboardLogger: 'vector' is not a scalar (list); its values are not written",
        "TensorboardLogger: 'phase' is not a scalar (str); its values are not written",
    ]


def test_a_call_is_one_event_with_each_scalar_under_the_tag_tensorboardx_gives_its_key(caplog):
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        with Logger(State("run"), TensorboardLogger()) as logger:
            for batch in (4, 5):
                logger.state.timestamp = Timestamp(batch=batch)
                logger.state.log_time = 1000.25 + batch  # a replay's own time
                logger.data_batch({"loss/train": 0.5 * batch, "acc@1": np.float64(0.25), "note": "x",
                                   "metrics/accuracy": torch.tensor(float(batch)), "hist": [1, 2]})
    events = read("run/tensorboard")
    # "acc@1" is the tag add_scalar made of it: tensorboardX replaces what TensorBoard's names do not allow
    assert {tag: [(e.wall_time, e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]} == {
        "loss/train": [(1004.25, 4, 2.0), (1005.25, 5, 2.5)],
        "acc_1": [(1004.25, 4, 0.25), (1005.25, 5, 0.25)],
        "metrics/accuracy": [(1004.25, 4, 4.0), (1005.25, 5, 5.0)],
    }
    (event_file,) = Path("run/tensorboard").iterdir()
    summaries = [event for event in EventFileLoader(str(event_file)).Load() if event.HasField("summary")]
    assert [(event.step, [value.tag for value in event.summary.value]) for event in summaries] == [
        (4, ["loss/train", "acc_1", "metrics/accuracy"]), (5, ["loss/train", "acc_1", "metrics/accuracy"])]
    assert caplog.messages == [
        "TensorboardLogger: 'note' is not a scalar (str); its values are not written",
        "TensorboardLogger: 'hist' is not a scalar (list); its values are not written",
    ]


def test_without_a_log_time_an_event_carries_the_time_of_the_call():
    with Logger(State("run"), TensorboardLogger()) as logger:
        before = time.time()
        logger.data_batch({"loss": 1.0})
        after = time.time()
    (loss,) = read("run/tensorboard").Scalars("loss")
    assert before <= loss.wall_time <= after


def test_a_flush_or_a_checkpoint_puts_every_event_logged_before_it_on_disk():
    """Read back with TensorBoard's reader while the file is open, after each of 50 calls."""
    with Logger(State("run"), TensorboardLogger(flush_interval=1000)) as logger:
        logger.data_fit({"lr": 0.1})
        for batch in range(50):
            logger.state.timestamp = Timestamp(batch=batch)
            logger.data_batch({"loss": float(batch)})
            if batch % 2:
                logger.run_event(Event.BATCH_CHECKPOINT)
            else:
                logger.flush()
            events = read("run/tensorboard")
            assert [(e.step, e.value) for e in events.Scalars("loss")] == [(b, float(b)) for b in range(batch + 1)]
            assert len(events.Tensors("hparams/text_summary")) == 1


def test_many_steps_are_all_kept():
    with Logger(State("run"), TensorboardLogger(flush_interval=1000)) as logger:
        for step in range(3000):
            logger.state.timestamp = logger.state.timestamp.copy(batch=step)
            logger.data_batch({"x": float(step)})
    assert [e.step for e in read("run/tensorboard").Scalars("x")] == list(range(3000))


def test_threshold():
    with Logger(State("run"), TensorboardLogger(log_level="epoch")) as logger:
        train(logger, epochs=1)
    assert read("run/tensorboard").Tags()["scalars"] == ["accuracy"]


def test_flushes_publish_the_event_file():
    published = Recorder()
    with Logger(State("run"), [TensorboardLogger(flush_interval=2), published]) as logger:
        logger.run_event("init")
        train(logger, epochs=1, batches=4)
    (event_file,) = Path("run/tensorboard").glob("events.out.tfevents.*.rank0")
    artifacts = [c for c in published.calls if c[0] == "artifact"]
    # batch_end at batches 2 and 4, epoch_end, fit_end, close
    assert artifacts == [("artifact", LogLevel.FIT, f"run/tensorboard/{event_file.name}", event_file.absolute(), True)] * 5


def test_rank_zero_only_keeps_other_ranks_quiet():
    with Logger(State("run", dist_info=ranks(2, rank=1)), TensorboardLogger()) as logger:
        logger.run_event("init")
        train(logger, epochs=1)
    assert not Path("run").exists()


def test_every_rank_writing_needs_rank_in_the_directory(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=r", "logger/destinations=[tensorboard]",
                                "logger.destinations.tensorboard.rank_zero_only=false"])
    assert caught.value.problems == [
        "logger.destinations.tensorboard.log_dir: template '{run_name}/tensorboard' has no {rank} field, so the 2 ranks "
        "of this run would write the same file; add {rank}, e.g. 'logs-rank{rank}.txt' "
        "(from logger/destinations/tensorboard.yaml in pkg://composer_cfg.conf)"
    ]
    overrides = ["run_name=r", "logger/destinations=[tensorboard]", "logger.destinations.tensorboard.rank_zero_only=false",
                 'logger.destinations.tensorboard.log_dir="{run_name}/tb-rank{rank}"']
    with build_logger(overrides=overrides) as logger:
        logger.data_batch({"x": 1.0})
    assert [e.value for e in read("r/tb-rank1").Scalars("x")] == [1.0]


def test_a_second_writer_in_the_same_directory_keeps_the_first_writers_events():
    # tensorboardX names event files by the second they were created; two in the same second
    # (a resumed run, a sync) must not share a name, or the second truncates the first.
    for batches in (range(0, 3), range(3, 5)):
        with Logger(State("run"), TensorboardLogger()) as logger:
            for batch in batches:
                logger.state.timestamp = Timestamp(batch=batch)
                logger.data_batch({"loss": float(batch)})
    assert [(e.step, e.value) for e in read("run/tensorboard").Scalars("loss")] == [(b, float(b)) for b in range(5)]
    assert len(list(Path("run/tensorboard").iterdir())) == 2


def test_a_later_writer_sorts_after_an_earlier_one_whose_clock_was_ahead():
    # Readers take a directory's event files in name order, and the name starts with the second
    # the file was made: an attempt on a node whose clock was an hour ahead would come after the
    # one that continued it, and a reader would see steps 3, 4, then 0, 1, 2.
    directory = Path("run/tensorboard")
    with Logger(State("run"), TensorboardLogger()) as logger:
        for batch in range(3):
            logger.state.timestamp = Timestamp(batch=batch)
            logger.data_batch({"loss": float(batch)})
    (first,) = directory.iterdir()
    name = first.name.split(".")  # events.out.tfevents.<second>.<host>...
    name[3] = str(int(name[3]) + 3600)
    ahead = first.rename(directory / ".".join(name))
    with Logger(State("run"), TensorboardLogger()) as logger:
        for batch in range(3, 5):
            logger.state.timestamp = Timestamp(batch=batch)
            logger.data_batch({"loss": float(batch)})
    assert sorted(directory.iterdir())[0] == ahead
    assert [(e.step, e.value) for e in read(directory).Scalars("loss")] == [(b, float(b)) for b in range(5)]


def test_composer_positional_order_log_dir_flush_interval_rank_zero_only():
    destination = TensorboardLogger("tb/{run_name}", 2, False)
    assert (destination.flush_interval, destination.rank_zero_only) == (2, False)
    with Logger(State("run"), destination) as logger:
        train(logger, epochs=1)
    assert read("tb/run").Scalars("loss")[-1].step == 2


@pytest.mark.slow
def test_flush_seconds_flushes_at_the_first_event_once_they_passed(clock):
    published = Recorder()
    with Logger(State("run"), [TensorboardLogger(flush_interval=1000, flush_seconds=5), published]) as logger:
        logger.run_event("init")
        logger.state.timestamp = logger.state.timestamp.copy(batch=1)
        logger.data_batch({"loss": 0.5})
        clock.now = 4.9
        logger.run_event("batch_start")
        assert [c for c in published.calls if c[0] == "artifact"] == []
        clock.now = 5.0
        logger.run_event("batch_start")  # the flush is due: the writer's thread does it, in order
        assert until(lambda: len([c for c in published.calls if c[0] == "artifact"]) == 1)
        assert [(e.step, e.value) for e in read("run/tensorboard").Scalars("loss")] == [(1, 0.5)]  # on disk
        clock.now = 9.9
        logger.run_event("batch_start")
        assert len([c for c in published.calls if c[0] == "artifact"]) == 1
    assert [(e.step, e.value) for e in read("run/tensorboard").Scalars("loss")] == [(1, 0.5)]


def test_a_step_beyond_64_bits_is_refused_at_the_call_for_tensorboard_alone_and_the_rest_is_written():
    state = State("run")
    with Logger(state, {"tensorboard": TensorboardLogger(), "jsonl": JSONLinesLogger()}) as logger:
        logger.data_batch({"loss": 0.5})
        state.timestamp = Timestamp(batch=2**63)  # as a hand-set timestamp or a damaged records file has it
        with pytest.raises(ValueError, match=r"^step 9223372036854775808 is beyond the largest step a tracker "
                                             r"stores \(2\*\*63 - 1\); the call's values were not logged there"):
            logger.data_batch({"loss": 0.25})
        state.timestamp = Timestamp(batch=3)
        logger.data_batch({"loss": 0.125})  # written in the same batch of writes as the refused one
    assert [(e.step, e.value) for e in read("run/tensorboard").Scalars("loss")] == [(0, 0.5), (3, 0.125)]
    assert [(r["batch"], r["data"]["loss"]) for r in read_records("run/metrics-rank0.jsonl")] == [
        (0, 0.5), (2**63, 0.25), (3, 0.125)]


ATTEMPT = """
import os, signal, sys
from composer_cfg import Event, JSONLinesLogger, Logger, State, TensorboardLogger, Timestamp
kill_at = int(sys.argv[1])
logger = Logger(State("live"), {"tensorboard": TensorboardLogger(flush_interval=1), "jsonl": JSONLinesLogger()},
                resume="auto")
logger.run_event(Event.INIT)
state = logger.state
for batch in range(int(state.timestamp.batch), 10):
    state.timestamp = Timestamp(batch=batch)
    logger.data_batch({"loss": float(batch), "attempt": float(kill_at)})
    state.timestamp = Timestamp(batch=batch + 1)
    logger.run_event(Event.BATCH_END)
    if batch == kill_at:
        logger.flush()  # what a scheduled flush does on the writer's thread a moment later
        os.kill(os.getpid(), signal.SIGKILL)
    if batch % 4 == 3:
        logger.run_event(Event.BATCH_CHECKPOINT)  # marks batch + 1
logger.close()
"""


def test_a_resumable_runs_events_are_on_disk_as_logged_and_a_killed_attempts_later_ones_are_cut_back(tmp_path):
    def attempt(kill_at: int) -> int:
        return subprocess.run([sys.executable, "-c", ATTEMPT, str(kill_at)], cwd=tmp_path, timeout=120).returncode

    def steps() -> list[tuple[int, float, float]]:
        events = read(tmp_path / "live" / "tensorboard")
        return [(e.step, e.value, a.value) for e, a in zip(events.Scalars("loss"), events.Scalars("attempt"))]

    assert attempt(kill_at=5) == -signal.SIGKILL  # checkpoints after batches 3 (mark 4); killed after 5
    assert steps() == [(b, float(b), 5.0) for b in range(6)]  # live: past the checkpoint, before any close
    assert attempt(kill_at=1) == 0  # resumes at batch 4: never reaches batch 1 again
    assert steps() == [(b, float(b), 5.0) for b in range(4)] + [(b, float(b), 1.0) for b in range(4, 10)]
    assert len(list((tmp_path / "live" / "tensorboard").iterdir())) == 2  # an event file per attempt
    assert [r["batch"] for r in read_records(tmp_path / "live")] == list(range(10))


def test_a_resumable_run_killed_before_its_first_checkpoint_leaves_no_event_of_its_own(tmp_path):
    assert subprocess.run([sys.executable, "-c", ATTEMPT, "2"], cwd=tmp_path, timeout=120).returncode == -signal.SIGKILL
    assert subprocess.run([sys.executable, "-c", ATTEMPT, "99"], cwd=tmp_path, timeout=120).returncode == 0
    events = read(tmp_path / "live" / "tensorboard")
    assert [(e.step, e.value) for e in events.Scalars("attempt")] == [(b, 99.0) for b in range(10)]
    assert len(list((tmp_path / "live" / "tensorboard").iterdir())) == 1  # the killed attempt's file removed
