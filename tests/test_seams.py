"""The seams where the last release lost or corrupted data, each tried as a user's program meets
it: a metrics dict reused in place, a forked DataLoader worker or multiprocessing child, two
threads spooling at once, two attempts of one run, hostile values. Real files, real processes,
read back."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from composer_cfg import (
    DeliveryPolicy,
    FileLogger,
    InMemoryLogger,
    JSONLinesLogger,
    Kind,
    Logger,
    Sink,
    State,
    TensorboardLogger,
)
from composer_cfg.run.records import read_records
from composer_cfg.run.run_record import read_manifest
from conftest import needs

EventAccumulator = needs("tensorboard.backend.event_processing.event_accumulator").EventAccumulator

PACKAGE = Path(__file__).resolve().parent.parent / "composer_cfg"


def scalars(directory: str) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(directory, size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


# -- the caller's dict, array or tensor may change the moment the call returns ---------------------


def test_a_metrics_dict_reused_and_updated_in_place_is_written_as_each_call_had_it():
    memory = InMemoryLogger()
    logger = Logger(State("reuse"), {"jsonl": JSONLinesLogger(flush_interval=7), "tb": TensorboardLogger(),
                                     "memory": memory})
    metrics = {"loss": 0.0, "nested": {"step": 0}, "array": np.zeros(2)}
    with logger:
        for step in range(200):
            metrics["loss"] = float(step)  # one dict, updated in place, as training loops do
            metrics["nested"]["step"] = step
            metrics["array"][:] = step
            logger.data_batch(metrics)
            logger.state.timestamp = logger.state.timestamp.to_next_batch()
    written = [(r["batch"], r["data"]["loss"], r["data"]["nested"]["step"], r["data"]["array"])
               for r in read_records("reuse/metrics-rank0.jsonl")]
    assert written == [(step, float(step), step, [float(step)] * 2) for step in range(200)]
    assert scalars("reuse/tensorboard")["loss"] == [(step, float(step)) for step in range(200)]
    assert memory.get_timeseries("loss")["loss"].tolist() == [float(step) for step in range(200)]


class SlowStore(Sink):
    """An artifact store whose uploads start only when the test says so."""

    channel_kind = "thread"

    def __init__(self) -> None:
        self.go = threading.Event()
        self.stored: dict[str, bytes] = {}

    def can_log_file_artifacts(self) -> bool:
        return True

    def write(self, records):
        self.go.wait(30)
        for record in records:
            if record.kind is Kind.ARTIFACT:
                self.stored[record.payload.name] = record.payload.path.read_bytes()


def test_an_artifact_is_copied_once_at_the_call_and_may_change_at_once(tmp_path):
    store, checkpoint = SlowStore(), tmp_path / "checkpoint.bin"
    with Logger(State("copied"), {"store": store}) as logger:
        for epoch in range(3):
            checkpoint.write_bytes(f"epoch {epoch}".encode())  # one path, rewritten every epoch
            logger.file_artifact("fit", f"ep{epoch}.bin", checkpoint)
        checkpoint.unlink()  # and even removed, before any upload started
        store.go.set()
    assert store.stored == {f"ep{epoch}.bin": f"epoch {epoch}".encode() for epoch in range(3)}


# -- a forked child never touches its parent's run -------------------------------------------------

FORK_PARENT = """
import os, sys, time
from composer_cfg import JSONLinesLogger, Logger, State, TensorboardLogger, close_at_exit
logger = close_at_exit(Logger(State("run"), {"jsonl": JSONLinesLogger(flush_interval=10_000),
                                             "tb": TensorboardLogger()}, resume="auto"))
logger.run_event("init")
for step in range(10):
    logger.data_batch({"step": step})
    logger.state.timestamp = logger.state.timestamp.to_next_batch()
"""


def run_child(body: str, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FORK_PARENT + textwrap.dedent(body)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


def assert_the_parent_wrote_everything_once(tmp_path: Path, steps: int = 20) -> None:
    assert [r["data"]["step"] for r in read_records(tmp_path / "run/metrics-rank0.jsonl")] == list(range(steps))
    assert scalars(str(tmp_path / "run/tensorboard"))["step"] == [(step, float(step)) for step in range(steps)]
    run = read_manifest(tmp_path / "run/run-rank0.json")["run"]
    assert [attempt["status"] for attempt in run["attempts"]] == ["FINISHED"]


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["sys.exit(0)", "os._exit(0)", "raise SystemExit(3)"])
def test_an_os_fork_child_ends_at_once_and_leaves_the_parents_files_and_run_alone(tmp_path, ending):
    out = run_child(f"""
    pid = os.fork()
    if pid == 0:
        logger.data_batch({{"step": -1}})  # inert in the child: goes nowhere
        logger.close()                    # and so does this
        {ending}
    _, status = os.waitpid(pid, 0)
    run = open("run/run-rank0.json").read()
    print("child ended", os.waitstatus_to_exitcode(status), '"RUNNING"' in run, flush=True)
    for step in range(10, 20):
        logger.data_batch({{"step": step}})
        logger.state.timestamp = logger.state.timestamp.to_next_batch()
    logger.close()
    """, tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    code = {"sys.exit(0)": 0, "os._exit(0)": 0, "raise SystemExit(3)": 3}[ending]
    assert out.stdout.splitlines() == [f"child ended {code} True"]  # the run still RUNNING after the child ended
    assert_the_parent_wrote_everything_once(tmp_path)


@pytest.mark.slow
def test_multiprocessing_children_leave_the_parents_files_and_run_alone(tmp_path):
    out = run_child("""
    import multiprocessing
    def work(n):
        logger.data_batch({"step": -n})
        return n * n
    with multiprocessing.get_context("fork").Pool(2) as pool:
        print(pool.map(work, range(4)), flush=True)
    for step in range(10, 20):
        logger.data_batch({"step": step})
        logger.state.timestamp = logger.state.timestamp.to_next_batch()
    logger.close()
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[0, 1, 4, 9]"]
    assert_the_parent_wrote_everything_once(tmp_path)


@pytest.mark.slow
def test_torch_dataloader_workers_leave_the_parents_files_and_run_alone(tmp_path):
    out = run_child("""
    import torch
    from torch.utils.data import DataLoader
    data = DataLoader(list(range(8)), batch_size=2, num_workers=2)  # forked workers
    for epoch in range(2):
        for batch in data:
            pass
    for step in range(10, 20):
        logger.data_batch({"step": step})
        logger.state.timestamp = logger.state.timestamp.to_next_batch()
    logger.close()
    print("done", flush=True)
    """, tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["done"]
    assert_the_parent_wrote_everything_once(tmp_path)


def test_a_child_forked_while_another_thread_writes_the_captured_log_prints_to_its_own_stream(tmp_path):
    # A DataLoader worker forked while another thread is inside the text log (which captures
    # stdout): the child's print must neither hang on that thread's lock nor reach the parent's log.
    child = textwrap.dedent("""
        import os, sys, threading, time
        from composer_cfg import FileLogger, Logger, State
        logger = Logger(State("run"), {"file": FileLogger(log_level="batch")})
        logger.run_event("init")
        big = {f"k{i}": i * 0.5 for i in range(40_000)}  # a long write, under the channel's lock
        stop = threading.Event()
        def log():
            while not stop.is_set():
                logger.data_batch(big)
        writer = threading.Thread(target=log)
        writer.start()
        time.sleep(0.3)
        pid = os.fork()
        if pid == 0:
            print("from the child", flush=True)
            os._exit(0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.05)
        stop.set()
        writer.join()
        logger.close()
        print("parent done", flush=True)
        """)
    out = subprocess.run([sys.executable, "-c", child], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["from the child", "parent done"]
    log = (tmp_path / "run/logs-rank0.txt").read_text()
    assert "from the child" not in log and "[stdout]: parent done" not in log  # (printed after close)


@pytest.mark.slow
def test_a_child_that_builds_its_own_logger_logs_as_any_process(tmp_path):
    out = run_child("""
    pid = os.fork()
    if pid == 0:
        with Logger(State("child"), JSONLinesLogger()) as own:
            own.data_batch({"child": 1})
        os._exit(0)
    os.waitpid(pid, 0)
    for step in range(10, 20):
        logger.data_batch({"step": step})
        logger.state.timestamp = logger.state.timestamp.to_next_batch()
    logger.close()
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert [r["data"] for r in read_records(tmp_path / "child/metrics-rank0.jsonl")] == [{"child": 1}]
    assert_the_parent_wrote_everything_once(tmp_path)


# -- the run manifest has one owner ------------------------------------------------------------------


class Outage(Sink):
    """A tracker that takes nothing: whatever does not fit its queue of one is spooled."""

    channel_kind = "thread"
    delivery_policy = DeliveryPolicy(queue_size=1, when_full="drop", undelivered="spool", timeout=0.1)
    remote = True

    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, records):
        self.release.wait(30)

    def identity(self):
        return {"run_id": "outage"}


def test_two_spools_first_written_at_the_same_moment_are_both_in_the_manifest():
    for round_ in range(25):
        sinks = {"a": Outage(), "b": Outage()}
        logger = Logger(State(f"r{round_}"), sinks)
        barrier = threading.Barrier(2)

        def spool(name: str) -> None:
            barrier.wait(30)
            for index in range(3):  # the first is taken, the second waits, the third is spooled
                logger.data_batch({name: index})

        threads = [threading.Thread(target=spool, args=(name,)) for name in sinks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for sink in sinks.values():
            sink.release.set()
        logger.close()
        manifest = read_manifest(Path(f"r{round_}/run-rank0.json"))
        assert manifest["spools"] == {"undelivered-a-rank0.jsonl": "a", "undelivered-b-rank0.jsonl": "b"}, round_


LIVE_ATTEMPT = """
import sys, time
from composer_cfg import JSONLinesLogger, Logger, State
with Logger(State("run"), JSONLinesLogger(), resume="auto") as logger:  # a refused one is closed, FAILED
    logger.run_event("init")
    logger.data_batch({"attempt": sys.argv[1]})
    print("started", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_second_live_attempt_of_a_run_is_refused_naming_the_live_one_and_a_killed_ones_lock_is_taken_over():
    first = subprocess.Popen([sys.executable, "-c", LIVE_ATTEMPT, "first"], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "started\n"
        second = subprocess.run([sys.executable, "-c", LIVE_ATTEMPT, "second"], capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith("composer_cfg.core.errors.ConfigError: run_name: run 'run' (rank 0) is already "
                               "running: attempt started ") and f"by process {first.pid} on " in last
        assert [r["data"] for r in read_records("run/metrics-rank0.jsonl")] == []  # the refusal wrote nothing
        assert "logging" not in read_manifest(Path("run/run-rank0.json"))  # nor its report into the live run
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        first.stdout.close()
    third = subprocess.Popen([sys.executable, "-c", LIVE_ATTEMPT, "third"], stdout=subprocess.PIPE, text=True)
    try:
        assert third.stdout.readline() == "started\n"  # the killed attempt's lock went with its process
    finally:
        third.send_signal(signal.SIGKILL)
        third.wait(30)
        third.stdout.close()
    attempts = read_manifest(Path("run/run-rank0.json"))["run"]["attempts"]
    assert [a["status"] for a in attempts] == ["CRASHED", "RUNNING"] and attempts[1]["pid"] == third.pid


# -- values that are hostile ------------------------------------------------------------------------


class Exploding:
    def __iter__(self):
        raise ZeroDivisionError("division by zero")


def test_values_that_fail_to_be_read_or_written_are_errors_naming_their_key_and_nothing_else_is_lost():
    memory = InMemoryLogger()
    logger = Logger(State("hostile"), {"file": FileLogger(log_level="batch", capture_stdout=False,
                                                          capture_stderr=False),
                                       "jsonl": JSONLinesLogger(flush_interval=1), "memory": memory})
    with logger:
        logger.data_batch({"before": 1})
        with pytest.raises(TypeError, match=r"^log data value for key 'bad' can not be read: ZeroDivisionError: "
                                            r"division by zero$"):
            logger.data_batch({"bad": Exploding()})
        key = "k" * 1_000_000
        with pytest.raises(TypeError) as raised:
            logger.data_batch({key: iter([1])})
        assert len(str(raised.value)) < 500 and "kkkk" in str(raised.value)  # the key shown, not echoed whole
        with pytest.raises(ValueError, match="log data value for key 'huge' can not be written as text: an integer "
                                             "of more than 4300 digits"):
            logger.data_batch({"huge": 10 ** 4999})
        logger.data_batch({"surrogate": "a\udc80b"})
        logger.data_batch({"after": 2})
    lines = Path("hostile/logs-rank0.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ['[BATCH][batch=0]: { "before": 1, }', '[BATCH][batch=0]: { "surrogate": "a\\udc80b", }',
                     '[BATCH][batch=0]: { "after": 2, }']
    assert json.loads(lines[1].split(": ", 2)[2].removesuffix(", }")) == "a\udc80b"  # the escape reads back as logged
    assert [r["data"] for r in read_records("hostile/metrics-rank0.jsonl")] == [
        {"before": 1}, {"surrogate": "a\udc80b"}, {"after": 2}]


# -- the shape: no import circle, threads started in one place ---------------------------------------


def module_imports() -> dict[str, set[str]]:
    """Each composer_cfg module's imports of other composer_cfg modules at import time (not those in
    functions or under TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        imported: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("composer_cfg"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    imported.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() else node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names if a.name.startswith("composer_cfg"))
        graph[name] = imported
    return graph


def test_no_module_imports_itself_back_and_none_imports_through_the_package():
    graph = module_imports()
    for name, imported in graph.items():
        if name != "composer_cfg" and not name.startswith("composer_cfg.__"):
            assert "composer_cfg" not in imported, f"{name} imports through the package __init__"
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in graph.get(module, ()):
            assert state.get(other) != 1, f"import circle: {' -> '.join([*path, other])}"
            if other not in state:
                visit(other, [*path, other])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_threads_are_started_in_two_places_only():
    starting = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                      if "threading.Thread(" in path.read_text())
    assert starting == ["runtime/exit_hooks.py", "runtime/workers.py"]


def test_the_logger_class_is_a_router_of_at_most_250_lines():
    tree = ast.parse((PACKAGE / "core/logger.py").read_text())
    (logger,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Logger"]
    assert logger.end_lineno - logger.lineno + 1 <= 250
    imported = {alias.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    called = {node.func.id for node in ast.walk(logger) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not imported & {"threading", "Thread", "queue", "RunRecord", "Meter"}  # no threads, manifest or meters
    assert "open" not in called  # no file of its own
