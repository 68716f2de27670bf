"""Nothing lost, no bad input passes, no secret leaks: each row of the reliability table (docs/reliability.md)."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from composer_cfg import ConfigError, FileLogger, InMemoryLogger, Logger, State, build_logger
from composer_cfg.core.formatting import format_log_data_value
from composer_cfg.run.records import read_records
from conftest import needs_destinations

# A child that logs to every file-writing destination, reporting progress on stdout.
CHILD = """
import os, sys, time
from composer_cfg import FileLogger, JSONLinesLogger, Logger, State, close_at_exit
ending = sys.argv[1]
logger = Logger(State("run"), {"file": FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False),
                               "jsonl": JSONLinesLogger(flush_interval=100)})
close_at_exit(logger)  # what build_logger and the command do for their Loggers
def loop(count):
    for i in range(count):
        logger.data_batch({"i": i})
        logger.state.timestamp = logger.state.timestamp.to_next_batch()
        if i % 500 == 499:
            print(i + 1, flush=True)
if ending == "exit":              # never closed: atexit must do it
    loop(2345)
elif ending == "exception":
    with logger:
        loop(2345)
        raise RuntimeError("training diverged")
else:                             # killed from outside while logging
    loop(10**9)
"""


def run_child(tmp_path: Path, ending: str, signal_to_send: int | None = None) -> tuple[int, int]:
    """(exit status, calls reported done) of a child that logs until it ends as `ending`."""
    with subprocess.Popen([sys.executable, "-c", CHILD, ending], cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        reported = 0
        if signal_to_send is not None:
            while reported < 3000:
                reported = int(proc.stdout.readline())
            proc.send_signal(signal_to_send)
        out, _ = proc.communicate(timeout=60)
        numbers = [int(line) for line in out.split()]
        return proc.returncode, max([reported, *numbers])


def file_lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "run" / "logs-rank0.txt").read_text().splitlines()


def jsonl_indices(tmp_path: Path) -> list[int]:
    return [r["data"]["i"] for r in read_records(tmp_path / "run" / "metrics-rank0.jsonl")]


@pytest.mark.parametrize("ending", ["exit", "exception"])
def test_everything_logged_is_on_disk_at_exit_and_after_an_exception(tmp_path, ending):
    status, _ = run_child(tmp_path, ending)
    assert status == (0 if ending == "exit" else 1)
    assert file_lines(tmp_path) == [f'[BATCH][batch={i}]: {{ "i": {i}, }}' for i in range(2345)]
    assert jsonl_indices(tmp_path) == list(range(2345))


def test_sigterm_closes_everything_then_the_process_dies_of_sigterm(tmp_path):
    status, reported = run_child(tmp_path, "killed", signal.SIGTERM)
    assert status == -signal.SIGTERM
    lines, indices = file_lines(tmp_path), jsonl_indices(tmp_path)
    # nothing pending was lost; the signal may land between two destinations of the call in flight
    assert len(lines) >= reported and len(lines) - len(indices) in (0, 1)
    assert lines == [f'[BATCH][batch={i}]: {{ "i": {i}, }}' for i in range(len(lines))]
    assert indices == list(range(len(indices)))
    assert (tmp_path / "run" / "metrics-rank0.jsonl").read_text().endswith("\n")


def test_sigkill_loses_at_most_one_flush_interval_and_no_file_is_corrupt(tmp_path, caplog):
    status, reported = run_child(tmp_path, "killed", signal.SIGKILL)
    assert status == -signal.SIGKILL
    lines = file_lines(tmp_path)
    assert len(lines) >= reported  # line buffered: every finished call
    complete = lines if lines[-1].endswith("}") else lines[:-1]
    assert complete == [f'[BATCH][batch={i}]: {{ "i": {i}, }}' for i in range(len(complete))]
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        indices = jsonl_indices(tmp_path)  # a torn last line would be skipped, with a warning
    assert indices == list(range(len(indices))) and len(indices) >= reported - 100


@pytest.mark.slow
def test_a_failing_demo_loop_leaves_complete_files_and_a_failed_status(tmp_path, project_store):
    (tmp_path / "failing_demo.py").write_text(textwrap.dedent("""
        def run(logger, batches: int = 5):
            for i in range(batches):
                logger.data_batch({"i": i})
            raise RuntimeError("loss is NaN")
    """))
    out = subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=fail", "hydra.run.dir=run",
                          "demo._target_=failing_demo.run", "logger.allowed_modules=[failing_demo]", "~demo.epochs", "~demo.batches_per_epoch", "~demo.batch_size",
                          "~demo.features", "~demo.learning_rate", "~demo.seed", "~demo.checkpoint",
                          "+logger/destinations=[jsonl,mlflow]", "logger.destinations.file.log_level=batch"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 1 and "loss is NaN" in out.stderr
    files = tmp_path / "run" / "fail"
    assert [line for line in (files / "logs-rank0.txt").read_text().splitlines() if line.startswith("[BATCH]")] == [
        f'[BATCH][batch=0]: {{ "i": {i}, }}' for i in range(5)]
    records = read_records(files / "metrics-rank0.jsonl")
    assert [r["data"]["i"] for r in records if r["level"] == "BATCH"] == list(range(5))  # after the config
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # the project's store
    (run,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
    assert run.info.status == "FAILED"


def test_a_full_disk_is_reported_once_and_the_others_keep_logging(caplog):
    memory = InMemoryLogger()
    logger = Logger(State("run"), {"full_disk": FileLogger("/dev/full", overwrite=True, capture_stdout=False,
                                                           capture_stderr=False, log_level="batch"),
                                   "memory": memory})
    with pytest.raises(OSError, match="No space left on device") as caught:
        logger.data_batch({"i": 0})
    assert "raised by destination 'full_disk' in log_data: OSError" in caught.value.__notes__[0]
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        for i in range(1, 100):
            logger.data_batch({"i": i})
    assert [entry[2] for entry in memory.data["i"]] == list(range(100))
    assert caplog.messages == [
        "destination 'full_disk' failed again in log_data (OSError: [Errno 28] No space left on device); this "
        "failure is not raised again, only counted (the count is reported at close)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        logger.close()  # the disk is still full: the failure stays suppressed, its count is reported
    assert caplog.messages == ["destination 'full_disk': the failure OSError: [Errno 28] No space left on device "
                               "repeated 100 more time(s) without being raised"]  # 99 calls, then close


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({1: 2.0}, TypeError, "log data keys must be strings, got 1 (int)"),
        ({"x": type("Bad", (), {"__str__": lambda self: 1 / 0})()}, TypeError,
         "log data value for key 'x' can not be turned into text: its __str__ raised ZeroDivisionError"),
        ({"x": "y" * 2_000_000}, ValueError, "log data value for key 'x' is too large to log as text"),
        ({"x": list(range(200_000))}, ValueError, "log data value for key 'x' is too large to log as text (200,000 items"),
    ],
)
def test_bad_data_is_a_clear_error_naming_the_key(data, error, message):
    with pytest.raises(error) as caught:
        format_log_data_value(data)
    assert str(caught.value).startswith(message)


def test_a_cycle_never_recurses_forever():
    cycle: dict = {}
    cycle["self"] = cycle
    with pytest.raises(ValueError, match="log data value for key 'self' contains itself"):
        format_log_data_value({"outer": 1, "self": cycle})


def test_a_dangerous_target_gets_hydras_blocklist_error(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("defaults:\n  - logger: default\n  - _self_\nrun_name: null\nhook:\n"
                                      "  _target_: os.system\n  _partial_: true\n")
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=r"], config_dir=conf)
    (problem,) = caught.value.problems
    assert problem.startswith("hook._target_: 'os.system' is outside the modules this config may import from")
    with pytest.raises(ConfigError) as caught:  # allowed by the config, still refused by Hydra's blocklist
        build_logger(overrides=["run_name=r", "logger.allowed_modules=[os,posix]"], config_dir=conf)
    (problem,) = caught.value.problems
    assert problem.startswith("hook._target_: Target 'os.system' is blocklisted")
    with pytest.raises(ConfigError, match="'os.system' is outside the modules"):
        build_logger(overrides=["run_name=r", "++logger.destinations.evil={_target_: os.system}"])


SECRET = "hunter2-secret-value"


def all_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and p.stat().st_size < 10**7)


@pytest.mark.slow
def test_secrets_never_reach_printed_or_saved_configs_or_logs(tmp_path, project_store):
    needs_destinations("mlflow")
    overrides = ["run_name=s", "demo.epochs=1", "+logger/destinations=[object_store,mlflow]",
                 f"++logger.destinations.object_store.storage_options.secret={SECRET}",
                 "logger.destinations.object_store.url=store"]
    env = {**os.environ, "COMPOSER_CFG_SHOW_SECRETS": ""}
    runs = [subprocess.run([sys.executable, "-m", "composer_cfg", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=180, env=env)
            for args in ([*overrides, "hydra.run.dir=run"], ["-m", *overrides, "demo.seed=0,1", "hydra.sweep.dir=sweep"],
                         ["--cfg", "job", *overrides], ["--cfg", "all", *overrides], ["dry_run=true", *overrides],
                         [*overrides, "logger.destinations.object_store.num_concurrent_uploads=0"])]
    assert [r.returncode for r in runs] == [0, 0, 0, 0, 0, 2]
    printed = "".join(r.stdout + r.stderr for r in runs)
    assert SECRET not in printed and SECRET not in all_text(tmp_path)
    assert "secret: '***'" in runs[2].stdout
    shown = subprocess.run([sys.executable, "-m", "composer_cfg", "--cfg", "job", *overrides], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COMPOSER_CFG_SHOW_SECRETS": "1"})
    assert f"secret: {SECRET}" in shown.stdout  # asked for explicitly


def test_secret_values_in_errors_are_masked():
    needs_destinations("mlflow")
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=r", "+logger/destinations=mlflow",
                                f"logger.destinations.mlflow.tracking_uri=http://me:{SECRET}@tracker.invalid:5000",
                                f"++logger.destinations.mlflow.api_key={SECRET}",
                                f"logger.destinations.mlflow.tags={{api_token: {SECRET}}}"])
    assert len(caught.value.problems) == 3
    assert SECRET not in str(caught.value)
    assert "api_key=***" in caught.value.problems[0]
    assert caught.value.problems[1].startswith("logger.destinations.mlflow.tracking_uri: no tracking server takes "
                                               "connections at http://me:***@tracker.invalid:5000 (")
    assert caught.value.problems[2].startswith("logger.destinations.mlflow.tags: not in the config as given; to add it, "
                                               "write '++logger.destinations.mlflow.tags={api_token: ***}'")
