"""Process-wide effects only on request, and undone: atexit, the SIGTERM handler, stream capture."""

import atexit
import logging
import signal
import subprocess
import sys
import textwrap

import pytest

from composer_cfg import (
    FileLogger,
    InMemoryLogger,
    JSONLinesLogger,
    Logger,
    ProgressBarLogger,
    State,
    build_logger,
    close_at_exit,
    exit_hooks,
)


@pytest.fixture
def at_exit(monkeypatch) -> list:
    """The functions registered with `atexit` meanwhile (and not unregistered since)."""
    registered: list = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(atexit, "unregister", registered.remove)
    return registered


def process_wide() -> tuple:
    """What composer_cfg could change about the process (with `at_exit`, the atexit registry)."""
    return (signal.getsignal(signal.SIGTERM), dict(vars(sys.stdout)), dict(vars(sys.stderr)),
            logging.getLogRecordFactory())


def test_building_a_logger_changes_nothing_process_wide(at_exit):
    before = process_wide()
    Logger(State("r"), {"file": FileLogger(), "jsonl": JSONLinesLogger(), "memory": InMemoryLogger(),
                        "bar": ProgressBarLogger()})
    assert process_wide() == before and at_exit == []


def test_build_logger_installs_the_hooks_and_the_last_close_removes_them(at_exit):
    before = process_wide()
    first = build_logger(overrides=["run_name=one"])
    second = build_logger(overrides=["run_name=two", "logger.destinations.file.capture_stdout=false"])
    assert signal.getsignal(signal.SIGTERM) is not before[0] and len(at_exit) == 1
    assert exit_hooks.guarded() == [first, second]
    first.close()
    assert signal.getsignal(signal.SIGTERM) is not before[0]  # one Logger is still open
    second.close()
    assert process_wide() == before and at_exit == [] and exit_hooks.guarded() == []


@pytest.mark.parametrize("own", [signal.SIG_IGN, lambda signum, frame: None], ids=["ignored", "own handler"])
def test_a_program_that_ignores_or_handles_sigterm_itself_keeps_its_choice(own):
    previous = signal.signal(signal.SIGTERM, own)
    try:
        logger = close_at_exit(Logger(State("r")))
        assert signal.getsignal(signal.SIGTERM) is own
        logger.close()
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(script: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)


RECORDS_STATUS = """
    import os, signal, sys
    from composer_cfg import FileLogger, Logger, LoggerDestination, State, close_at_exit

    class RecordsStatus(LoggerDestination):
        def finalize(self, status):
            open("status.txt", "w").write(status.value)
"""


def test_at_exit_an_unhandled_exception_marks_the_run_failed(tmp_path):
    out = run(RECORDS_STATUS + """
    logger = close_at_exit(Logger(State("run"), [RecordsStatus(), FileLogger(log_level="batch")]))
    logger.data_batch({"loss": 1.0})
    raise RuntimeError("diverged")
    """, tmp_path)
    assert out.returncode == 1 and "RuntimeError: diverged" in out.stderr
    assert (tmp_path / "status.txt").read_text() == "FAILED"
    assert (tmp_path / "run/logs-rank0.txt").read_text().startswith('[BATCH][batch=0]: { "loss": 1.0000, }\n')


def test_on_sigterm_the_with_block_closes_with_killed_even_inside_a_destination(tmp_path):
    """The signal lands while a destination holds its lock: the handler does not wait for that
    lock (it would never be released); the stack unwinds, and the with block closes."""
    out = run(RECORDS_STATUS + """
    from composer_cfg import JSONLinesLogger

    class SignalInside(JSONLinesLogger):
        def log_data(self, state, log_level, data):
            with self._lock:
                os.kill(os.getpid(), signal.SIGTERM)  # lands while this destination's lock is held
                self._pending.append("never finished\\n")

    with close_at_exit(Logger(State("run"), [JSONLinesLogger(), SignalInside("other.jsonl"), RecordsStatus()])) as logger:
        logger.data_batch({"loss": 1.0})
    print("not reached")
    """, tmp_path)
    assert out.returncode == -signal.SIGTERM and out.stdout == ""
    assert (tmp_path / "status.txt").read_text() == "KILLED"
    assert (tmp_path / "run/metrics-rank0.jsonl").read_text().count("\n") == 1


def test_a_sigterm_during_close_lets_the_close_finish_then_ends_the_process(tmp_path):
    out = run(RECORDS_STATUS + """
    class SlowClose(LoggerDestination):
        def close(self, state, logger):
            os.kill(os.getpid(), signal.SIGTERM)  # lands in the middle of closing
            open("closed.txt", "w").write("the close went on")

    logger = close_at_exit(Logger(State("run"), [SlowClose(), RecordsStatus()]))
    logger.close()
    print("not reached: the process ended of the SIGTERM")
    """, tmp_path)
    assert out.returncode == -signal.SIGTERM and out.stdout == ""
    assert (tmp_path / "closed.txt").read_text() == "the close went on"
    assert (tmp_path / "status.txt").read_text() == "FINISHED"  # the close that was under way


def test_a_close_that_hangs_can_not_keep_sigterm_from_ending_the_process(tmp_path):
    out = run(RECORDS_STATUS + """
    import time
    from composer_cfg import exit_hooks
    exit_hooks.SIGTERM_GRACE = 1.0

    class Hangs(LoggerDestination):
        def close(self, state, logger):
            time.sleep(600)

    close_at_exit(Logger(State("run"), Hangs()))
    started = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    """, tmp_path)
    assert out.returncode == -signal.SIGTERM


@pytest.mark.parametrize("guarded", [True, False])
def test_a_plain_logger_is_closed_at_exit_only_when_asked(tmp_path, guarded):
    out = run(RECORDS_STATUS + f"""
    logger = Logger(State("run"), RecordsStatus())
    if {guarded}:
        close_at_exit(logger)
    """, tmp_path)
    assert out.returncode == 0 and (tmp_path / "status.txt").exists() is guarded


def test_closing_at_exit_after_a_change_of_directory_writes_where_the_run_started(tmp_path):
    """A file first written at exit lands where the run logged, not in a later working directory."""
    (tmp_path / "elsewhere").mkdir()
    out = run("""
    import os
    from composer_cfg import JSONLinesLogger, Logger, State, close_at_exit
    logger = close_at_exit(Logger(State("run"), JSONLinesLogger()))
    logger.data_batch({"loss": 1.0})  # pending: fewer than flush_interval records, no file yet
    os.chdir("elsewhere")
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run/metrics-rank0.jsonl").read_text().count("\n") == 1
    assert list((tmp_path / "elsewhere").iterdir()) == []
