"""Process-wide effects only on request, and undone: atexit, the SIGTERM handler, stream capture."""

import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from composer_cfg import (
    FileLogger,
    InMemoryLogger,
    JSONLinesLogger,
    Logger,
    LoggerDestination,
    ProgressBarLogger,
    State,
    build_logger,
    close_at_exit,
)
from composer_cfg.runtime import exit_hooks


def wakeup_fd() -> int:
    """The signal wake-up file descriptor now (-1: none), left as it is."""
    current = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(current)
    return current


def process_wide() -> tuple:
    """What composer_cfg could change about the process."""
    return (signal.getsignal(signal.SIGTERM), wakeup_fd(), dict(vars(sys.stdout)), dict(vars(sys.stderr)),
            logging.getLogRecordFactory(), exit_hooks.guarded())


def test_building_a_logger_changes_nothing_process_wide():
    before = process_wide()
    Logger(State("r"), {"file": FileLogger(), "jsonl": JSONLinesLogger(), "memory": InMemoryLogger(),
                        "bar": ProgressBarLogger()})
    assert process_wide() == before


def test_build_logger_installs_the_hooks_and_the_last_close_removes_them():
    """The SIGTERM handler and its wake-up descriptor go with the last guarded Logger; the exit
    hook (registered once per process) then has nothing to close."""
    before = process_wide()
    first = build_logger(overrides=["run_name=one"])
    second = build_logger(overrides=["run_name=two", "logger.destinations.file.capture_stdout=false"])
    assert signal.getsignal(signal.SIGTERM) is not before[0] and wakeup_fd() != -1
    assert exit_hooks.guarded() == [first, second]
    first.close()
    assert signal.getsignal(signal.SIGTERM) is not before[0]  # one Logger is still open
    second.close()
    assert process_wide() == before


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
    """The signal lands while a sink writes, its channel's lock held: the handler does not wait for
    that lock (it would never be released); the stack unwinds, and the with block closes."""
    out = run(RECORDS_STATUS + """
    from composer_cfg import JSONLinesLogger, Sink

    class SignalInside(Sink):
        def write(self, records):
            os.kill(os.getpid(), signal.SIGTERM)  # lands while this destination's channel lock is held
            open("never.txt", "w").write("never finished")

    with close_at_exit(Logger(State("run"), [JSONLinesLogger(), SignalInside(), RecordsStatus()])) as logger:
        logger.data_batch({"loss": 1.0})
    print("not reached")
    """, tmp_path)
    assert out.returncode == -signal.SIGTERM and out.stdout == ""
    assert (tmp_path / "status.txt").read_text() == "KILLED"
    assert (tmp_path / "run/metrics-rank0.jsonl").read_text().count("\n") == 1
    assert not (tmp_path / "never.txt").exists()


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


@pytest.mark.slow
def test_a_close_that_hangs_can_not_keep_sigterm_from_ending_the_process(tmp_path):
    out = run(RECORDS_STATUS + """
    import time
    from composer_cfg.runtime import exit_hooks
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


@pytest.mark.slow
def test_a_sigterm_during_a_long_native_call_still_closes_and_ends_the_process(tmp_path):
    """The Python handler waits for the main thread to come back from C code (an NCCL hang never
    does); the wake-up descriptor tells a thread at once, which closes and ends the process."""
    with subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import hashlib, threading, time
        from composer_cfg import JSONLinesLogger, Logger, State, close_at_exit
        logger = close_at_exit(Logger(State("run"), JSONLinesLogger()))
        logger.data_batch({"x": 1})

        def announce():  # "ready" once the main thread is well inside the C call (which releases the GIL):
            time.sleep(0.3)  # said before it, the signal could land while the main thread still runs Python
            print("ready", flush=True)

        threading.Thread(target=announce, daemon=True).start()
        hashlib.pbkdf2_hmac("sha256", b"x", b"y", 10**9)  # minutes in C, no signal checks
        """)], cwd=tmp_path, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout.readline() == "ready\n"
        started = time.monotonic()
        child.send_signal(signal.SIGTERM)
        status = child.wait(30)
    assert status == 128 + signal.SIGTERM  # ended from a thread: the exit status a shell shows for SIGTERM
    assert time.monotonic() - started < 10
    assert (tmp_path / "run/metrics-rank0.jsonl").read_text().count("\n") == 1


@pytest.mark.slow
def test_a_sigterm_during_the_close_of_an_unguarded_logger_lets_it_finish(tmp_path):
    with subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import time
        from composer_cfg import InMemoryLogger, JSONLinesLogger, Logger, LoggerDestination, State, close_at_exit

        class SlowToClose(LoggerDestination):
            def close(self, state, logger):
                print("closing", flush=True)
                time.sleep(2)

        guarded = close_at_exit(Logger(State("main"), InMemoryLogger()))
        with Logger(State("eval"), {"slow": SlowToClose(), "jsonl": JSONLinesLogger()}) as logger:
            for i in range(50):
                logger.data_batch({"i": i})
        """)], cwd=tmp_path, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout.readline() == "closing\n"
        child.send_signal(signal.SIGTERM)
        status = child.wait(30)
    assert status == -signal.SIGTERM
    assert (tmp_path / "eval/metrics-rank0.jsonl").read_text().count("\n") == 50


def test_a_second_close_from_another_thread_returns_once_the_first_is_done():
    finished = []

    class SlowToClose(LoggerDestination):
        def close(self, state, logger):
            time.sleep(0.5)
            finished.append("closed")

    logger = Logger(State("r"), SlowToClose())
    first = threading.Thread(target=logger.close)
    first.start()
    while not logger.closing:
        time.sleep(0.01)
    logger.close()
    assert finished == ["closed"]
    first.join()


def test_on_sigterm_what_failed_while_closing_is_said_before_the_process_ends(tmp_path):
    out = run(RECORDS_STATUS + """
    class BrokenAtClose(LoggerDestination):
        def close(self, state, logger):
            raise OSError("the disk is gone")

    close_at_exit(Logger(State("run"), {"broken": BrokenAtClose(), "status": RecordsStatus()}))
    os.kill(os.getpid(), signal.SIGTERM)
    """, tmp_path)
    assert out.returncode == -signal.SIGTERM
    assert "closing destination 'broken' after SIGTERM: close failed: OSError: the disk is gone" in out.stderr
    assert (tmp_path / "status.txt").read_text() == "KILLED"


def test_an_error_shown_in_an_interactive_session_does_not_fail_the_run(tmp_path):
    session = RECORDS_STATUS.replace("\n    ", "\n") + textwrap.dedent("""
        logger = close_at_exit(Logger(State("run"), RecordsStatus()))
        a_typo_shown_by_the_interpreter

        exit()
        """)
    out = subprocess.run([sys.executable, "-i", "-q"], input=session, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert "NameError" in out.stderr and out.returncode == 0
    assert (tmp_path / "status.txt").read_text() == "FINISHED"


def test_a_process_without_stdout_still_logs_and_captures_stderr(tmp_path):
    script = textwrap.dedent("""
        import sys
        from composer_cfg import FileLogger, Logger, State
        assert sys.stdout is None
        with Logger(State("run"), FileLogger(log_level="batch")) as logger:
            logger.data_batch({"x": 1})
            print("to stderr", file=sys.stderr)
        """)
    out = subprocess.run(f"exec 1>&-; {sys.executable} -c '{script}'", shell=True, cwd=tmp_path,
                         capture_output=False, stderr=subprocess.PIPE, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run/logs-rank0.txt").read_text() == '[BATCH][batch=0]: { "x": 1, }\n[stderr]: to stderr\n'
