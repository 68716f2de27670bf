"""The Logger's phases: build, INIT, run, close -> post_close -> finalize; failures; declared policies."""

import logging
import sys
from pathlib import Path

import pytest

from composer_cfg import (
    Event,
    FileLogger,
    FlushSchedule,
    InMemoryLogger,
    Logger,
    LoggerDestination,
    LogLevel,
    ObjectStoreLogger,
    RunStatus,
    State,
    TrainingLoop,
    build_logger,
)
from composer_cfg.compat.destination import SinkDestination
from composer_cfg.core.sink import CHANNELS, DeliveryPolicy
from composer_cfg.destinations.registry import BUILT_IN
from conftest import Recorder, ranks


class Finalized(Recorder):
    """Records the status `finalize` receives too."""

    def finalize(self, status):
        self.calls.append(("finalize", status))


class FailsAt(Recorder):
    """Raises `error` from the named method (recording the call first)."""

    def __init__(self, method, error, log_level=None):
        super().__init__(log_level)
        self.method, self.error = method, error

    def log_data(self, state, log_level, data):
        super().log_data(state, log_level, data)
        if self.method == "log_data":
            raise self.error

    def init(self, state, logger):
        if self.method == "init":
            raise self.error

    def close(self, state, logger):
        super().close(state, logger)
        if self.method == "close":
            raise self.error


def test_close_runs_close_then_post_close_then_finalize_with_the_status():
    a, b = Finalized(), Finalized()
    Logger(State("r"), [a, b]).close("failed")
    assert a.calls == [("close",), ("post_close",), ("finalize", RunStatus.FAILED)] == b.calls


@pytest.mark.parametrize(
    ("raised", "status"),
    [(None, RunStatus.FINISHED), (RuntimeError("diverged"), RunStatus.FAILED),
     (KeyboardInterrupt(), RunStatus.KILLED), (SystemExit(0), RunStatus.FINISHED), (SystemExit(3), RunStatus.FAILED)],
)
def test_the_with_block_passes_how_the_run_ended(raised, status):
    destination = Finalized()
    try:
        with Logger(State("r"), destination):
            if raised is not None:
                raise raised
    except BaseException as caught:  # noqa: BLE001 - re-raised unchanged, as checked here
        assert caught is raised
    assert destination.calls[-1] == ("finalize", status)


def test_a_close_failure_never_replaces_the_exception_that_ended_the_run(caplog):
    broken, other = FailsAt("close", OSError("disk full at close")), Finalized()
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        with pytest.raises(RuntimeError, match="training diverged") as caught:
            with Logger(State("r"), {"broken": broken, "other": other}):
                raise RuntimeError("training diverged")
    assert caught.value.__notes__ == [
        "closing the logger afterwards also failed: OSError: disk full at close"]
    assert other.calls == [("close",), ("post_close",), ("finalize", RunStatus.FAILED)]
    assert caplog.messages == ["closing the logger after RuntimeError also failed: OSError: disk full at close"]


def test_without_an_exception_a_close_failure_is_raised_after_every_destination_closed():
    broken, other = FailsAt("close", OSError("disk full at close")), Finalized()
    with pytest.raises(OSError, match="disk full at close") as caught:
        Logger(State("r"), {"broken": broken, "other": other}).close()
    assert caught.value.__notes__ == ["raised by destination 'broken' in close: OSError: disk full at close"]
    assert other.calls[-1] == ("finalize", RunStatus.FINISHED)


def test_a_destination_failing_at_init_closes_everything_and_undoes_capture():
    writes = vars(sys.stdout).get("write"), vars(sys.stderr).get("write")  # another library's patch, if any
    memory, file = InMemoryLogger(), FileLogger(log_level="batch")
    logger = Logger(State("run"), {"file": file, "memory": memory, "broken": FailsAt("init", OSError("no GPU"))})
    with pytest.raises(OSError, match="no GPU") as caught:
        logger.run_event(Event.INIT)
    assert caught.value.__notes__ == ["raised by destination 'broken' in init: OSError: no GPU"]
    assert (vars(sys.stdout).get("write"), vars(sys.stderr).get("write")) == writes  # capture undone
    print("after the failed start")  # reaches no log file
    assert file.sink().run_file.file is None and Path("run/logs-rank0.txt").read_text() == ""
    with pytest.raises(RuntimeError, match="this Logger is closed: it takes no more data"):
        logger.data_batch({"loss": 1.0})
    with pytest.raises(RuntimeError, match="this Logger is closed: it fires no more events"):
        logger.run_event(Event.BATCH_END)
    logger.close()  # idempotent


def test_build_logger_closes_everything_when_a_destination_fails_to_start(tmp_path):
    write = vars(sys.stdout).get("write")
    conf = tmp_path / "conf" / "logger" / "destinations"
    conf.mkdir(parents=True)
    (conf / "broken.yaml").write_text("broken:\n  _target_: broken_destination.Broken\n")
    (tmp_path / "broken_destination.py").write_text(
        "from composer_cfg import LoggerDestination\n"
        "class Broken(LoggerDestination):\n"
        "    def init(self, state, logger):\n"
        "        raise ConnectionRefusedError('tracking server down')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ConnectionRefusedError, match="tracking server down"):
            build_logger(overrides=["run_name=r", "logger.allowed_modules=[broken_destination]",
                                    "+logger/destinations=broken"], config_dir=tmp_path / "conf")
    finally:
        sys.path.remove(str(tmp_path))
    assert vars(sys.stdout).get("write") is write
    from composer_cfg.runtime import exit_hooks

    assert exit_hooks.guarded() == []


def test_data_after_close_is_an_error_not_a_silent_loss():
    logger = Logger(State("r"), InMemoryLogger())
    logger.close()
    with pytest.raises(RuntimeError, match="this Logger is closed"):
        logger.data_epoch({"acc": 1.0})
    with pytest.raises(RuntimeError, match="takes no more file artifacts"):
        logger.file_artifact("fit", "a.txt", "a.txt")


def test_a_destination_that_failed_to_open_at_its_first_record_says_so_and_never_loses_data_silently(caplog):
    Path("r").mkdir()
    Path("r/logs-rank0.txt").write_text("an earlier run's log\n")
    memory = InMemoryLogger()
    logger = Logger(State("r"), {"file": FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False),
                                 "memory": memory})
    with pytest.raises(FileExistsError):  # opened at the first record, without INIT
        logger.data_batch({"step": 0})
    with pytest.raises(RuntimeError, match="^destination 'file' did not open, so it writes nothing: FileExistsError"):
        logger.data_batch({"step": 1})
    logger.data_batch({"step": 2})  # the same failure again: counted, not raised
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        logger.close()
    assert Path("r/logs-rank0.txt").read_text() == "an earlier run's log\n"
    assert memory.get_timeseries("step")["step"].tolist() == [0, 1, 2]  # the others kept logging
    assert any("repeated 1 more time(s) without being raised" in message for message in caplog.messages)


def test_a_failure_is_raised_once_whatever_calls_come_between(caplog):
    """A destination failing on EPOCH calls stays reported once, whatever BATCH calls it skips."""
    broken = FailsAt("log_data", OSError("disk full"), log_level=LogLevel.EPOCH)
    logger = Logger(State("r"), {"broken": broken, "memory": InMemoryLogger()})
    with pytest.raises(OSError, match="disk full"):
        logger.data_epoch({"acc": 0.5})
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        for epoch in range(3):
            logger.data_batch({"loss": 1.0})  # never reaches 'broken'
            logger.run_event(Event.BATCH_END)  # a no-op hook of 'broken'
            logger.data_epoch({"acc": 0.5})  # the same failure again: counted, not raised
    assert len(caplog.messages) == 1 and caplog.messages[0].startswith("destination 'broken' failed again in log_data")


def test_a_different_error_of_a_failing_destination_is_always_raised():
    broken = FailsAt("log_data", OSError("disk full"))
    logger = Logger(State("r"), {"broken": broken})
    with pytest.raises(OSError, match="disk full"):
        logger.data_batch({"x": 1})
    logger.data_batch({"x": 1})  # suppressed repeat
    broken.error = PermissionError("read-only file system")
    with pytest.raises(PermissionError, match="read-only"):
        logger.data_batch({"x": 1})


def test_the_same_failure_is_raised_once_even_after_calls_that_succeeded(caplog):
    """A buffered write or a no-op hook "succeeding" proves nothing: a full disk is raised once."""
    broken = FailsAt("log_data", OSError("disk full"))
    logger = Logger(State("r"), {"broken": broken})
    with pytest.raises(OSError):
        logger.data_batch({"x": 1})
    broken.method = None
    logger.data_batch({"x": 2})
    broken.method = "log_data"
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        logger.data_batch({"x": 3})  # not raised again: counted
        logger.close()
    assert caplog.messages[-1] == ("destination 'broken': the failure OSError: disk full repeated 1 more time(s) "
                                   "without being raised")


def test_bad_data_is_raised_every_time():
    logger = Logger(State("r"), Recorder())
    for _ in range(3):
        with pytest.raises(TypeError, match="log data keys must be strings"):
            logger.data_batch({1: 2})


def test_rank_zero_only_destinations_get_nothing_on_other_ranks():
    class RankZero(Finalized):
        rank_zero_only = True

    on_rank_one, on_rank_zero = RankZero(), RankZero()
    for destination, rank in ((on_rank_one, 1), (on_rank_zero, 0)):
        with Logger(State("r", dist_info=ranks(2, rank=rank)), destination) as logger:
            logger.run_event(Event.INIT)
            logger.data_batch({"x": 1})
            Path("a.txt").write_text("a")
            logger.file_artifact("fit", "a.txt", "a.txt")
    assert on_rank_one.calls == []
    assert [call[0] for call in on_rank_zero.calls] == ["event", "data", "artifact", "close", "post_close", "finalize"]


def test_a_flush_schedule_is_applied_by_the_logger():
    class Buffered(LoggerDestination):
        flush_schedule = FlushSchedule(2, LogLevel.BATCH, at=[Event.FIT_END])

        def __init__(self):
            self.flushed_at = []

        def flush(self, state, logger):
            self.flushed_at.append((state.timestamp.batch, state.timestamp.epoch))

    destination = Buffered()
    logger = Logger(State("r"), destination)
    for _ in range(2):
        for _ in range(3):
            logger.state.timestamp = logger.state.timestamp.to_next_batch()
            logger.run_event(Event.BATCH_END)
        logger.state.timestamp = logger.state.timestamp.to_next_epoch()
        logger.run_event(Event.EPOCH_END)
    logger.run_event(Event.FIT_END)
    assert destination.flushed_at == [(2, 0), (3, 1), (4, 1), (6, 1), (6, 2), (6, 2)]


def test_every_built_in_destination_declares_its_policies():
    for name, cls in BUILT_IN.items():
        assert cls.channel_kind in CHANNELS, name
        assert isinstance(cls.delivery_policy, DeliveryPolicy) and isinstance(cls.event_hooks, frozenset), name
        assert callable(cls.check_config) and cls.check_config.__self__ is cls, name
        assert issubclass(cls, SinkDestination) and cls.make_sink is not SinkDestination.make_sink, name


def test_the_object_store_drains_after_every_final_flush(tmp_path):
    """Listed first, the store still receives (and waits for) the log file's last publication."""
    store = ObjectStoreLogger(str(tmp_path / "store"))
    with Logger(State("run"), {"store": store, "file": FileLogger(log_level="batch", capture_stderr=False)}) as logger:
        logger.run_event(Event.INIT)
        for i in range(3):
            logger.data_batch({"i": i})
        print("the last line")
    assert (tmp_path / "store/run/logs-rank0.txt").read_bytes() == Path("run/logs-rank0.txt").read_bytes()
    assert Path("run/logs-rank0.txt").read_text().endswith("[stdout]: the last line\n")


def test_events_a_destination_has_no_hook_for_are_skipped_but_a_schedule_set_at_init_and_instance_hooks_count():
    class SetsItsScheduleAtInit(LoggerDestination):
        def __init__(self):
            self.flushes, self.hooked = 0, []

        def init(self, state, logger):
            self.flush_schedule = FlushSchedule(2, LogLevel.BATCH)

        def flush(self, state, logger):
            self.flushes += 1

    destination = SetsItsScheduleAtInit()
    destination.epoch_end = lambda state, logger: destination.hooked.append("epoch_end")  # a hook on the instance
    logger = Logger(State("run"), destination)
    with logger:
        logger.run_event("init")
        loop = TrainingLoop(logger)
        for _ in loop.epochs(1):
            for _ in loop.batches(4):
                pass
    assert destination.hooked == ["epoch_end"]
    assert destination.flushes >= 2  # every 2 batches (and wherever else its schedule says)
    assert Event.EPOCH_END in destination.hooked_events() and Event.BATCH_START not in destination.hooked_events()
