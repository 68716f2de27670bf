"""Several threads on one Logger: whole records, nothing lost or doubled, prints never glued to data.

Real threads and real files: threads that race are released together by a `threading.Barrier`;
an order that matters is fixed with `threading.Event`s. What is on disk is counted against what
was logged. No assertion depends on timing.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest

from composer_cfg import (
    Event,
    FileLogger,
    InMemoryLogger,
    JSONLinesLogger,
    Logger,
    LoggerDestination,
    LogLevel,
    State,
    TrainingLoop,
)
from composer_cfg.run.records import read_records

DATA_LINE = re.compile(r'\[BATCH\]\[batch=(\d+)\]: \{ "thread": (\d+), "i": (\d+), \}')


@pytest.fixture(autouse=True)
def _switch_often():
    """Let the interpreter switch threads far more often than its 5 ms default, so that races
    (a print's text and its line break, two first writes opening a file) really interleave."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def run_together(count: int, work: Callable[[int], Any]) -> None:
    """Run ``work(index)`` in `count` threads released at once; re-raise the first error of any."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            work(index)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            errors.append(error)

    threads = [threading.Thread(target=body, args=(index,), name=f"worker-{index}") for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker thread never finished (deadlock?)"
    if errors:
        raise errors[0]


def quiet_file(filename: str = "{run_name}/logs-rank{rank}.txt", **kwargs: Any) -> FileLogger:
    return FileLogger(filename, log_level="batch", capture_stdout=False, capture_stderr=False, **kwargs)


def text_pairs(path: str | Path) -> list[tuple[int, int]]:
    """(thread, i) of every line of a text log; each line must be one whole data line."""
    text = Path(path).read_text()
    assert text.endswith("\n"), "the last record is not whole"
    pairs = []
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        match = DATA_LINE.fullmatch(line)
        assert match is not None, f"line {number} is not one whole record: {line!r}"
        pairs.append((int(match[2]), int(match[3])))
    return pairs


def jsonl_pairs(path: str | Path) -> list[tuple[int, int]]:
    records = list(read_records(path))
    assert {r["level"] for r in records} <= {"BATCH"}
    assert all(set(r["data"]) == {"thread", "i"} for r in records)
    return [(r["data"]["thread"], r["data"]["i"]) for r in records]


def memory_pairs(memory: InMemoryLogger) -> list[tuple[int, int]]:
    series = memory.data
    assert len(series["thread"]) == len(series["i"])
    return [(t[2], i[2]) for t, i in zip(series["thread"], series["i"])]


@pytest.mark.slow
def test_eight_threads_5000_calls_each_reach_every_destination_exactly_once():
    threads, calls = 8, 5000
    memory = InMemoryLogger()
    logger = Logger(State("run"), {"file": quiet_file(), "jsonl": JSONLinesLogger(), "memory": memory})
    with logger:
        def work(thread: int) -> None:
            for i in range(calls):
                logger.data_batch({"thread": thread, "i": i})

        run_together(threads, work)
    expected = {(t, i) for t in range(threads) for i in range(calls)}
    for name, pairs in [("file", text_pairs("run/logs-rank0.txt")), ("jsonl", jsonl_pairs("run/metrics-rank0.jsonl")),
                        ("memory", memory_pairs(memory))]:
        assert len(pairs) == threads * calls, name
        assert set(pairs) == expected, name  # with the count: each (thread, i) exactly once
        # each thread's own calls stay in its order
        for t in range(threads):
            assert [i for thread, i in pairs if thread == t] == list(range(calls)), (name, t)
    # the file ends with a line break: the last record is whole too
    assert Path("run/logs-rank0.txt").read_text().endswith("}\n")
    assert Path("run/metrics-rank0.jsonl").read_text().endswith("}\n")


def test_threads_racing_the_lazy_open_get_one_file_each_and_lose_nothing():
    threads, calls, rounds = 8, 20, 25
    for round_ in range(rounds):  # many fresh races: the open happens once per Logger
        run_name = f"race{round_}"
        memory = InMemoryLogger()
        # No INIT: the first writes open the files. flush_interval=1 makes every JSONL call a write.
        logger = Logger(State(run_name), {"file": quiet_file(), "jsonl": JSONLinesLogger(flush_interval=1),
                                          "memory": memory})

        def work(thread: int) -> None:
            for i in range(calls):
                logger.data_batch({"thread": thread, "i": i})

        try:
            run_together(threads, work)  # a FileExistsError from a second open would be raised here
        finally:
            logger.close()
        assert sorted(p.name for p in Path(run_name).iterdir()) == ["logs-rank0.txt", "metrics-rank0.jsonl"]
        expected = Counter((t, i) for t in range(threads) for i in range(calls))
        assert Counter(text_pairs(f"{run_name}/logs-rank0.txt")) == expected
        assert Counter(jsonl_pairs(f"{run_name}/metrics-rank0.jsonl")) == expected
        assert Counter(memory_pairs(memory)) == expected


def test_prints_from_threads_and_data_lines_from_others_are_each_a_whole_line(capsys):
    printers, loggers, count = 4, 4, 1000
    destination = FileLogger(log_level="batch", capture_stderr=False)
    logger = Logger(State("run"), destination)
    with logger:
        logger.run_event(Event.INIT)  # capture starts here

        def work(index: int) -> None:
            if index < printers:  # print writes the text and the line break separately
                for i in range(count):
                    if i % 2:
                        print(f"printed by {index} #{i}")
                    else:  # a line in two prints: the pieces wait for each other, per thread
                        print(f"printed by {index} ", end="")
                        time.sleep(0)  # let the others write in between
                        print(f"#{i}")
            else:
                for i in range(count):
                    logger.data_batch({"thread": index, "i": i})

        run_together(printers + loggers, work)
    text = Path("run/logs-rank0.txt").read_text()
    assert text.endswith("\n")
    printed, data, other = Counter(), Counter(), []
    for line in text[:-1].split("\n"):
        match = DATA_LINE.fullmatch(line)
        if match is not None:
            data[(int(match[2]), int(match[3]))] += 1
        elif line.startswith("[stdout]: "):
            printed[line] += 1
        else:
            other.append(line)
    assert other == []
    assert printed == Counter(f"[stdout]: printed by {p} #{i}" for p in range(printers) for i in range(count))
    assert data == Counter((t, i) for t in range(printers, printers + loggers) for i in range(count))
    capsys.readouterr()


def test_a_partial_print_is_ended_before_a_data_line_of_the_same_thread(capsys):
    with Logger(State("run"), FileLogger(log_level="batch", capture_stderr=False)) as logger:
        logger.run_event(Event.INIT)
        print("partial", end="")
        logger.data_batch({"x": 1})
        print()  # the line break that ends "partial" on the terminal: a line of its own in the log
        print("after", end="")
        print(" the data")
        print("tail", end="")  # never ended by the program: ended at close
    assert Path("run/logs-rank0.txt").read_text().split("\n") == [
        "[stdout]: partial",
        '[BATCH][batch=0]: { "x": 1, }',
        "",
        "[stdout]: after the data",
        "[stdout]: tail",
        "",
    ]
    out, _ = capsys.readouterr()
    assert out == "partial\nafter the data\ntail"  # the terminal sees exactly what was printed


def test_a_partial_print_of_one_thread_waits_for_its_rest_while_another_logs(capsys):
    printed_part, logged = threading.Event(), threading.Event()
    with Logger(State("run"), FileLogger(log_level="batch", capture_stderr=False)) as logger:
        logger.run_event(Event.INIT)

        def printer() -> None:
            print("first half", end="")
            printed_part.set()
            assert logged.wait(timeout=60)
            print(", second half")

        thread = threading.Thread(target=printer)
        thread.start()
        assert printed_part.wait(timeout=60)
        logger.data_batch({"x": 1})  # another thread's data: its own line, the half line untouched
        logged.set()
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert Path("run/logs-rank0.txt").read_text() == (
        '[BATCH][batch=0]: { "x": 1, }\n'
        "[stdout]: first half, second half\n"
    )
    capsys.readouterr()


class CountingDestination(LoggerDestination):
    """Counts how many threads are inside it at once; each call stays inside for a moment."""

    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0
        self.calls = 0
        self.events = 0
        self._count_lock = threading.Lock()

    def _occupy(self) -> None:
        with self._count_lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        time.sleep(0.0002)  # widen the window in which a second thread would overlap
        with self._count_lock:
            self.inside -= 1

    def log_data(self, state, log_level, data):
        self._occupy()
        calls = self.calls  # a read-modify-write no lock of ours protects: only safe if serialised
        time.sleep(0)
        self.calls = calls + 1

    def batch_end(self, state, logger):
        self._occupy()
        events = self.events
        time.sleep(0)
        self.events = events + 1


def test_a_destination_is_never_entered_by_two_threads():
    counting = CountingDestination()
    threads, calls = 8, 100
    with Logger(State("run"), counting) as logger:
        def work(index: int) -> None:
            for _ in range(calls):
                if index == 0:
                    logger.run_event(Event.BATCH_END)  # events are serialised with data too
                else:
                    logger.data_batch({"x": index})

        run_together(threads, work)
    assert counting.most_inside == 1
    assert counting.calls == (threads - 1) * calls
    assert counting.events == calls


class MeetingDestination(LoggerDestination):
    """A data call from thread `meets` waits until the other thread's call is inside a destination too."""

    def __init__(self, barrier: threading.Barrier, log_level: LogLevel, meets: int) -> None:
        self.barrier, self.log_level, self.meets = barrier, log_level, meets
        self.met = 0

    def log_data(self, state, log_level, data):
        if data.get("meet") == self.meets:
            self.barrier.wait()  # raises BrokenBarrierError if one destination's lock held the other's caller
            self.met += 1


def test_a_thread_inside_one_destination_never_holds_up_another_destination():
    # The control for the test above: destinations are serialised one by one, not all together.
    barrier = threading.Barrier(2, timeout=60)
    fit_only, everything = MeetingDestination(barrier, LogLevel.FIT, 0), MeetingDestination(barrier, LogLevel.BATCH, 1)
    with Logger(State("run"), [fit_only, everything]) as logger:
        # thread 0's call reaches fit_only first and waits there; thread 1's reaches only everything
        run_together(2, lambda index: logger.data_fit({"meet": 0}) if index == 0 else logger.data_batch({"meet": 1}))
    assert (fit_only.met, everything.met) == (1, 1)


@pytest.mark.slow
def test_events_from_one_thread_while_others_log_leave_complete_files():
    loggers, calls, epochs, batches = 4, 2000, 5, 40
    memory = InMemoryLogger()
    logger = Logger(State("run"), {"file": quiet_file(flush_interval=10), "jsonl": JSONLinesLogger(flush_interval=7),
                                   "memory": memory})
    with logger:
        def work(index: int) -> None:
            if index == loggers:  # the training thread: INIT (racing the lazy opens), then a whole loop
                logger.run_event(Event.INIT)
                loop = TrainingLoop(logger)
                for epoch in loop.epochs(epochs):
                    logger.run_event(Event.EVAL_START)
                    logger.run_event(Event.EVAL_END)
                    for _ in loop.batches(batches):
                        pass
                    logger.data_epoch({"epoch": epoch})
            else:
                for i in range(calls):
                    logger.data_batch({"thread": index, "i": i})

        run_together(loggers + 1, work)
    assert logger.state.timestamp.batch == epochs * batches
    expected = Counter((t, i) for t in range(loggers) for i in range(calls))

    text_lines = Path("run/logs-rank0.txt").read_text().splitlines()
    epoch_lines = [line for line in text_lines if line.startswith("[EPOCH]")]
    assert epoch_lines == [f'[EPOCH][batch={(e + 1) * batches}]: {{ "epoch": {e}, }}' for e in range(epochs)]
    data_lines = [line for line in text_lines if not line.startswith("[EPOCH]")]
    matches = [DATA_LINE.fullmatch(line) for line in data_lines]
    assert all(matches), [line for line, m in zip(data_lines, matches) if m is None][:3]
    assert Counter((int(m[2]), int(m[3])) for m in matches) == expected

    records = list(read_records("run/metrics-rank0.jsonl"))
    assert [r["data"]["epoch"] for r in records if r["level"] == "EPOCH"] == list(range(epochs))
    assert Counter((r["data"]["thread"], r["data"]["i"]) for r in records if r["level"] == "BATCH") == expected
    assert len(records) == loggers * calls + epochs

    assert Counter(memory_pairs(memory)) == expected
    assert [entry[2] for entry in memory.data["epoch"]] == list(range(epochs))
    assert sorted(p.name for p in Path("run").iterdir()) == [  # and the manifest listing the records file
        "logs-rank0.txt", "metrics-rank0.jsonl", "run-rank0.json", "run-rank0.json.lock"]


class Gate(LoggerDestination):
    """Holds a data call inside the Logger (as a slow destination would) until the Logger closes."""

    def __init__(self) -> None:
        self.armed = False
        self.inside = threading.Event()
        self.logger: Logger | None = None

    def log_data(self, state, log_level, data):
        if self.armed:
            self.inside.set()
            deadline = time.monotonic() + 60
            while not self.logger.closing and time.monotonic() < deadline:  # type: ignore[union-attr]
                time.sleep(0.001)


class SlowToCopy:
    def __deepcopy__(self, memo):
        time.sleep(0.5)  # the call is still copying its values when close starts
        return SlowToCopy()

    def __str__(self) -> str:
        return "slow"


def test_a_call_that_close_overtakes_while_it_copies_its_values_reaches_no_destination():
    first, second = InMemoryLogger(), InMemoryLogger()
    logger = Logger(State("run"), {"first": first, "second": second})
    logger.data_batch({"before": 1})
    outcome: list[str] = []

    def call() -> None:
        try:
            logger.data_batch({"loss": 0.5, "slow": SlowToCopy()})
            outcome.append("returned")
        except RuntimeError as error:
            outcome.append(str(error))

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.1)
    logger.close()
    caller.join(30)
    assert outcome == ["this Logger is closed: it takes no more data"]
    assert sorted(first.most_recent_values) == sorted(second.most_recent_values) == ["before"]  # all or nothing


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no-overwrite"])
def test_a_data_call_in_flight_when_the_logger_closes_is_delivered_whole_and_a_later_one_refused(overwrite):
    # A background thread (an async eval) is inside data_batch while the main thread leaves
    # `with logger:`. The Gate stands for the time spent in the destinations before the files.
    gate = Gate()
    text_log = quiet_file(overwrite=overwrite)
    logger = gate.logger = Logger(State("run"), [gate, text_log, JSONLinesLogger(overwrite=overwrite)])
    for i in range(5):
        logger.data_batch({"thread": 0, "i": i})
    gate.armed = True
    errors: list[Exception] = []

    def late() -> None:
        try:
            logger.data_batch({"thread": 1, "i": 0})
        except Exception as error:  # noqa: BLE001 - examined below
            errors.append(error)

    thread = threading.Thread(target=late)
    thread.start()
    assert gate.inside.wait(timeout=60)
    logger.close()  # waits for the call in flight, then closes every file, complete
    thread.join(timeout=60)
    assert not thread.is_alive() and errors == []
    whole = [(0, i) for i in range(5)] + [(1, 0)]
    assert text_pairs("run/logs-rank0.txt") == whole == jsonl_pairs("run/metrics-rank0.jsonl")
    # a call made once close has started is refused, loudly: never written to a reopened file
    with pytest.raises(RuntimeError, match="this Logger is closed: it takes no more data"):
        logger.data_batch({"thread": 2, "i": 0})
    assert text_log.sink().run_file.file is None and text_pairs("run/logs-rank0.txt") == whole
