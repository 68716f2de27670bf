"""The delivery queue of remote destinations, with real threads and a real spool file: every record
logged is delivered, spooled or counted as dropped, and the counts match what is on disk."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path

import pytest

from composer_cfg import ConfigError, MLFlowLogger, WandBLogger
from composer_cfg.delivery import DeliveryPolicy, DeliveryQueue, Record, Spool
from composer_cfg.core.log_level import LogLevel
from composer_cfg.manifest import read_manifest
from composer_cfg.run.records import read_records
from composer_cfg.core.timestamp import Timestamp

PRODUCERS, PER_PRODUCER = 4, 2000


def record(producer: int, index: int) -> Record:
    return Record(LogLevel.BATCH, Timestamp(batch=index), 1_700_000_000.0 + index, {"producer": producer, "i": index})


def spool(name: str = "tracker") -> Spool:
    return Spool(name, "run", 0, identity=lambda: {"run_id": "abc"})


def run_producers_and_a_consumer(queue: DeliveryQueue, batch: int) -> list[tuple[int, int]]:
    """4 threads log 2000 records each while one thread delivers up to `batch` at a time; returns
    the (producer, index) pairs delivered, in delivery order."""
    delivered: list[tuple[int, int]] = []
    done = threading.Event()

    def produce(producer: int) -> None:
        for index in range(PER_PRODUCER):
            queue.put(record(producer, index))

    def consume() -> None:
        while not (done.is_set() and len(queue) == 0):
            waiting = queue.waiting(batch)
            delivered.extend((r.data["producer"], r.data["i"]) for r in waiting)
            queue.delivered(len(waiting))

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    done.set()
    consumer.join()
    return delivered


def test_with_drop_every_record_is_delivered_or_spooled_once_and_the_spool_holds_exactly_the_rest():
    queue = DeliveryQueue("tracker", DeliveryPolicy(queue_size=50, when_full="drop", undelivered="spool"), spool)
    delivered = run_producers_and_a_consumer(queue, batch=7)
    report = queue.report()
    spooled = [(r["data"]["producer"], r["data"]["i"]) for r in read_records(queue.report()["spool"])]
    assert report["delivered"] + report["spooled"] == PRODUCERS * PER_PRODUCER
    assert (report["dropped"], report["queued"], report["waits"]) == (0, 0, 0)  # drop never waits
    assert len(delivered) == report["delivered"] and len(spooled) == report["spooled"]
    assert sorted(delivered + spooled) == sorted(itertools.product(range(PRODUCERS), range(PER_PRODUCER)))
    for producer in range(PRODUCERS):  # each thread's records stay in its order, in each place
        assert [i for p, i in delivered if p == producer] == sorted(i for p, i in delivered if p == producer)
        assert [i for p, i in spooled if p == producer] == sorted(i for p, i in spooled if p == producer)
    assert 0 < report["peak_queued"] <= 50
    queue.settle()  # nothing left: closes the spool, says what it holds


def test_with_block_the_logging_threads_wait_for_room_and_nothing_leaves_the_queue():
    queue = DeliveryQueue("tracker", DeliveryPolicy(queue_size=10, when_full="block", block_seconds=60), spool)
    delivered = run_producers_and_a_consumer(queue, batch=3)
    report = queue.report()
    assert (report["delivered"], report["spooled"], report["dropped"]) == (PRODUCERS * PER_PRODUCER, 0, 0)
    assert sorted(delivered) == sorted(itertools.product(range(PRODUCERS), range(PER_PRODUCER)))
    assert report["peak_queued"] == 10 and "spool" not in queue.report() and not Path("run").exists()


def test_a_block_that_times_out_is_not_repeated_until_a_delivery_succeeds():
    queue = DeliveryQueue("tracker", DeliveryPolicy(queue_size=2, when_full="block", block_seconds=0.05), spool)
    for index in range(10):  # nothing delivers: an outage
        queue.put(record(0, index))
    assert (queue.report()["waits"], queue.report()["spooled"]) == (1, 8)  # one wait, then no more
    queue.delivered(1)  # the back end took one: the next full queue is waited for again
    queue.put(record(0, 10))
    queue.put(record(0, 11))
    report = queue.report()
    assert (report["waits"], report["spooled"], report["queued"], report["delivered"]) == (2, 9, 2, 1)
    assert [r["batch"] for r in read_records(queue.report()["spool"])] == [2, 3, 4, 5, 6, 7, 8, 9, 11]
    queue.settle()


def test_settle_spools_what_is_left_says_where_and_registers_the_spool_for_sync(caplog):
    queue = DeliveryQueue("MLflow (http://tracker)", DeliveryPolicy(), spool)
    for index in range(3):
        queue.put(record(0, index))
    queue.delivered(1)
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        queue.settle([Record(LogLevel.FIT, Timestamp(batch=3), 1.0, {"lr": "0.1"})])
    path = Path("run/undelivered-tracker-rank0.jsonl").absolute()
    assert caplog.messages == [f"3 record(s) were not delivered to MLflow (http://tracker) and wait in {path}: "
                               f"`composer-cfg-sync <run dir> --to <destination>` delivers them"]
    assert [(r["level"], r["batch"], r["data"]) for r in read_records(path)] == [
        ("FIT", 3, {"lr": "0.1"}), ("BATCH", 1, {"producer": 0, "i": 1}), ("BATCH", 2, {"producer": 0, "i": 2})]
    manifest = read_manifest(Path("run/run-rank0.json"))
    assert manifest["spools"] == {"undelivered-tracker-rank0.jsonl": "tracker"}
    assert manifest["sync"] == {"undelivered-tracker-rank0.jsonl": {"tracker": {"identity": {"run_id": "abc"}}}}
    assert queue.report() | {"blocked_seconds": 0} == {
        "queued": 0, "peak_queued": 3, "delivered": 1, "spooled": 3, "dropped": 0, "in_doubt": 0, "waits": 0,
        "blocked_seconds": 0,
        "spool": str(path)}


def test_with_undelivered_drop_what_is_left_is_counted_lost_and_settle_raises():
    queue = DeliveryQueue("W&B", DeliveryPolicy(queue_size=1, when_full="drop", undelivered="drop"), spool)
    for index in range(4):
        queue.put(record(0, index))
    with pytest.raises(RuntimeError) as raised:
        queue.settle()
    assert str(raised.value) == "4 record(s) were not delivered to W&B and are lost"
    assert not Path("run").exists()


def test_a_spool_on_a_full_disk_counts_its_records_lost_and_says_why():
    Path("run").mkdir()
    os.symlink("/dev/full", "run/undelivered-tracker-rank0.jsonl")
    queue = DeliveryQueue("tracker", DeliveryPolicy(), spool)
    queue.put(record(0, 0))
    with pytest.raises(RuntimeError) as raised:
        queue.settle()
    assert str(raised.value) == ("1 record(s) were not delivered to tracker and are lost (spool failed: "
                                 "OSError: [Errno 28] No space left on device)")
    assert set(queue.report()["spool_errors"]) == {"OSError: [Errno 28] No space left on device"}


@pytest.mark.parametrize("destination", [MLFlowLogger, WandBLogger])
@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("when_full", "wait", "one of block, drop"), ("undelivered", "keep", "one of spool, drop"),
    ("queue_size", 0, "a positive integer")])
def test_bad_policies_are_refused_by_name(destination, key, value, allowed):
    with pytest.raises(ConfigError) as raised:
        destination(**{key: value})
    assert str(raised.value) == f"{key}: expected {allowed}, got {value!r}"


def test_records_given_up_while_being_sent_are_counted_in_doubt():
    queue = DeliveryQueue("tracker", DeliveryPolicy(), spool)
    for index in range(5):
        queue.put(record(0, index))
    assert len(queue.waiting(2)) == 2  # a request holding the two oldest is under way
    queue.settle()
    report = queue.report()
    assert (report["spooled"], report["in_doubt"], report["delivered"]) == (5, 2, 0)
    queue.delivered(2)  # the request lands after all: they were spooled already, and stay counted so
    assert (queue.report()["delivered"], queue.report()["spooled"]) == (0, 5)
