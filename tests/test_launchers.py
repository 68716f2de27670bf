"""2x2 sweeps with Hydra's basic, joblib and submitit_local launchers: complete, separate jobs."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from composer_cfg.run.records import read_records
from wandb_records import offline_run
from conftest import needs

MlflowClient = needs("mlflow").MlflowClient
ea = needs("tensorboard.backend.event_processing.event_accumulator")

JOBS = [(0, 1, 0), (1, 1, 1), (2, 2, 0), (3, 2, 1)]  # job number, epochs, seed


def sweep(tmp_path: Path, launcher: str, destinations: str = "jsonl") -> Path:
    out = subprocess.run([sys.executable, "-m", "composer_cfg", "-m", "run_name=sweep", "demo.epochs=1,2",
                          "demo.seed=0,1", "hydra.sweep.dir=sweep", f"hydra/launcher={launcher}",
                          f"+logger/destinations={destinations}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return tmp_path / "sweep"


def check_jobs(root: Path, destinations: str = "jsonl") -> None:
    for job, epochs, seed in JOBS:
        files = root / str(job) / "sweep"
        lines = [line for line in (files / "logs-rank0.txt").read_text().splitlines()
                 if not line.startswith("[stderr]")]  # back ends' own notices, captured
        assert len(lines) == 1 + epochs and f'"hparams/seed": {seed}' in lines[0]
        assert sorted(p.name for p in (files / "checkpoints").iterdir()) == [f"ep{e + 1}-rank0.npz" for e in range(epochs)]
        assert (root / str(job) / ".hydra" / "overrides.yaml").read_text().count("demo.") == 2
    # The sweep's summary has a row per job, whichever process ran it, with the job's final metrics.
    table = list(csv.reader((root / "sweep-summary.csv").read_text().splitlines()))
    assert table[0] == ["job", "status", "overrides", "loss/epoch", "metrics/epoch/accuracy"]
    assert [row[:3] for row in table[1:]] == [
        [str(job), "COMPLETED", f"run_name=sweep demo.epochs={epochs} demo.seed={seed} +logger/destinations={destinations}"]
        for job, epochs, seed in JOBS]
    for (job, _, _), row in zip(JOBS, table[1:]):
        last_epoch = [r for r in read_records(root / str(job) / "sweep" / "metrics-rank0.jsonl") if r["level"] == "EPOCH"][-1]
        assert [float(cell) for cell in row[3:]] == [last_epoch["data"]["loss/epoch"],
                                                     last_epoch["data"]["metrics/epoch/accuracy"]]
    assert (root / "sweep-summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_sweep_with_the_submitit_launcher(tmp_path):
    check_jobs(sweep(tmp_path, "submitit_local"))


@pytest.mark.slow
def test_the_jobs_of_a_parallel_sweep_share_the_project_store_created_once_and_quietly(tmp_path):
    # joblib runs the jobs in processes at once: they create the project's MLflow store together.
    destinations = "[jsonl,mlflow]"
    root = sweep(tmp_path, "joblib", destinations)
    check_jobs(root, destinations)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
    assert sorted(run.data.tags["sweep.overrides"] for run in runs) == sorted(
        f"run_name=sweep demo.epochs={epochs} demo.seed={seed} +logger/destinations={destinations}"
        for _, epochs, seed in JOBS)
    for run in runs:
        assert run.info.status == "FINISHED"
        epochs = int(run.data.tags["sweep.overrides"].split("demo.epochs=")[1][0])
        assert len(client.get_metric_history(run.info.run_id, "loss/train")) == 16 * epochs
    assert not list(root.rglob("mlflow.db")) and (tmp_path / "mlartifacts").is_dir()
    said = [path for path in tmp_path.rglob("*") if path.is_file() and path.suffix in (".txt", ".log")
            and "Creating initial MLflow database tables" in path.read_text(errors="replace")]
    assert said == []


@pytest.mark.slow
def test_sweep_in_process_starts_every_writer_afresh(tmp_path, project_store):
    destinations = "[jsonl,tensorboard,mlflow,wandb]"
    root = sweep(tmp_path, "basic", destinations)
    check_jobs(root, destinations)
    for job, epochs, seed in JOBS:
        job_dir = root / str(job)
        events = ea.EventAccumulator(str(job_dir / "sweep" / "tensorboard"), size_guidance={ea.SCALARS: 0})
        events.Reload()
        assert [e.step for e in events.Scalars("loss/train")] == list(range(16 * epochs))
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # the project's, shared
        (run,) = [run for run in client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
                  if f"demo.epochs={epochs} demo.seed={seed} " in run.data.tags["sweep.overrides"]]
        assert len(client.get_metric_history(run.info.run_id, "loss/train")) == 16 * epochs
        assert run.info.status == "FINISHED"
        assert (run.data.tags["sweep"], run.data.tags["sweep.overrides"]) == (
            "sweep", f"run_name=sweep demo.epochs={epochs} demo.seed={seed} +logger/destinations={destinations}")
        wandb_run = offline_run(job_dir / "wandb")
        assert max(wandb_run["history"]) == 16 * epochs
        assert wandb_run["group"] == "sweep"  # every job of the sweep in one W&B group, tagged with its overrides
        assert wandb_run["tags"] == ["run_name=sweep", f"demo.epochs={epochs}", f"demo.seed={seed}",
                                     f"+logger/destinations={destinations}"]


@pytest.mark.slow
def test_a_sweep_that_hydra_stops_at_a_failed_job_still_has_its_summary(tmp_path):
    (tmp_path / "diverging.py").write_text(
        "from composer_cfg.cli.demo import run_demo\n\n"
        "def run(logger, diverge=False, **params):\n"
        "    if diverge:\n"
        "        raise RuntimeError('diverged')\n"
        "    return run_demo(logger, **params)\n")
    out = subprocess.run([sys.executable, "-m", "composer_cfg", "-m", "run_name=sweep", "demo.epochs=1",
                          "demo._target_=diverging.run", "+demo.diverge=false,true", "hydra.sweep.dir=sweep",
                          "logger.allowed_modules=[diverging]"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "RuntimeError: diverged" in out.stderr
    table = list(csv.reader((tmp_path / "sweep" / "sweep-summary.csv").read_text().splitlines()))
    shared, allowed = "run_name=sweep demo.epochs=1 demo._target_=diverging.run", "logger.allowed_modules=[diverging]"
    assert [row[:3] for row in table] == [
        ["job", "status", "overrides"],
        ["0", "COMPLETED", f"{shared} +demo.diverge=False {allowed}"],  # as Hydra gives each job its overrides
        ["1", "FAILED", f"{shared} +demo.diverge=True {allowed}"],
    ]
    assert float(table[1][3]) > 0 and table[2][3:] == ["", ""]
