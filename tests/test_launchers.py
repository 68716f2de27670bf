"""2x2 sweeps with Hydra's basic, joblib and submitit_local launchers: complete, separate jobs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from tensorboard.backend.event_processing import event_accumulator as ea

from wandb_records import offline_run

JOBS = [(0, 1, 0), (1, 1, 1), (2, 2, 0), (3, 2, 1)]  # job number, epochs, seed


def sweep(tmp_path: Path, launcher: str, *extra: str) -> Path:
    out = subprocess.run([sys.executable, "-m", "composer_cfg", "-m", "run_name=sweep", "demo.epochs=1,2",
                          "demo.seed=0,1", "hydra.sweep.dir=sweep", f"hydra/launcher={launcher}", *extra],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return tmp_path / "sweep"


def check_jobs(root: Path) -> None:
    for job, epochs, seed in JOBS:
        files = root / str(job) / "sweep"
        lines = [line for line in (files / "logs-rank0.txt").read_text().splitlines()
                 if not line.startswith("[stderr]")]  # back ends' own notices, captured
        assert len(lines) == 1 + epochs and f'"hparams/seed": {seed}' in lines[0]
        assert sorted(p.name for p in (files / "checkpoints").iterdir()) == [f"ep{e}-rank0.npz" for e in range(epochs)]
        assert (root / str(job) / ".hydra" / "overrides.yaml").read_text().count("demo.") == 2


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_sweep_with_a_process_launcher(tmp_path, launcher):
    check_jobs(sweep(tmp_path, launcher))


def test_sweep_in_process_starts_every_writer_afresh(tmp_path):
    root = sweep(tmp_path, "basic", "+logger/destinations=[tensorboard,mlflow,wandb]")
    check_jobs(root)
    for job, epochs, _ in JOBS:
        job_dir = root / str(job)
        events = ea.EventAccumulator(str(job_dir / "sweep" / "tensorboard"), size_guidance={ea.SCALARS: 0})
        events.Reload()
        assert [e.step for e in events.Scalars("loss/train")] == list(range(16 * epochs))
        client = MlflowClient(tracking_uri=f"sqlite:///{job_dir / 'sweep' / 'mlflow.db'}")
        (run,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
        assert len(client.get_metric_history(run.info.run_id, "loss/train")) == 16 * epochs
        assert run.info.status == "FINISHED"
        history = offline_run(job_dir / "wandb")["history"]
        assert max(history) == 16 * epochs
