"""``offload_writers``: the JSON Lines and TensorBoard writers write on threads of their own, and
what they write is what they would have written on the logging thread."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from composer_cfg import (FileLogger, InMemoryLogger, JSONLinesLogger, Logger, LoggerDestination, State,
                          TensorboardLogger, TrainingLoop)
from composer_cfg.offload import Offloaded
from composer_cfg.run.records import read_records


def run(offload: bool, name: str) -> Logger:
    logger = Logger(State(name), {"jsonl": JSONLinesLogger(flush_interval=7), "tb": TensorboardLogger(flush_interval=5),
                                  "memory": InMemoryLogger()}, offload_writers=offload)
    with logger:
        loop = TrainingLoop(logger)
        logger.log_hyperparameters({"lr": 0.1, "model": {"depth": 2}})
        for epoch in loop.epochs(2):
            for batch in loop.batches(30):
                logger.data_batch({"loss": 1.0 / (batch + 1), "acc": epoch + batch / 100})
            logger.data_epoch({"loss/epoch": float(epoch)})
    return logger


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(directory)).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_offloaded_writers_write_what_they_write_on_the_logging_thread():
    run(False, "inline")
    logger = run(True, "offloaded")
    inline = [(r["level"], r["epoch"], r["batch"], r["data"]) for r in read_records("inline/metrics-rank0.jsonl")]
    offloaded = [(r["level"], r["epoch"], r["batch"], r["data"]) for r in read_records("offloaded/metrics-rank0.jsonl")]
    assert offloaded == inline and len(inline) == 63  # hyperparameters, 60 batches, 2 epochs
    assert scalars(Path("offloaded/tensorboard")) == scalars(Path("inline/tensorboard"))
    assert len(scalars(Path("offloaded/tensorboard"))["loss"]) == 60
    assert logger.destinations["memory"].most_recent_values["loss/epoch"] == 1.0  # not offloadable: as before


def test_each_record_keeps_the_time_of_its_call_not_of_its_writing():
    logger = Logger(State("timed"), {"jsonl": JSONLinesLogger()}, offload_writers=True)
    logger.state.log_time = 1234.5
    logger.data_batch({"loss": 1.0})
    logger.state.log_time = None
    logger.data_batch({"loss": 2.0})
    logger.close()
    first, second = read_records("timed/metrics-rank0.jsonl")
    assert first["time"] == 1234.5 and second["time"] > 1_700_000_000


def test_eight_threads_calls_each_reach_the_file_once_in_each_threads_order():
    logger = Logger(State("threads"), {"jsonl": JSONLinesLogger()}, offload_writers=True)

    def log(thread: int) -> None:
        for index in range(1000):
            logger.data_batch({"thread": thread, "index": index})

    threads = [threading.Thread(target=log, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.close()
    records = [r["data"] for r in read_records("threads/metrics-rank0.jsonl")]
    assert len(records) == 8000
    for thread in range(8):
        assert [r["index"] for r in records if r["thread"] == thread] == list(range(1000))


def test_a_checkpoint_waits_until_everything_logged_before_it_is_on_disk():
    logger = Logger(State("ckpt"), {"jsonl": JSONLinesLogger(flush_interval=10_000), "tb": TensorboardLogger()},
                    offload_writers=True)
    logger.run_event("init")
    for batch in range(50):
        logger.state.timestamp = logger.state.timestamp.copy(batch=batch)
        logger.data_batch({"loss": float(batch)})
    logger.run_event("batch_checkpoint")
    assert [r["batch"] for r in read_records("ckpt/metrics-rank0.jsonl")] == list(range(50))  # before close
    assert [step for step, _ in scalars(Path("ckpt/tensorboard"))["loss"]] == list(range(50))
    logger.close()


def test_a_write_that_fails_on_the_writers_thread_is_raised_at_the_next_checkpoint_naming_the_destination(caplog):
    logger = Logger(State("full"), {"full": JSONLinesLogger("/dev/full", overwrite=True, flush_interval=1),
                                    "memory": InMemoryLogger()}, offload_writers=True)
    logger.data_batch({"loss": 1.0})
    with pytest.raises(OSError) as raised:
        logger.run_event("batch_checkpoint")
    assert raised.value.errno == 28
    assert any("raised by destination 'full' in checkpoint_saved: OSError" in note for note in raised.value.__notes__)
    assert logger.destinations["memory"].most_recent_values == {"loss": 1.0}  # the others keep logging
    logger.close()  # the same failure again is counted, not raised (as for any destination)
    assert any("destination 'full' failed again in close (OSError: [Errno 28]" in m for m in caplog.messages)


def test_only_writers_that_allow_it_are_offloaded():
    assert (JSONLinesLogger.offloadable, TensorboardLogger.offloadable) == (True, True)
    assert InMemoryLogger.offloadable is False  # read at once
    # A text log offloads only when it captures nothing: data lines stay between printed ones
    assert FileLogger().offloadable is False and FileLogger(capture_stderr=False).offloadable is False
    assert FileLogger(capture_stdout=False, capture_stderr=False).offloadable is True
    with pytest.raises(TypeError, match="offload_writers must be true or false, got 'yes'"):
        Logger(State("x"), offload_writers="yes")


def test_a_writer_that_falls_behind_makes_logging_wait_instead_of_queueing_without_bound():
    writing, release, written = threading.Event(), threading.Event(), []
    offloaded = Offloaded("slow", limit=2, batch=1)  # woken at every call
    state = State("slow")

    def write(snapshot, index):
        writing.set()
        release.wait(30)
        written.append(index)

    offloaded.later(write, state, 0)
    assert writing.wait(30)  # the first call is being written (held)
    for index in (1, 2):  # two waiting: the limit
        offloaded.later(write, state, index)
    fourth = threading.Thread(target=offloaded.later, args=(write, state, 3))
    fourth.start()
    fourth.join(0.5)
    assert fourth.is_alive()  # waits for the writer, does not queue a third call
    release.set()
    fourth.join(30)
    assert offloaded.now(lambda: written) == [0, 1, 2, 3]
    offloaded.stop()


class Flaky(LoggerDestination):
    """An offloadable destination whose data calls fail when asked to, and that says when a
    `marker` call was written (once its thread has written it, it has also kept any failure
    of the calls before it)."""

    offloadable = True
    thread_safe = True

    def __init__(self, fail_at_init: bool = False) -> None:
        self.written, self.closed, self.fail_at_init = [], False, fail_at_init
        self.marker_written = threading.Event()

    def init(self, state, logger):
        if self.fail_at_init:
            raise FileExistsError("flaky.jsonl already exists")

    def log_data(self, state, log_level, data):
        if "fail" in data:
            raise OSError("disk hiccup")
        self.written.append(data)
        if "marker" in data:
            self.marker_written.set()

    def close(self, state, logger):
        self.closed = True


def test_a_failed_write_is_raised_at_the_next_call_which_is_written_all_the_same():
    flaky = Flaky()
    logger = Logger(State("flaky"), {"flaky": flaky}, offload_writers=True)
    logger.data_batch({"fail": 1})
    known = False
    for call in (lambda: logger.data_batch({"marker": 1}), logger.flush):  # a flush wakes the writer
        try:
            call()
        except OSError:
            known = True  # the thread had already failed: raised here, after queueing the call
    assert flaky.marker_written.wait(30)  # the failure is known by now
    with contextlib.nullcontext() if known else pytest.raises(OSError, match="disk hiccup"):
        logger.data_batch({"loss": 2.0})
    logger.close()
    assert flaky.written == [{"marker": 1}, {"loss": 2.0}] and flaky.closed


def test_close_still_closes_the_destination_after_a_failed_write_and_raises_that_failure():
    flaky = Flaky()
    logger = Logger(State("flaky"), {"flaky": flaky}, offload_writers=True)
    logger.data_batch({"fail": 1})
    with pytest.raises(OSError, match="disk hiccup"):
        logger.close()
    assert flaky.closed


def test_a_destination_failing_at_init_still_fails_the_start():
    logger = Logger(State("flaky"), {"flaky": Flaky(fail_at_init=True)}, offload_writers=True)
    with pytest.raises(FileExistsError, match="flaky.jsonl already exists"):
        logger.run_event("init")


def test_a_call_after_close_is_refused_and_starts_no_thread():
    offloaded = Offloaded("closed")
    offloaded.stop()
    with pytest.raises(RuntimeError, match="the writer of 'closed' is closed: it writes no more"):
        offloaded.later(lambda state: None, State("closed"))
    assert not [t for t in threading.enumerate() if t.name == "composer_cfg-offload-closed"]
