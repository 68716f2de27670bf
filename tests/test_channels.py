"""Channels, with real threads, real files and real spools: every record logged is written,
spooled or counted as dropped, once; each thread's records keep their order; barriers are bounded
and a sink that stops answering is left behind, never allowed to stall or fail training."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from composer_cfg import (
    ConfigError,
    DeliveryPolicy,
    Event,
    InMemoryLogger,
    JSONLinesLogger,
    KeyedSink,
    Kind,
    Logger,
    MLFlowLogger,
    Sink,
    State,
    TensorboardLogger,
    WandBLogger,
)
from composer_cfg.core.sink import refuse
from composer_cfg.run.records import read_records
from composer_cfg.run.run_record import read_manifest
from conftest import until, needs

EventAccumulator = needs("tensorboard.backend.event_processing.event_accumulator").EventAccumulator

THREADS, PER_THREAD = 4, 2000


class Scripted(Sink):
    """A sink on a thread channel that keeps what it is given; it can be held (a back end that does
    not answer until `release` is set) or made to fail on a record holding ``"fail"``."""

    channel_kind = "thread"

    def __init__(self, delivery: DeliveryPolicy = DeliveryPolicy(), remote: bool = False, hold: bool = False) -> None:
        self.delivery_policy = delivery
        self.remote = remote  # type: ignore[misc]
        self.written: list[dict[str, Any]] = []
        self.writing, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()
        self.flushes: list[bool] = []
        self.closed_with = None

    def write(self, records):
        self.writing.set()
        self.release.wait(60)
        for record in records:
            if record.kind is Kind.DATA:
                if "fail" in record.payload:
                    raise OSError(f"disk hiccup {record.payload['fail']}")
                self.written.append(record.payload)

    def flush(self, durable):
        self.flushes.append(durable)

    def close(self, status):
        self.closed_with = status

    def identity(self):
        return {"run_id": "abc"}


def log_from_threads(logger: Logger) -> None:
    """4 threads log 2000 records each, released together."""
    barrier = threading.Barrier(THREADS)

    def log(thread: int) -> None:
        barrier.wait(30)
        for index in range(PER_THREAD):
            logger.data_batch({"thread": thread, "i": index})

    threads = [threading.Thread(target=log, args=(thread,)) for thread in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)


def pairs(data: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(d["thread"], d["i"]) for d in data]


def in_thread_order(found: list[tuple[int, int]]) -> bool:
    return all([i for t, i in found if t == thread] == sorted(i for t, i in found if t == thread)
               for thread in range(THREADS))


def test_a_thread_channel_writes_every_record_once_in_each_threads_order():
    sink = Scripted()
    logger = Logger(State("run"), {"sink": sink})
    log_from_threads(logger)
    logger.close()
    assert sorted(pairs(sink.written)) == sorted(itertools.product(range(THREADS), range(PER_THREAD)))
    assert in_thread_order(pairs(sink.written))
    assert sink.closed_with is not None and sink.closed_with.value == "FINISHED"


def test_with_drop_every_record_is_delivered_or_spooled_once_and_the_spool_holds_exactly_the_rest():
    sink = Scripted(DeliveryPolicy(queue_size=50, when_full="drop", undelivered="spool", timeout=30), remote=True)
    logger = Logger(State("run"), {"tracker": sink})
    log_from_threads(logger)
    logger.close()
    report = logger.report()["tracker"]
    spooled = [(r["data"]["thread"], r["data"]["i"]) for r in read_records(report["spool"])]
    delivered = pairs(sink.written)
    assert report["delivered"] + report["spooled"] == THREADS * PER_THREAD
    assert (report["dropped"], report["queued"], report["waits"]) == (0, 0, 0)  # drop never waits
    assert (len(delivered), len(spooled)) == (report["delivered"], report["spooled"])
    assert sorted(delivered + spooled) == sorted(itertools.product(range(THREADS), range(PER_THREAD)))
    assert in_thread_order(delivered) and in_thread_order(spooled)
    assert 0 < report["peak_queued"] <= 50
    manifest = read_manifest(Path("run/run-rank0.json"))
    assert manifest["spools"] == {"undelivered-tracker-rank0.jsonl": "tracker"}
    assert manifest["sync"]["undelivered-tracker-rank0.jsonl"]["tracker"]["identity"] == {"run_id": "abc"}


def test_with_block_the_logging_threads_wait_for_room_and_nothing_leaves_the_queue():
    sink = Scripted(DeliveryPolicy(queue_size=10, when_full="block", undelivered="spool", timeout=60), remote=True)
    logger = Logger(State("run"), {"tracker": sink})
    log_from_threads(logger)
    logger.close()
    report = logger.report()["tracker"]
    assert (report["delivered"], report["spooled"], report["dropped"]) == (THREADS * PER_THREAD, 0, 0)
    assert in_thread_order(pairs(sink.written)) and report["peak_queued"] <= 10
    assert not Path("run").exists()  # nothing spooled: no manifest either


@pytest.mark.slow
def test_a_block_that_times_out_is_not_repeated_until_the_sink_takes_something_again():
    sink = Scripted(DeliveryPolicy(queue_size=2, when_full="block", undelivered="spool", timeout=0.2), remote=True,
                    hold=True)
    logger = Logger(State("run"), {"tracker": sink})
    logger.data_batch({"i": 0})
    assert sink.writing.wait(30)  # the worker holds the first record: the back end does not answer
    started = time.monotonic()
    for index in range(1, 12):
        logger.data_batch({"i": index})
    assert time.monotonic() - started < 5  # one wait of 0.2 s for the outage, not one per call
    report = logger.report()["tracker"]
    assert (report["waits"], report["spooled"], report["queued"]) == (1, 10, 2)  # the one being sent counts
    sink.release.set()
    logger.close()
    assert [d["i"] for d in sink.written] == [0, 1] and logger.report()["tracker"]["delivered"] == 2
    assert [r["data"]["i"] for r in read_records(logger.report()["tracker"]["spool"])] == list(range(2, 12))


@pytest.mark.slow
def test_a_tracker_that_stops_answering_costs_one_timeout_at_a_checkpoint_and_training_goes_on(caplog):
    sink = Scripted(DeliveryPolicy(queue_size=100, when_full="drop", undelivered="spool", timeout=1.0), remote=True,
                    hold=True)
    logger = Logger(State("run"), {"tracker": sink, "memory": InMemoryLogger()})
    logger.run_event("init")
    logger.data_batch({"i": 0})
    assert sink.writing.wait(30)  # the server stops answering mid-run
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        for index in range(1, 31):
            logger.data_batch({"i": index})
            if index % 10 == 0:
                logger.run_event("batch_checkpoint")  # no error: left behind, spooled, said once
    assert time.monotonic() - started < 2.5  # 1 s at the first of the 3 checkpoints; none at the next ones
    assert sum("did not finish writing within" in message for message in caplog.messages) == 1
    assert logger.destinations["memory"].most_recent_values == {"i": 30}
    report = logger.report()["tracker"]
    assert report["spooled"] == 31 and report["in_doubt"] == 1  # the record inside the hung write too
    logger.close()
    assert sorted(r["data"]["i"] for r in read_records("run/undelivered-tracker-rank0.jsonl")) == list(range(31))


def test_close_gives_up_after_the_timeout_spools_what_waits_and_says_where(caplog):
    sink = Scripted(DeliveryPolicy(undelivered="spool", timeout=0.3), remote=True, hold=True)
    logger = Logger(State("run"), {"tracker": sink})
    for index in range(3):
        logger.data_batch({"i": index})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        logger.close()
    assert time.monotonic() - started < 3
    path = Path("run/undelivered-tracker-rank0.jsonl").absolute()
    assert f"3 record(s) were not delivered to 'tracker' and wait in {path}: `composer-cfg-sync <run dir> --to " \
           f"<destination>` delivers them" in caplog.messages
    assert [r["data"]["i"] for r in read_records(path)] == [0, 1, 2]


def test_with_undelivered_drop_what_is_given_up_is_counted_lost_and_close_raises():
    sink = Scripted(DeliveryPolicy(queue_size=1, when_full="drop", undelivered="drop", timeout=0.2), remote=True,
                    hold=True)
    logger = Logger(State("run"), {"tracker": sink})
    for index in range(4):
        logger.data_batch({"i": index})
    with pytest.raises(RuntimeError) as raised:
        logger.close()
    assert str(raised.value).startswith("4 record(s) were not delivered to 'tracker' and are lost")
    assert not Path("run").exists()


def test_a_spool_that_can_not_be_written_counts_its_records_lost_and_says_why():
    Path("run").mkdir()
    os.symlink("/dev/full", "run/undelivered-tracker-rank0.jsonl")  # a link planted there is never followed
    sink = Scripted(DeliveryPolicy(undelivered="spool", timeout=0.2), remote=True, hold=True)
    logger = Logger(State("run"), {"tracker": sink})
    logger.data_batch({"i": 0})
    with pytest.raises(RuntimeError) as raised:
        logger.close()
    assert str(raised.value).startswith("1 record(s) were not delivered to 'tracker' and are lost (spool failed: "
                                        "OSError: [Errno 40] Too many levels of symbolic links")
    assert Path("/dev/full").is_char_device()  # untouched


def test_a_remote_sinks_failed_write_is_sent_again_at_the_next_flush_point_and_raised_once():
    sink = Scripted(DeliveryPolicy(undelivered="spool", timeout=30), remote=True)
    logger = Logger(State("run"), {"tracker": sink})
    logger.data_batch({"fail": 1, "i": 0})
    with pytest.raises(OSError, match="disk hiccup"):
        logger.flush()  # the failure, on a logging thread; the record waits to be sent again
    assert logger.report()["tracker"]["queued"] == 1
    logger.close()  # sent again at close: it fails again, and is spooled
    assert [r["data"] for r in read_records("run/undelivered-tracker-rank0.jsonl")] == [{"fail": 1, "i": 0}]


@pytest.mark.slow
def test_a_local_sinks_failed_write_is_raised_at_the_next_call_or_barrier_and_later_calls_are_written():
    sink = Scripted()
    logger = Logger(State("run"), {"sink": sink})
    logger.data_batch({"fail": 1})
    with pytest.raises(OSError, match="disk hiccup") as raised:
        logger.flush()  # a barrier: the worker has met the failure by then
    assert "raised by destination 'sink' in flush: OSError: disk hiccup 1" in raised.value.__notes__[0]
    sink.release.clear()  # hold the next write: the failure of the one after it is met while queued
    sink.writing.clear()
    logger.data_batch({"i": 1})
    assert sink.writing.wait(30)
    logger.data_batch({"fail": 2})  # a failed write loses what it was given (this record), counted
    sink.release.set()
    assert until(lambda: logger.report()["sink"]["failed"] == 2)
    with pytest.raises(OSError, match="disk hiccup 2"):
        logger.data_batch({"i": 4})  # raised after this call was queued: it is written all the same
    logger.close()
    report = logger.report()["sink"]
    assert sink.written == [{"i": 1}, {"i": 4}] and (report["failed"], report["dropped"]) == (2, 0)


@pytest.mark.slow
def test_a_writer_that_falls_behind_makes_logging_wait_instead_of_queueing_without_bound():
    sink = Scripted(DeliveryPolicy(queue_size=2), hold=True)  # local: block, no timeout
    logger = Logger(State("run"), {"sink": sink})
    logger.data_batch({"i": 0})
    assert sink.writing.wait(30)
    logger.data_batch({"i": 1})  # the queue holds 2: the record being written and this one
    blocked = threading.Thread(target=logger.data_batch, args=({"i": 2},))
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive()  # waits for the writer instead of queueing a third
    sink.release.set()
    blocked.join(30)
    assert not blocked.is_alive()
    logger.close()
    assert [d["i"] for d in sink.written] == [0, 1, 2]


def test_every_record_keeps_the_time_and_timestamp_of_its_call_not_of_its_writing():
    logger = Logger(State("timed"), {"jsonl": JSONLinesLogger(), "tb": TensorboardLogger()})
    logger.state.log_time = 1234.5
    logger.data_batch({"loss": 1.0})
    logger.state.log_time = None
    logger.state.timestamp = logger.state.timestamp.to_next_batch()
    logger.data_batch({"loss": 2.0})
    logger.close()
    first, second = read_records("timed/metrics-rank0.jsonl")
    assert (first["time"], first["batch"]) == (1234.5, 0) and second["time"] > 1_700_000_000
    events = EventAccumulator("timed/tensorboard").Reload()
    assert [(e.step, e.wall_time) for e in events.Scalars("loss")][0] == (0, 1234.5)


def test_a_checkpoint_waits_until_everything_logged_before_it_is_on_disk():
    logger = Logger(State("ckpt"), {"jsonl": JSONLinesLogger(flush_interval=10_000), "tb": TensorboardLogger()})
    logger.run_event("init")
    for batch in range(50):
        logger.state.timestamp = logger.state.timestamp.copy(batch=batch)
        logger.data_batch({"loss": float(batch)})
    logger.run_event("batch_checkpoint")
    assert [r["batch"] for r in read_records("ckpt/metrics-rank0.jsonl")] == list(range(50))  # before close
    events = EventAccumulator("ckpt/tensorboard", size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in events.Scalars("loss")] == list(range(50))
    logger.close()


def test_a_call_made_while_the_logger_closes_is_delivered_or_refused_never_silently_lost():
    """Three threads log while a fourth closes: each call returns and is written, or raises."""
    for round_ in range(20):
        sink, memory = Scripted(), InMemoryLogger()
        logger = Logger(State(f"r{round_}"), {"sink": sink, "memory": memory})
        returned: list[int] = []
        barrier = threading.Barrier(4)

        def log(thread: int) -> None:
            barrier.wait(30)
            for index in range(200):
                try:
                    logger.data_batch({"call": thread * 1000 + index})
                except RuntimeError:
                    return
                returned.append(thread * 1000 + index)

        threads = [threading.Thread(target=log, args=(thread,)) for thread in range(3)]
        for thread in threads:
            thread.start()
        barrier.wait(30)
        logger.close()
        for thread in threads:
            thread.join(30)
        assert sorted(d["call"] for d in sink.written) == sorted(returned), round_
        assert sorted(v for _, _, v in memory.data.get("call", [])) == sorted(returned), round_


def test_a_held_trackers_data_is_bounded_in_memory_and_delivered_in_order_at_the_checkpoint(monkeypatch):
    from composer_cfg.runtime import channel

    monkeypatch.setattr(channel, "HELD_IN_MEMORY", 7)
    sink = Scripted()
    sink.holds_until_checkpoint = True  # type: ignore[misc]
    logger = Logger(State("held"), {"tracker": sink}, resume="auto")
    logger.run_event("init")
    for index in range(30):
        logger.data_batch({"i": index})
    assert sink.written == []  # nothing before the checkpoint
    hold = logger._members[0].channel._hold
    assert len(hold._records) < 7 and hold._spilled_count >= 23  # the rest waits on disk, not in memory
    logger.run_event("batch_checkpoint")
    assert [d["i"] for d in sink.written] == list(range(30))
    logger.close()


def test_a_held_value_pickle_refuses_waits_as_its_text_and_the_hold_stays_bounded(monkeypatch):
    from composer_cfg.runtime import channel

    monkeypatch.setattr(channel, "HELD_IN_MEMORY", 5)
    local = type("Local", (), {"__str__": lambda self: "a local object"})  # a class pickle can not find by name
    sink = Scripted()
    sink.holds_until_checkpoint = True  # type: ignore[misc]
    logger = Logger(State("held"), {"tracker": sink}, resume="auto")
    logger.run_event("init")
    for index in range(12):
        logger.data_batch({"i": index, **({"odd": local()} if index == 3 else {})})
    hold = logger._members[0].channel._hold
    assert len(hold._records) < 5  # spilled as usual: the value pickle refused did not block the hold
    logger.run_event("batch_checkpoint")
    assert [d["i"] for d in sink.written] == list(range(12)) and sink.written[3]["odd"] == "a local object"
    logger.close()


def test_released_held_records_reach_the_sink_a_chunk_at_a_time(monkeypatch):
    from composer_cfg.runtime import channel

    monkeypatch.setattr(channel, "HELD_IN_MEMORY", 100)
    batches: list[int] = []

    class Counting(Scripted):
        def write(self, records):
            batches.append(len(records))
            super().write(records)

    sink = Counting()
    sink.holds_until_checkpoint = True  # type: ignore[misc]
    logger = Logger(State("held"), {"tracker": sink}, resume="auto")
    logger.run_event("init")
    for index in range(3000):
        logger.data_batch({"i": index})
    logger.run_event("batch_checkpoint")
    logger.close()
    assert [d["i"] for d in sink.written] == list(range(3000))
    assert max(batches) <= channel.HELD_CHUNK  # never the whole hold in memory at once
    report = logger.report()["tracker"]
    assert (report["delivered"], report["held"], report["withdrawn"]) == (3000, 0, 0)


def test_held_records_of_a_run_that_does_not_finish_are_counted_withdrawn():
    sink = Scripted()
    sink.holds_until_checkpoint = True  # type: ignore[misc]
    logger = Logger(State("held"), {"tracker": sink}, resume="auto")
    logger.run_event("init")
    for index in range(50):
        logger.data_batch({"i": index})
        if index == 29:
            logger.run_event("batch_checkpoint")
    logger.close("FAILED")
    report = logger.report()["tracker"]
    assert (report["delivered"], report["held"], report["withdrawn"]) == (30, 0, 20)
    assert read_manifest(Path("held/run-rank0.json"))["logging"]["tracker"]["withdrawn"] == 20


def test_a_remote_write_that_failed_is_sent_again_before_anything_newer():
    class Flaky(Scripted):
        failures = 1

        def write(self, records):
            if any(record.payload.get("i") == 14 for record in records if record.kind is Kind.DATA) and self.failures:
                self.failures -= 1
                raise ConnectionError("503 Service Unavailable")
            super().write(records)

    sink = Flaky(DeliveryPolicy(timeout=30), remote=True)
    logger = Logger(State("run"), {"tracker": sink})
    raised = []
    for index in range(30):
        try:
            logger.data_batch({"i": index})
            if index % 7 == 6:
                logger.flush()
        except ConnectionError as error:  # said once, at the next call or flush
            raised.append(str(error))
    logger.close()
    assert raised == ["503 Service Unavailable"]
    assert [d["i"] for d in sink.written] == list(range(30))  # in order: a tracker whose steps must increase


def test_a_remote_write_that_refused_a_record_the_back_end_never_takes_is_not_sent_again():
    class Picky(Scripted):
        def write(self, records):
            refused = None
            for record in records:
                if record.kind is Kind.DATA and record.payload.get("i") == 3:
                    refused = refuse(refused, ValueError("the tracker refuses i=3"))
                elif record.kind is Kind.DATA:
                    self.written.append(record.payload)
            if refused is not None:
                raise refused

    sink = Picky(DeliveryPolicy(timeout=30), remote=True)
    logger = Logger(State("run"), {"tracker": sink})
    raised = []
    for index in range(10):
        try:
            logger.data_batch({"i": index})
            logger.flush()
        except ValueError as error:
            raised.append(str(error))
    logger.close()
    assert raised == ["the tracker refuses i=3"]
    assert [d["i"] for d in sink.written] == [0, 1, 2, 4, 5, 6, 7, 8, 9]  # each once; nothing held behind it
    assert logger.report()["tracker"]["failed"] == 1


@pytest.mark.parametrize("destination", [MLFlowLogger, WandBLogger])
@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("when_full", "wait", "one of block, drop"), ("undelivered", "keep", "one of spool, drop"),
    ("queue_size", 0, "a positive integer")])
def test_bad_policies_are_refused_by_name(destination, key, value, allowed):
    with pytest.raises(ConfigError) as raised:
        destination(**{key: value})
    assert str(raised.value) == f"{key}: expected {allowed}, got {value!r}"


def test_routing_of_a_level_a_rank_and_an_event_is_decided_once():
    memory, tb = InMemoryLogger(log_level="epoch"), TensorboardLogger()
    logger = Logger(State("routes"), {"memory": memory, "tb": tb})
    routes = logger._routes
    assert [c.name for c in routes.data[2][1]] == ["memory", "tb"] and [c.name for c in routes.data[3][1]] == ["tb"]
    assert [c.name for c in routes.events[Event.BATCH_END]] == ["tb"] and routes.events[Event.BATCH_START] == ()
    logger.close()


class Stuck(KeyedSink):
    """An artifact store whose uploads never finish; it records what close asked it to abort."""

    channel_kind = "keyed"
    delivery_policy = DeliveryPolicy(queue_size=10, when_full="block", undelivered="drop", timeout=0.3)
    takes_data = False
    remote = True

    def __init__(self) -> None:
        self.aborted: list[str] = []

    def can_log_file_artifacts(self):
        return True

    def key(self, record):
        return f"bucket/{record.payload.name}"

    def write(self, records):
        threading.Event().wait(60)

    def abort(self, keys):
        self.aborted.extend(keys)


def test_close_gives_up_on_unfinished_uploads_after_the_timeout_says_which_and_has_them_aborted():
    stuck = Stuck()
    Path("a.bin").write_bytes(b"a")
    logger = Logger(State("run"), {"store": stuck})
    logger.file_artifact("epoch", "run/a.bin", "a.bin")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^1 upload\(s\) to 'store' did not finish within 0.3 s: bucket/run/a.bin"):
        logger.close()
    assert time.monotonic() - started < 5 and stuck.aborted == ["bucket/run/a.bin"]
