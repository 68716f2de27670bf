"""examples/lightning_app, run as a user runs it: copied, then ``python train.py ...`` in its directory."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composer_cfg.run.records import read_records
from conftest import needs

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lightning_app"
HYDRA_FILES = [".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log"]
CHECKPOINTS = [f"demo/checkpoints/ep{epoch}.json" for epoch in (1, 2, 3)]
EPOCH_LINES = ['[EPOCH][batch=8]: { "epoch": 0, "loss/epoch": 1.0083, }',
               '[EPOCH][batch=16]: { "epoch": 1, "loss/epoch": 1.4832, }',
               '[EPOCH][batch=24]: { "epoch": 2, "loss/epoch": 0.5792, }']


def steps_of_a_whole_run() -> list[tuple[str, int]]:
    return [step for epoch in range(3)
            for step in [*(("BATCH", batch) for batch in range(8 * epoch, 8 * epoch + 8)), ("EPOCH", 8 * epoch + 8)]]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "app")
    return tmp_path / "app"


def train(app: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *args], cwd=app, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def files(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())


def steps(path: Path) -> list[tuple[str, int]]:
    """The level and batch of each record, as a reader of the file sees them (a resumed run's
    file holds the records an attempt wrote after its last checkpoint, marked as left behind)."""
    return [(record["level"], record["batch"]) for record in read_records(path)]


def test_the_default_run_writes_a_text_log_json_lines_and_a_checkpoint_per_epoch_in_its_job_directory(app):
    before = files(app)
    out = train(app, "run_name=demo", "hydra.run.dir=run")  # Hydra leaves the working directory alone
    assert out.returncode == 0, out.stderr
    assert [name for name in files(app) if name not in before and not name.startswith("run/")] == []
    run = app / "run"
    assert files(run) == sorted([*HYDRA_FILES, *CHECKPOINTS, "demo/logs-rank0.txt", "demo/metrics-rank0.jsonl",
                                 "demo/run-rank0.json", "demo/run-rank0.json.lock"])
    assert (run / "demo/logs-rank0.txt").read_text().splitlines() == EPOCH_LINES
    assert steps(run / "demo/metrics-rank0.jsonl") == steps_of_a_whole_run()
    assert json.loads((run / "demo/checkpoints/ep3.json").read_text()).keys() == {"weights", "bias"}


@pytest.mark.slow
def test_every_file_of_the_run_is_in_its_job_directory_though_hydra_never_changes_into_it(app):
    before = files(app)
    out = train(app, "logger/destinations=[file,jsonl,tensorboard,mlflow,wandb,object_store]", "run_name=demo",
                "logger.destinations.mlflow.tracking_uri=sqlite:///stores/mlflow.db", "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr
    written = [name for name in files(app) if name not in before]
    assert [name for name in written if not name.startswith("run/")] == []
    run = app / "run"
    assert len(list((run / "demo/tensorboard").glob("events.out.tfevents.*"))) == 1
    assert len(list((run / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    assert files(run / "artifacts/demo/checkpoints") == ["ep1.json", "ep2.json", "ep3.json"]  # the object store's
    client = needs("mlflow").MlflowClient(tracking_uri=f"sqlite:///{run / 'stores/mlflow.db'}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
    assert len(client.get_metric_history(mlflow_run.info.run_id, "loss/train")) == 24


@pytest.mark.slow
def test_the_ranks_of_one_run_share_its_job_directory(app):
    ranks = [subprocess.Popen([sys.executable, "train.py"], cwd=app, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                                              "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "0a1b2c3d4e5f"})
             for rank in (0, 1)]  # as torchrun starts them: each composes its config, at its own second
    assert [rank.communicate(timeout=120)[1] for rank in ranks] == ["", ""]
    (job,) = (app / "outputs").iterdir()
    assert job.name == "torchrun-0a1b2c3d"  # the name both ranks agree on, from the launcher's job id
    assert files(job) == sorted([".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml",  # rank 0's
                                 "train-rank0.log", "train-rank1.log", *(f"{job.name}/{name}" for name in [
                                     "checkpoints/ep1.json", "checkpoints/ep2.json", "checkpoints/ep3.json",
                                     *(f"{kind}-rank{rank}.{ext}" for rank in (0, 1) for kind, ext in [
                                         ("logs", "txt"), ("metrics", "jsonl"), ("run", "json"), ("run", "json.lock")])])])
    for rank in (0, 1):
        assert steps(job / job.name / f"metrics-rank{rank}.jsonl") == steps_of_a_whole_run()


def test_logger_null_switches_logging_off(app):
    out = train(app, "logger=null", "run_name=demo", "hydra.run.dir=run")
    assert (out.returncode, out.stderr) == (0, "")
    assert files(app / "run") == sorted([*HYDRA_FILES, *CHECKPOINTS])  # the app's checkpoints, no log


def test_help_lists_the_apps_own_logger_choice_next_to_composer_cfgs_presets(app):
    out = train(app, "--help")
    assert out.returncode == 0, out.stderr
    assert "logger: all_local, csv, default, none, trackers" in out.stdout.splitlines()


@pytest.mark.slow
def test_a_sweep_runs_each_job_in_its_own_directory(app):
    out = train(app, "-m", "model.learning_rate=0.1,0.3", "run_name=demo", "hydra.sweep.dir=sweep")
    assert out.returncode == 0, out.stderr
    first, second = ((app / "sweep" / job / "demo/logs-rank0.txt").read_text().splitlines() for job in ("0", "1"))
    assert first == EPOCH_LINES
    assert len(second) == 3 and second != first  # its own learning rate


@pytest.mark.slow
def test_a_run_killed_after_its_first_checkpoint_finishes_with_resume_auto_each_step_once(app):
    args = ["run_name=demo", "resume=auto"]  # a run that may be continued runs in outputs/<run_name>
    metrics = app / "outputs/demo/demo/metrics-rank0.jsonl"
    slow = subprocess.Popen([sys.executable, "train.py", *args, "seconds_per_batch=0.05"], cwd=app,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (metrics.exists() and ("BATCH", 11) in steps(metrics)):  # in the epoch after the first checkpoint
        assert slow.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    assert not (app / "outputs/demo/demo/checkpoints/ep2.json").exists()

    out = train(app, *args)
    assert out.returncode == 0, out.stderr
    assert steps(metrics) == steps_of_a_whole_run()
    assert (app / "outputs/demo/demo/logs-rank0.txt").read_text().splitlines() == [  # the same values as a run never killed
        EPOCH_LINES[0],
        "[resumed]: at epoch 1 batch 8; the lines above from that point on were written by an attempt that did not "
        "finish", *EPOCH_LINES[1:]]


@pytest.mark.slow
@pytest.mark.parametrize("typo", ["yaml", "command line"])
def test_a_typo_is_one_line_naming_the_key_and_where_it_came_from_and_exit_status_2(app, typo):
    allowed = ("filename, artifact_name, capture_stdout, capture_stderr, buffer_size, log_level, log_interval, "
               "flush_interval, flush_seconds, overwrite")
    if typo == "yaml":
        with (app / "configs/logger/csv.yaml").open("a") as config:
            config.write("  file:\n    log_levl: batch\n")
        args, source = [], f"logger/csv.yaml in file://{app / 'configs'}"
    else:
        args, source = ["logger.destinations.file.log_levl=batch"], "command line 'logger.destinations.file.log_levl=batch'"
    out = train(app, *args, "hydra.run.dir=run")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"train.py: error: logger.destinations.file.log_levl: unknown key for FileLogger; did you mean 'log_level'? "
        f"allowed: {allowed} (from {source})"]
    assert not (app / "run").exists()  # nothing created
    full = train(app, *args, "hydra.run.dir=run", HYDRA_FULL_ERROR="1")
    assert full.returncode == 1 and "Traceback (most recent call last):" in full.stderr


@pytest.mark.slow
def test_a_config_error_the_app_raises_while_running_is_one_line_and_exit_status_2(app):
    script = app / "train.py"
    script.write_text(script.read_text().replace("resume=cfg.resume", 'resume="sometimes"'))
    out = train(app, "hydra.run.dir=run")
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["train.py: error: resume: expected one of never, auto, must, got 'sometimes'"]
    full = train(app, "hydra.run.dir=run", HYDRA_FULL_ERROR="1")
    assert full.returncode == 1 and "Traceback (most recent call last):" in full.stderr
