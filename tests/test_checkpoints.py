"""A resumable run's checkpoint, in two phases: what a tracker held is sealed in a file, the mark
names it, then it is sent (`composer_cfg.runtime.dispatch.Dispatch.checkpoint`). Whatever fails or
stops at any point between, each record reaches the tracker once, over the run's attempts.

An attempt "killed" here is one whose Logger is left without closing (`Logger.forget`, what a
forked child's copy does), so the next attempt starts in the same process, from the manifest."""

import json
import struct
import threading
import time
from pathlib import Path

import pytest

from composer_cfg import DeliveryPolicy, Event, Kind, Logger, MLFlowLogger, Sink, State, TensorboardLogger
from composer_cfg.run import attempt
from conftest import needs, place_store, ranks

MlflowClient = needs("mlflow").MlflowClient


class Tracker(Sink):
    """A tracker that keeps the ``i`` of each data record it is given; its data waits for checkpoints."""

    channel_kind = "thread"
    holds_until_checkpoint = True
    remote = True

    def __init__(self, channel_kind: str = "thread", timeout: float = 5, undelivered: str = "spool") -> None:
        self.channel_kind = channel_kind
        self.delivery_policy = DeliveryPolicy(timeout=timeout, undelivered=undelivered)
        self.written: list[int] = []
        self.down = False  # its server answers 503
        self.slow = 0.0  # seconds a write takes
        self.flush_fails = False

    def write(self, records):
        time.sleep(self.slow)
        if self.down:
            raise ConnectionError("503 Service Unavailable")
        self.written += [record.payload["i"] for record in records if record.kind is Kind.DATA]

    def flush(self, durable):
        if self.flush_fails:
            raise OSError("flush failed")

    def close(self, status):
        pass

    def identity(self):
        return {"run_id": "r1"}


def started(tracker: Sink, run: str = "r", name: str = "tracker", rank: int = 0) -> Logger:
    logger = Logger(State(run, dist_info=ranks(2, rank) if rank else None), {name: tracker}, resume="auto")
    logger.run_event(Event.INIT)
    return logger


def checkpoint(logger: Logger) -> None:
    """A checkpoint event; what it raises (a tracker's failure, said once) does not stop the run."""
    try:
        logger.run_event(Event.BATCH_CHECKPOINT)
    except Exception:  # noqa: BLE001
        pass


def log(logger: Logger, numbers: range) -> None:
    for i in numbers:
        logger.data_batch({"i": i})


def held_files(run: str = "r") -> list[str]:
    return sorted(path.name for path in Path(run).glob("held-*"))


def manifest(run: str = "r") -> dict:
    return json.loads(Path(run, "run-rank0.json").read_text())["run"]


def failing_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(attempt.RunAttempt, "checkpoint", full_disk)


def test_data_sealed_for_a_mark_that_was_never_written_is_not_sent_at_a_failed_close(monkeypatch, tmp_path,
                                                                                     empty_store):
    uri = f"sqlite:///{place_store(empty_store, tmp_path)}"
    logger = Logger(State("r"), {"mlflow": MLFlowLogger(tracking_uri=uri)}, resume="auto")
    logger.run_event(Event.INIT)
    for step in range(6):
        logger.log_metrics({"loss": float(step)}, step=step)
        if step == 2:
            logger.run_event(Event.BATCH_CHECKPOINT)
    with monkeypatch.context() as patched:
        failing_mark(patched)
        with pytest.raises(OSError, match="No space left"):
            logger.run_event(Event.BATCH_CHECKPOINT)  # steps 3..5 sealed; no mark names them
    logger.close("FAILED")
    assert logger.report()["mlflow"]["withdrawn"] == 3

    again = Logger(State("r"), {"mlflow": MLFlowLogger(tracking_uri=uri)}, resume="auto")
    again.run_event(Event.INIT)  # continues from the mark after step 2
    for step in range(3, 6):
        again.log_metrics({"loss": float(step)}, step=step)
    again.close()
    history = MlflowClient(tracking_uri=uri).get_metric_history(again.destinations["mlflow"].run_id, "loss")
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4, 5]
    assert held_files() == []


def test_held_data_a_tracker_did_not_take_stays_sealed_and_the_next_attempt_sends_it_first():
    tracker = Tracker()
    logger = started(tracker)
    log(logger, range(3))
    tracker.down = True  # during the checkpoint's second phase
    with pytest.raises(ConnectionError):
        logger.run_event(Event.BATCH_CHECKPOINT)
    assert held_files() == manifest()["held"]["tracker"]  # the mark names the file, which stays
    logger.forget()  # killed

    again = Tracker()
    next_attempt = started(again)
    log(next_attempt, range(3, 5))
    next_attempt.close()
    assert again.written == [0, 1, 2, 3, 4]
    assert held_files() == []


@pytest.mark.parametrize("kind", ["thread", "inline"])
def test_a_tracker_down_at_two_checkpoints_in_a_row_gets_every_record_once_from_the_next_attempt(kind):
    tracker = Tracker(kind)
    logger = started(tracker)
    for first in (0, 3):
        log(logger, range(first, first + 3))
        tracker.down = True
        checkpoint(logger)  # the first file stays, named by the second mark too
    assert len(manifest()["held"]["tracker"]) == (2 if kind == "thread" else 1)  # (inline: sealed again, whole)
    logger.forget()  # killed

    again = Tracker(kind)
    started(again).close()
    assert tracker.written + again.written == [0, 1, 2, 3, 4, 5] and held_files() == []


@pytest.mark.parametrize("kind", ["thread", "inline"])
def test_a_tracker_whose_flush_fails_at_every_checkpoint_still_gets_every_record_once(kind):
    tracker = Tracker(kind)
    logger = started(tracker)
    log(logger, range(3))
    checkpoint(logger)
    tracker.flush_fails = True
    for first in (3, 6):  # the second failure is no news, so not raised: the mark is written
        log(logger, range(first, first + 3))
        logger.state.timestamp = logger.state.timestamp.to_next_batch()
        checkpoint(logger)
    logger.forget()  # killed

    again = Tracker(kind)
    started(again).close()
    assert tracker.written + again.written == list(range(9))


def test_sealed_records_given_up_to_the_spool_are_not_sent_again_by_the_next_attempt():
    tracker = Tracker(timeout=1)
    logger = started(tracker)
    log(logger, range(600))
    tracker.slow = 2  # the first chunk's write outlasts the timeout: the rest is spooled
    checkpoint(logger)
    tracker.slow = 0
    report = logger.report()["tracker"]
    assert (report["spooled"], report["in_doubt"], held_files()) == (600, 256, [])  # no second copy to send
    logger.close("KILLED")

    again = Tracker()
    started(again).close()
    assert again.written == []  # the spool has them; composer-cfg-sync sends them


def test_a_tracker_that_caught_up_after_a_timeout_is_waited_for_again_at_the_next_checkpoint():
    tracker = Tracker(timeout=1)
    logger = started(tracker)
    log(logger, range(3))
    tracker.slow = 2
    checkpoint(logger)  # given up after 1 s
    time.sleep(1.5)  # the write returns
    tracker.slow = 0
    for first in (10, 20):
        log(logger, range(first, first + 3))
        checkpoint(logger)
    logger.close()
    assert tracker.written == [0, 1, 2, 10, 11, 12, 20, 21, 22]


def test_a_ranks_next_attempt_leaves_the_sealed_files_of_another_rank_alone_whatever_the_destinations_name():
    name = "t-rank0-x"
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr("composer_cfg.runtime.thread_channel.ThreadChannel.release", lambda self, deadline: None)
        for rank in (0, 1):  # both killed between their mark and the second phase
            logger = started(Tracker(), name=name, rank=rank)
            log(logger, range(10 * rank, 10 * rank + 3))
            logger.run_event(Event.BATCH_CHECKPOINT)
            logger.forget()
    rank_zero, rank_one = Tracker(), Tracker()
    first = started(rank_zero, name=name)
    second = started(rank_one, name=name, rank=1)
    first.close()
    second.close()
    assert (rank_zero.written, rank_one.written) == ([0, 1, 2], [10, 11, 12])


def test_a_close_from_another_thread_while_the_mark_is_written_leaves_the_sealed_data_to_the_next_attempt(
        monkeypatch):
    tracker = Tracker()
    logger = started(tracker)
    log(logger, range(5))
    write_mark, closer = attempt.RunAttempt.checkpoint, []

    def mark_then_close_elsewhere(self, *args, **kwargs):  # as the SIGTERM watchdog's thread would
        write_mark(self, *args, **kwargs)
        closer.append(threading.Thread(target=logger.close, args=("KILLED",)))
        closer[0].start()
        closer[0].join()

    with monkeypatch.context() as patched:
        patched.setattr(attempt.RunAttempt, "checkpoint", mark_then_close_elsewhere)
        logger.run_event(Event.BATCH_CHECKPOINT)
    assert tracker.written == [] and held_files() == manifest()["held"]["tracker"]

    again = Tracker()
    started(again).close()
    assert again.written == [0, 1, 2, 3, 4] and held_files() == []


def test_a_damaged_sealed_file_gives_what_it_can_and_the_run_goes_on(monkeypatch, caplog):
    tracker = Tracker()
    logger = started(tracker)
    log(logger, range(5))
    with monkeypatch.context() as patched:
        patched.setattr("composer_cfg.runtime.thread_channel.ThreadChannel.release", lambda self, deadline: None)
        logger.run_event(Event.BATCH_CHECKPOINT)  # marked, never sent
    logger.forget()  # killed
    (name,) = held_files()
    sealed = Path("r", name)
    sealed.write_bytes(sealed.read_bytes()[:-7])  # the last record cut short

    again = Tracker()
    next_attempt = started(again)
    log(next_attempt, range(5, 7))
    next_attempt.run_event(Event.BATCH_CHECKPOINT)
    next_attempt.close()
    assert again.written == [0, 1, 2, 3, 5, 6]
    assert f"{sealed}: the records after the first 4 could not be read (UnpicklingError" in caplog.text


def test_held_data_is_counted_held_until_it_is_sent(monkeypatch):
    tracker = Tracker()
    logger = started(tracker)
    log(logger, range(3))
    with monkeypatch.context() as patched:
        failing_mark(patched)
        with pytest.raises(OSError):
            logger.run_event(Event.BATCH_CHECKPOINT)
    log(logger, range(3, 5))
    assert {key: logger.report()["tracker"][key] for key in ("delivered", "held")} == {"delivered": 0, "held": 5}
    logger.run_event(Event.BATCH_CHECKPOINT)  # the earlier seal goes with this one
    assert {key: logger.report()["tracker"][key] for key in ("delivered", "held")} == {"delivered": 5, "held": 0}
    logger.close()
    assert tracker.written == [0, 1, 2, 3, 4] and held_files() == []


def test_the_size_a_mark_keeps_of_an_event_file_is_a_whole_number_of_records_while_another_thread_logs():
    logger = Logger(State("r"), {"tensorboard": TensorboardLogger()}, resume="auto")
    logger.run_event(Event.INIT)
    stop = threading.Event()

    def log_all_along() -> None:
        n = 0
        while not stop.is_set():
            logger.data_batch({f"m{k}": float(n) for k in range(20)})
            n += 1

    thread = threading.Thread(target=log_all_along)
    thread.start()
    try:
        sizes = []
        for _ in range(20):
            logger.run_event(Event.BATCH_CHECKPOINT)
            run = manifest()
            (file,) = run["cut_back"]
            sizes.append(run["records_at_checkpoint"][file])
    finally:
        stop.set()
        thread.join()
    logger.close()
    assert set(sizes) <= record_ends(Path("r", file)) and len(set(sizes)) > 1


def record_ends(path: Path) -> set[int]:
    """Where each record of a TFRecord file ends (length, its CRC, the data, the data's CRC)."""
    data, ends, at = path.read_bytes(), {0}, 0
    while at + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        at += 12 + length + 4
        ends.add(at)
    return ends
