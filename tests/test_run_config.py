"""The run's config, logged by the command to every destination, read back from each back end:
the saved file, MLflow's parameters and artifacts, W&B's run config and artifacts, TensorBoard's
hyperparameter table, the object store, the JSON Lines record; a planted secret nowhere."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from composer_cfg.run.records import read_records
from composer_cfg.run.run_config import git_state
from wandb_records import offline_run
from conftest import needs, place_store

MlflowClient = needs("mlflow").MlflowClient
ea = needs("tensorboard.backend.event_processing.event_accumulator")
tensor_util = needs("tensorboard.util.tensor_util")

SECRET = "PLANTED-s3cr3t-7f1e"
DESTINATIONS = "[file,jsonl,mlflow,tensorboard,wandb,object_store]"


def git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout.strip()


@pytest.fixture(scope="module")
def run(tmp_path_factory, empty_store) -> tuple[Path, subprocess.CompletedProcess]:
    """One demo run (in a git work tree) with every destination that stores config or files; the
    secret reaches the config by reference, as docs/secrets.md recommends."""
    project = tmp_path_factory.mktemp("project")
    (project / "train.txt").write_text("tracked\n")
    git(project, "init", "-q", ".")
    git(project, "add", "train.txt")
    git(project, "commit", "-q", "-m", "start")
    place_store(empty_store, project)  # the project's MLflow store, made already (untracked: the tree stays clean)
    out = subprocess.run(
        [sys.executable, "-m", "composer_cfg", "run_name=cfg", "hydra.run.dir=run", "demo.epochs=1",
         "demo.batches_per_epoch=2", f"logger/destinations={DESTINATIONS}",
         "logger.destinations.wandb.log_artifacts=true",
         "+logger.destinations.object_store.storage_options.secret_access_key=${oc.env:PLANTED_SECRET}"],
        cwd=project, capture_output=True, text=True, timeout=180,
        env={**os.environ, "PLANTED_SECRET": SECRET, "HYDRA_FULL_ERROR": "0"})
    assert out.returncode == 0, out.stderr
    return project, out


@pytest.mark.slow
def test_the_run_directory_holds_the_config_with_overrides_sources_defaults_git_and_versions(run):
    project, _ = run
    record = yaml.safe_load((project / "run" / "cfg" / "run-config.yaml").read_text())
    assert record["run_name"] == "cfg" and record["config"]["run_name"] == "cfg"
    assert record["config"]["demo"]["batches_per_epoch"] == 2
    assert record["config"]["logger"]["destinations"]["object_store"]["storage_options"] == {"secret_access_key": "***"}
    assert record["overrides"][-1] == "+logger.destinations.object_store.storage_options.secret_access_key=***"
    assert record["provenance"]["demo.epochs"] == "command line 'demo.epochs=1'"
    assert record["provenance"]["demo.seed"] == "config.yaml in pkg://composer_cfg.conf"
    assert record["provenance"]["logger.destinations.mlflow.tracking_uri"] == (
        "logger/destinations/mlflow.yaml in pkg://composer_cfg.conf")
    assert record["defaults"] == [f"logger/destinations/{name}" for name in DESTINATIONS[1:-1].split(",")] + [
        "logger/default", "config"]
    assert record["git"] == {"commit": git(project, "rev-parse", "HEAD"), "dirty": False}
    assert record["versions"]["composer_cfg"] == version("composer_cfg")
    assert record["versions"]["hydra-core"] == version("hydra-core")
    assert record["versions"]["wandb"] == version("wandb")


def test_each_tracker_holds_the_config_as_its_own_hyperparameters_and_the_file_as_an_artifact(run):
    project, _ = run
    directory = project / "run" / "cfg"
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (mlflow_run,) = client.search_runs(client.get_experiment_by_name("composer_cfg").experiment_id)
    params = mlflow_run.data.params
    assert params["config/demo/batches_per_epoch"] == "2"
    assert params["config/logger/destinations/file/log_level"] == "epoch"
    assert params["config/logger/destinations/object_store/storage_options/secret_access_key"] == "***"
    assert "cfg/run-config.yaml" in [a.path for a in client.list_artifacts(mlflow_run.info.run_id, "cfg")]

    wandb_run = offline_run(project / "run" / "wandb")
    assert wandb_run["config"]["config"]["demo"]["batches_per_epoch"] == 2  # nested, W&B's own form
    assert wandb_run["config"]["config"]["logger"]["destinations"]["wandb"]["log_artifacts"] is True
    assert {"name": "cfg.run-config.yaml", "type": "yaml", "aliases": ["ep0-ba0", "latest"],
            "files": ["run-config.yaml"]} in wandb_run["artifacts"]

    events = ea.EventAccumulator(str(directory / "tensorboard"), size_guidance={ea.TENSORS: 0})
    events.Reload()
    tables = [tensor_util.make_ndarray(t.tensor_proto)[0].decode() for t in events.Tensors("hparams/text_summary")]
    assert "| config/demo/batches_per_epoch | 2 |\n" in tables[0]

    stored = project / "run" / "artifacts" / "cfg" / "run-config.yaml"
    assert stored.read_bytes() == (directory / "run-config.yaml").read_bytes()

    (first, *_) = read_records(directory / "metrics-rank0.jsonl")
    assert first["level"] == "FIT" and first["data"]["config"]["demo"]["batches_per_epoch"] == 2


def test_the_planted_secret_is_in_no_file_and_no_stream(run):
    project, out = run
    assert SECRET not in out.stdout + out.stderr
    holding = [path for path in project.rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()]
    assert holding == []


def test_git_state_says_dirty_when_a_tracked_file_changed_and_none_outside_a_work_tree(tmp_path):
    (tmp_path / "repo").mkdir()
    repo = tmp_path / "repo"
    (repo / "a.txt").write_text("1\n")
    git(repo, "init", "-q", ".")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "a")
    (repo / "a.txt").write_text("2\n")
    assert git_state(repo) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": True}
    (tmp_path / "plain").mkdir()
    assert git_state(tmp_path / "plain") is None


@pytest.mark.slow
def test_log_config_false_logs_no_config(tmp_path):
    out = subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=quiet", "hydra.run.dir=run", "log_config=false",
                          "demo.epochs=1", "demo.batches_per_epoch=2", "logger/destinations=[jsonl]"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "run" / "quiet" / "run-config.yaml").exists()
    assert [set(r["data"]) for r in read_records(tmp_path / "run" / "quiet" / "metrics-rank0.jsonl")
            if r["level"] == "FIT"] == [{"hparams/epochs", "hparams/batch_size", "hparams/learning_rate",
                                         "hparams/features", "hparams/seed"}]


@pytest.mark.slow
def test_a_sync_replays_the_config_into_a_tracker_as_its_hyperparameters(tmp_path, monkeypatch, empty_store):
    from composer_cfg.run.sync import sync

    out = subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=later", "hydra.run.dir=run", "demo.epochs=1",
                          "demo.batches_per_epoch=2", "logger/destinations=[file,jsonl]"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    monkeypatch.chdir(tmp_path / "run")
    place_store(empty_store, tmp_path / "run")  # the project's store of the sync
    (synced,) = sync("later", ["mlflow"])
    assert synced.sent == 2 + 2 + 1  # FIT: config, hparams; 2 batches; 1 epoch
    assert synced.files == ["later/logs-rank0.txt", "later/run-config.yaml"]  # with the run's own files
    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")  # the project's store: where the sync ran
    (mlflow_run,) = client.search_runs(client.get_experiment_by_name("composer_cfg").experiment_id)
    params = mlflow_run.data.params
    assert params["config/demo/batches_per_epoch"] == "2" and params["config/run_name"] == "later"
    for name in synced.files:
        copy = Path(client.download_artifacts(mlflow_run.info.run_id, name, str(tmp_path / "back")))
        assert copy.read_bytes() == Path(name).read_bytes()
    assert [s.files for s in sync("later", ["mlflow"])] == [[]]  # nothing new: nothing sent again
    (synced,) = sync("later", ["wandb"], ["logger.destinations.wandb.log_artifacts=true"])
    assert synced.files == ["later/logs-rank0.txt", "later/run-config.yaml"]
    assert sorted((a["name"], a["files"]) for a in offline_run(tmp_path / "run" / "wandb")["artifacts"]) == [
        ("later.logs-rank0.txt", ["logs-rank0.txt"]), ("later.run-config.yaml", ["run-config.yaml"])]


def test_a_sync_sends_the_runs_other_files_it_is_asked_for_and_refuses_a_pattern_leaving_the_run(
        tmp_path, monkeypatch, capsys, empty_store):
    from composer_cfg import JSONLinesLogger, Logger, State
    from composer_cfg.run.sync import main

    monkeypatch.chdir(tmp_path)
    with Logger(State("files"), JSONLinesLogger()) as logger:
        logger.data_batch({"loss": 0.5})
    (tmp_path / "files" / "checkpoints").mkdir()
    (tmp_path / "files" / "checkpoints" / "ep0.pt").write_bytes(b"\x00weights")
    (tmp_path / "files" / "checkpoints" / "notes.txt").write_text("not asked for")
    (tmp_path / "secret.pt").write_bytes(b"outside the run")
    (tmp_path / "files" / "checkpoints" / "link.pt").symlink_to(tmp_path / "secret.pt")
    place_store(empty_store, tmp_path)
    for pattern in ("../*.pt", str(tmp_path / "secret.pt")):
        assert main(["files", "--to", "mlflow", "--files", pattern]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"composer-cfg-sync: error: --files: {pattern!r} must be a pattern of files inside the run's directory, "
            f"relative to it (such as 'checkpoints/*.pt')"]
    assert main(["files", "--to", "mlflow", "--files", "checkpoints/*.pt"]) == 0
    assert "  files: files/checkpoints/ep0.pt" in capsys.readouterr().out.splitlines()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # (MLflow caches a relative URI's store)
    (mlflow_run,) = client.search_runs(client.get_experiment_by_name("composer_cfg").experiment_id)
    listed = [item.path for item in client.list_artifacts(mlflow_run.info.run_id, "files/checkpoints")]
    assert listed == ["files/checkpoints/ep0.pt"]  # not the text file, not the link leaving the run
    copy = client.download_artifacts(mlflow_run.info.run_id, "files/checkpoints/ep0.pt", str(tmp_path / "back"))
    assert Path(copy).read_bytes() == b"\x00weights"


@pytest.mark.slow
def test_a_resumed_run_keeps_its_first_hyperparameters_and_rewrites_the_file(tmp_path):
    def command(*args: str) -> None:
        out = subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=again", "resume=auto",
                              "demo.batches_per_epoch=2", "logger/destinations=[jsonl]", *args],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr

    command("demo.epochs=1")
    command("demo.epochs=2")  # continues after the first epoch's checkpoint
    directory = tmp_path / "outputs" / "again" / "again"
    configs = [r["data"]["config"]["demo"]["epochs"] for r in read_records(directory / "metrics-rank0.jsonl")
               if r["level"] == "FIT" and "config" in r["data"]]
    assert configs == [1]
    assert yaml.safe_load((directory / "run-config.yaml").read_text())["config"]["demo"]["epochs"] == 2
