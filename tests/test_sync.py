"""composer-cfg-sync: a run's JSON Lines records replayed into MLflow (SQLite), TensorBoard and W&B
(offline), each read back with its own reader; a second sync adds nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from composer_cfg import ConfigError, Event, Timestamp, TrainingLoop, build_logger
from composer_cfg.core.status import RunStatus
from composer_cfg.run.plot import series_from_records
from composer_cfg.run.records import read_records
from composer_cfg.run.run_record import RunFiles, RunRecord, run_files
from composer_cfg.run.sync import main, sync
from wandb_records import offline_run, offline_runs
from conftest import default_sigint, needs, place_store

MlflowClient = needs("mlflow").MlflowClient
ea = needs("tensorboard.backend.event_processing.event_accumulator")

RECORDS = Path("run/metrics-rank0.jsonl")


def jsonl_run(epochs: int = 2, batches: int = 3) -> list[dict]:
    """A run logged to JSON Lines only; its records."""
    with build_logger(overrides=["run_name=run", "logger/destinations=[jsonl]"]) as logger:
        loop = TrainingLoop(logger)
        logger.data_fit({"lr": 0.1, "optimizer": {"name": "sgd"}})
        for epoch in loop.epochs(epochs):
            for batch in loop.batches(batches):
                logger.data_batch({"loss": 1.0 / (batch + 1), "phase": "train"})
            logger.data_epoch({"accuracy": 0.5 + 0.1 * epoch})
    return list(read_records(RECORDS))


def series(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """metric -> [(batch, value)] in logged order: what every tracker should hold."""
    out: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        if record["level"] != "FIT":
            for key, value in record["data"].items():
                if isinstance(value, float):
                    out.setdefault(key, []).append((record["batch"], value))
    return out


def mlflow_series(run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(tracking_uri=f"sqlite:///{Path('mlflow.db').resolve()}")
    keys = client.get_run(run_id).data.metrics
    return {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in keys}


def tensorboard_series(directory: str = "run/tensorboard") -> dict[str, list[tuple[int, float]]]:
    events = ea.EventAccumulator(directory, size_guidance={ea.SCALARS: 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def as_float32(expected: dict[str, list[tuple[int, float]]]) -> dict[str, list[tuple[int, float]]]:
    return {key: [(step, np.float32(value)) for step, value in points] for key, points in expected.items()}


PROGRESS = Path("run/sync-progress-rank0.json")


def progress(path: Path = PROGRESS) -> dict:
    """What the syncs of a run's files recorded of them (`composer_cfg.run.sync_progress`)."""
    return json.loads(path.read_text())


def run_id(store: str = "mlflow.db", file: str = "metrics-rank0.jsonl") -> str:
    """The MLflow run the syncs of `file` of run/ into `store` made."""
    return progress()[file]["mlflow"][f"sqlite:///{Path(store).resolve()}"]["identity"]["run_id"]


@pytest.mark.slow
def test_mlflow_and_tensorboard_hold_the_records_series_and_a_second_sync_adds_nothing(project_store):
    records = jsonl_run()
    expected = series(records)
    first = sync("run", ["mlflow", "tensorboard"])
    assert [(s.destination, s.sent) for s in first] == [("mlflow", len(records)), ("tensorboard", len(records))]
    assert mlflow_series(run_id()) == expected
    client = MlflowClient(tracking_uri=f"sqlite:///{Path('mlflow.db').resolve()}")
    run = client.get_run(run_id())
    assert (run.info.status, run.data.params) == ("FINISHED", {"lr": "0.1", "optimizer/name": "sgd"})
    history = client.get_metric_history(run_id(), "loss")
    assert [m.timestamp for m in history] == [int(r["time"] * 1000) for r in records if "loss" in r["data"]]
    assert tensorboard_series() == as_float32(expected)
    events = ea.EventAccumulator("run/tensorboard")
    events.Reload()
    assert [e.wall_time for e in events.Scalars("loss")] == pytest.approx(
        [r["time"] for r in records if "loss" in r["data"]])
    event_files = sorted(Path("run/tensorboard").iterdir())

    second = sync("run", ["mlflow", "tensorboard"])
    assert [(s.destination, s.sent) for s in second] == [("mlflow", 0), ("tensorboard", 0)]
    assert mlflow_series(run_id()) == expected
    assert sorted(Path("run/tensorboard").iterdir()) == event_files


def test_wandb_offline_holds_the_series_and_the_config():
    records = jsonl_run()
    sync("run", ["wandb"])
    run = offline_run(Path("wandb"))
    assert (run["name"], run["exit_code"], run["config"]) == ("run", 0, {"lr": 0.1, "optimizer": {"name": "sgd"}})
    steps: dict[int, dict] = {}
    for record in records:
        if record["level"] != "FIT":
            steps.setdefault(record["batch"], {}).update(record["data"])  # W&B keeps strings too
    assert run["history"] == steps
    assert [s.sent for s in sync("run", ["wandb"])] == [0]
    assert len(list(Path("wandb").glob("offline-run-*"))) == 1


def test_a_wandb_project_taken_from_the_environment_is_a_target_of_its_own(monkeypatch):
    records = jsonl_run()
    monkeypatch.setenv("WANDB_PROJECT", "first")
    assert [s.sent for s in sync("run", ["wandb"])] == [len(records)]
    assert [s.sent for s in sync("run", ["wandb"])] == [0]
    monkeypatch.setenv("WANDB_PROJECT", "second")  # another project: everything, into a new run
    assert [s.sent for s in sync("run", ["wandb"])] == [len(records)]
    first, second = offline_runs(Path("wandb"))
    assert {first["project"], second["project"]} == {"first", "second"} and first["id"] != second["id"]


@pytest.mark.slow
def test_a_run_killed_mid_write_syncs_its_complete_part_then_the_rest_once(project_store):
    records = jsonl_run(epochs=3, batches=4)
    text = RECORDS.read_text()
    whole = text.splitlines(keepends=True)
    cut = sum(len(line) for line in whole[:10]) + len(whole[10]) // 2  # ten records and half of one
    RECORDS.write_text(text[:cut])
    assert [s.sent for s in sync("run", ["mlflow", "tensorboard", "wandb"])] == [10, 10, 10]
    assert mlflow_series(run_id()) == series(records[:10])

    RECORDS.write_text(text)  # the run went on (or was resumed) and wrote the rest
    assert [s.sent for s in sync("run", ["mlflow", "tensorboard", "wandb"])] == [len(records) - 10] * 3
    assert mlflow_series(run_id()) == series(records)
    assert tensorboard_series() == as_float32(series(records))
    first, second = offline_runs(Path("wandb"))  # W&B offline: one directory per sync, one run id
    assert first["id"] == second["id"]
    assert sorted(first["history"]) + sorted(second["history"]) == sorted({r["batch"] for r in records[1:]})


@pytest.mark.slow
def test_values_the_tracker_refuses_are_reported_and_the_rest_is_sent(project_store):
    with build_logger(overrides=["run_name=run", "logger/destinations=[jsonl]"]) as logger:
        logger.data_batch({"acc@1": 0.5, "loss": 0.25})
    (synced,) = sync("run", ["mlflow"])
    assert synced.refused == ["MLflow refuses the metric name(s) 'acc@1' (Invalid value \"acc@1\" for parameter "
                              "'name' supplied: Names may only contain alphanumerics, underscores (_), dashes (-), "
                              "periods (.), spaces ( ), colon(:) and slashes (/)); the call's other metrics were logged"]
    assert mlflow_series(run_id()) == {"loss": [(0, 0.25)]}


@pytest.mark.slow
def test_every_rank_of_a_run_is_replayed_into_its_own_tracker_run_or_rank_zero_alone(project_store):
    for rank in (0, 1):
        Path(f"run/metrics-rank{rank}.jsonl").parent.mkdir(exist_ok=True)
        Path(f"run/metrics-rank{rank}.jsonl").write_text(json.dumps(
            {"level": "BATCH", "run_name": "run", "rank": rank, "epoch": 0, "batch": 0, "batch_in_epoch": 0,
             "sample": 0, "time": 1.0, "data": {"loss": float(rank)}}) + "\n")
    results = sync("run", ["tensorboard"], ["logger.destinations.tensorboard.rank_zero_only=false",
                                            'logger.destinations.tensorboard.log_dir="{run_name}/tb-{rank}"'])
    assert [s.sent for s in results] == [1, 1]
    assert tensorboard_series("run/tb-0") == {"loss": [(0, 0.0)]}
    assert tensorboard_series("run/tb-1") == {"loss": [(0, 1.0)]}
    (only,) = sync("run", ["mlflow"])  # rank_zero_only, as by default: rank 0's records alone
    assert (only.records_file, only.sent) == (Path("run/metrics-rank0.jsonl"), 1)
    assert list(progress(Path("run/sync-progress-rank1.json"))["metrics-rank1.jsonl"]) == ["tensorboard"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (["missing", "--to", "mlflow"], "composer-cfg-sync: error: source: 'missing' does not exist"),
        (["run", "--to", "mlfow"], "composer-cfg-sync: error: logger/destinations: unknown option 'mlfow'; did you "
                                   "mean 'mlflow'? available: file, in_memory, jsonl, mlflow, object_store, "
                                   "progress_bar, tensorboard, wandb"),
        (["run", "--to", "mlflow", "logger.destinations.mlflow.flush_interval=0"],
         "composer-cfg-sync: error: logger.destinations.mlflow.flush_interval: expected a positive integer, got 0 "
         "(from command line 'logger.destinations.mlflow.flush_interval=0')"),
    ],
    ids=["no-source", "unknown-destination", "bad-option"],
)
def test_the_command_reports_bad_input_in_one_line_and_sends_nothing(args, stderr):
    jsonl_run(epochs=1, batches=1)
    before = sorted(Path(".").rglob("*"))
    out = subprocess.run([sys.executable, "-m", "composer_cfg.run.sync", *args], capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stderr.splitlines(), out.stdout) == (2, [stderr], "")
    assert sorted(Path(".").rglob("*")) == before


@pytest.mark.slow
def test_the_command_says_what_it_sent_where():
    records = jsonl_run(epochs=1, batches=2)
    out = subprocess.run([sys.executable, "-m", "composer_cfg.run.sync", "run", "--to", "tensorboard"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"tensorboard: {len(records)} new record(s) from run/metrics-rank0.jsonl into {Path('run/tensorboard').resolve()}"
    ]


def test_a_source_without_records_is_an_error():
    Path("empty").mkdir()
    with pytest.raises(ConfigError, match="source: no records"):
        sync("empty", ["mlflow"])


@pytest.mark.slow
def test_a_tracker_run_that_is_gone_fails_the_sync_in_one_line_keeps_its_progress_and_fresh_sends_it_all_again(project_store):
    records = jsonl_run(epochs=1, batches=1)
    sync("run", ["mlflow"])
    kept = progress()
    (entry,) = kept["metrics-rank0.jsonl"]["mlflow"].values()
    entry.update(identity={"run_id": "0" * 32}, through={"epoch": 0, "batch": 0, "keys": []})  # deleted from its store
    PROGRESS.write_text(json.dumps(kept))

    def command(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "composer_cfg.run.sync", "run", "--to", "mlflow", *extra],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "0"})

    out = command()
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1].startswith(f"composer-cfg-sync: error: MlflowException: Run with id={'0' * 32} not found")
    assert progress() == kept
    out = command("--fresh")
    assert out.returncode == 0 and out.stdout.startswith(f"mlflow: {len(records)} new record(s)"), out.stderr
    assert mlflow_series(run_id()) == series(records)


@pytest.mark.slow
def test_a_records_file_longer_than_the_trackers_queue_is_synced_whole(project_store):
    # A replay fires no batch_end: a full queue must start a delivery itself, not wait out
    # `timeout` and drop the rest.
    records = jsonl_run(epochs=2, batches=40)
    (synced,) = sync("run", ["mlflow"], ["logger.destinations.mlflow.queue_size=7",
                                         "logger.destinations.mlflow.timeout=60"])
    assert synced.sent == len(records) == 83
    assert mlflow_series(run_id()) == series(records)


@pytest.mark.slow
def test_a_run_logged_to_jsonl_and_mlflow_is_read_plotted_and_synced_once_not_once_per_copy(project_store):
    # MLflow's default store keeps a copy of the published records file beside it, apart from the
    # run directory; a store given inside the run directory keeps it there.
    def run(name: str, *overrides: str) -> Path:
        with build_logger(overrides=[f"run_name={name}", "logger/destinations=[jsonl,mlflow]", *overrides]) as logger:
            loop = TrainingLoop(logger)
            for _ in loop.epochs(1):
                for batch in loop.batches(3):
                    logger.data_batch({"loss": 1.0 / (batch + 1)})
        return Path(name, "metrics-rank0.jsonl")

    inside = run("inside", 'logger.destinations.mlflow.tracking_uri="sqlite:///{run_name}/mlflow.db"')
    copies = [path for path in Path("inside").rglob("*.jsonl") if path != inside]
    assert copies and all(copy.read_bytes() == inside.read_bytes() for copy in copies)
    assert list(read_records("inside")) == list(read_records(inside))
    assert run("run") == RECORDS
    copies = [path for path in Path("mlartifacts").rglob("*.jsonl")]
    assert copies and all(copy.read_bytes() == RECORDS.read_bytes() for copy in copies)
    assert [path for path in Path("run").rglob("*.jsonl")] == [RECORDS]
    records = list(read_records(RECORDS))
    assert list(read_records("run")) == records == [r for r in read_records(".") if r["run_name"] == "run"]
    assert series_from_records(read_records("run")) == series_from_records(records)
    assert [(s.records_file, s.sent) for s in sync("run", ["tensorboard"])] == [(RECORDS, len(records))]
    assert tensorboard_series() == as_float32(series(records))


def test_a_spool_is_no_records_file_and_a_run_without_a_manifest_is_read_from_every_jsonl(tmp_path):
    records = jsonl_run(epochs=1)
    spool = Path("run/undelivered-mlflow-rank0.jsonl")
    spool.write_bytes(RECORDS.read_bytes())  # what a tracker could not take: also in the records
    RunRecord(Path("run"), 0).add_spool(spool.name, "mlflow", {}, "")
    assert run_files(Path("run")) == RunFiles([RECORDS], [spool])
    assert list(read_records("run")) == records
    elsewhere = tmp_path / "copied"
    elsewhere.mkdir()
    (elsewhere / "metrics.jsonl").write_bytes(RECORDS.read_bytes())  # records without their run's manifest
    assert list(read_records(elsewhere)) == records


@pytest.mark.slow
@pytest.mark.parametrize("target", ["mlflow", "tensorboard"])
def test_a_record_at_a_step_no_tracker_stores_is_reported_and_every_later_sync_still_works(target, capsys,
                                                                                            project_store):
    records = jsonl_run(epochs=1)
    lines = RECORDS.read_text().splitlines(keepends=True)
    bad = json.loads(lines[1]) | {"batch": 2**63}  # a damaged (or hand-edited) records file
    RECORDS.write_text("".join([*lines[:2], json.dumps(bad) + "\n", *lines[2:]]))
    for attempt in range(2):  # a first sync, and one after it: neither fails
        assert main(["run", "--to", target]) == 0
        out = capsys.readouterr().out
        refused = "  refused: step 9223372036854775808 is beyond the largest step a tracker stores (2**63 - 1)"
        assert (refused in out) == (attempt == 0), out
    expected = series(records)
    if target == "mlflow":
        assert mlflow_series(run_id()) == expected
    else:
        assert tensorboard_series() == as_float32(expected)


@pytest.mark.slow
@pytest.mark.parametrize("uri", ["sqlite:///x.db?password=s3cret-pw", "http://user:s3cret-pw@127.0.0.1:9"],
                         ids=["unparsable-override", "unreachable-server"])
def test_a_failed_sync_says_why_in_one_line_without_the_secrets_it_was_given(uri):
    jsonl_run(epochs=1, batches=1)
    out = subprocess.run([sys.executable, "-m", "composer_cfg.run.sync", "run", "--to", "mlflow",
                          f"logger.destinations.mlflow.tracking_uri={uri}", "logger.destinations.mlflow.timeout=1"],
                         capture_output=True, text=True, timeout=120)
    errors = [line for line in out.stderr.splitlines() if line.startswith("composer-cfg-sync: error: ")]
    assert out.returncode in (1, 2) and len(errors) == 1 and "***" in errors[0], out.stderr
    assert "s3cret-pw" not in out.stdout + out.stderr


@pytest.mark.slow
def test_every_records_file_of_a_run_is_read_and_a_copy_in_a_store_outside_the_run_never(project_store):
    # two Loggers of one run (training, then evaluation), each with its own records file; a
    # sweep's MLflow store shared at the root keeps copies of both, outside the run's directory
    uri = "logger.destinations.mlflow.tracking_uri=sqlite:///mlflow.db"
    for phase in ("train", "eval"):
        with build_logger(overrides=["run_name=run", "logger/destinations=[jsonl,mlflow]", uri,
                                     f"logger.destinations.jsonl.filename=run/{phase}-rank0.jsonl"]) as logger:
            logger.data_batch({f"{phase}/loss": 0.5})
    assert len(list(Path("mlartifacts").rglob("*.jsonl"))) == 2  # the copies
    assert [list(r["data"]) for r in read_records(".")] == [["eval/loss"], ["train/loss"]]
    assert [(s.records_file.name, s.sent) for s in sync(".", ["tensorboard"])] == [
        ("eval-rank0.jsonl", 1), ("train-rank0.jsonl", 1)]
    assert not list(Path("mlartifacts").rglob("run-rank*.json"))  # nothing written beside a copy


def test_a_spool_the_manifest_names_but_that_is_gone_does_not_stop_the_sync():
    records = jsonl_run(epochs=1)
    RunRecord(Path("run"), 0).add_spool("undelivered-mlflow-rank0.jsonl", "mlflow", {}, "")  # synced and deleted
    assert run_files(Path("run")) == RunFiles([RECORDS], [])
    assert [(s.destination, s.sent) for s in sync("run", ["tensorboard"])] == [("tensorboard", len(records))]


def test_what_an_unfinished_run_logged_after_its_last_checkpoint_is_held_back_until_it_finishes(capsys):
    def attempt(batches: range, values: float, dies: bool) -> None:
        logger = build_logger(overrides=["run_name=run", "logger/destinations=[jsonl]"], resume="auto")
        for batch in batches:
            logger.state.timestamp = Timestamp(batch=batch)
            if batch == 3:
                logger.run_event(Event.BATCH_CHECKPOINT)
            logger.data_batch({"loss": values + batch})
        logger.close(RunStatus.KILLED if dies else RunStatus.FINISHED)

    attempt(range(5), 0.0, dies=True)  # batches 3 and 4 come after its last checkpoint
    assert main(["run", "--to", "tensorboard"]) == 0
    assert "  held back: 2 record(s) after the run's last checkpoint" in capsys.readouterr().out
    assert tensorboard_series() == {"loss": [(0, 0.0), (1, 1.0), (2, 2.0)]}
    attempt(range(3, 6), 10.0, dies=False)  # continued: it logs 3 and 4 again, other values
    assert main(["run", "--to", "tensorboard"]) == 0
    assert "held back" not in capsys.readouterr().out
    assert sorted(tensorboard_series()["loss"]) == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0), (5, 15.0)]


def test_what_was_logged_before_the_last_checkpoint_at_its_own_point_is_sent_and_what_came_after_is_held_back(capsys):
    # Composer's order: the epoch's metrics are logged after the timestamp moved to the next epoch
    # (the point the checkpoint marks), then the checkpoint; then the next epoch's first batch.
    logger = build_logger(overrides=["run_name=run", "logger/destinations=[jsonl]"], resume="auto")
    logger.data_batch({"loss": 0.5})
    logger.state.timestamp = logger.state.timestamp.to_next_batch().to_next_epoch()
    logger.data_epoch({"val": 0.25})
    logger.run_event(Event.EPOCH_CHECKPOINT)
    logger.data_batch({"loss": 0.125})  # after the checkpoint, at the same point: the run may redo it
    logger.close(RunStatus.KILLED)
    assert main(["run", "--to", "tensorboard"]) == 0
    assert "  held back: 1 record(s) after the run's last checkpoint" in capsys.readouterr().out
    assert tensorboard_series() == {"loss": [(0, 0.5)], "val": [(1, 0.25)]}


@pytest.mark.slow
def test_a_sync_into_another_store_sends_everything_and_fresh_sends_it_again_into_a_new_run(project_store,
                                                                                             empty_store):
    records = jsonl_run(epochs=1)
    place_store(empty_store, Path("elsewhere"))
    other = "logger.destinations.mlflow.tracking_uri=sqlite:///elsewhere/mlflow.db"
    assert [s.sent for s in sync("run", ["mlflow"])] == [len(records)]
    assert [s.sent for s in sync("run", ["mlflow"], [other])] == [len(records)]  # another store: all of it
    assert [s.sent for s in sync("run", ["mlflow"], [other])] == [0]  # then only what is new, per store
    assert [s.sent for s in sync("run", ["mlflow"])] == [0]
    expected = series(records)
    assert mlflow_series(run_id()) == expected
    client = MlflowClient(tracking_uri=f"sqlite:///{Path('elsewhere/mlflow.db').resolve()}")
    assert {key: [(m.step, m.value) for m in client.get_metric_history(run_id("elsewhere/mlflow.db"), key)]
            for key in expected} == expected
    first = run_id()
    assert [s.sent for s in sync("run", ["mlflow"], fresh=True)] == [len(records)]  # everything, into a new run
    assert run_id() != first and mlflow_series(run_id()) == mlflow_series(first) == expected


def test_a_file_store_given_by_a_relative_path_resolves_beside_the_run_from_any_working_directory(monkeypatch):
    records = jsonl_run(epochs=1)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = "logger.destinations.mlflow.tracking_uri=mlruns"
    for directory, sent in (("a", len(records)), ("b", 0)):  # the same words, one store: where the run would make it
        Path(directory).mkdir()
        monkeypatch.chdir(directory)
        assert [s.sent for s in sync("../run", ["mlflow"], [store])] == [sent]
        monkeypatch.chdir("..")
    assert not Path("a/mlruns").exists() and not Path("b/mlruns").exists()
    client = MlflowClient(tracking_uri=Path("mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "loss")) == len(series(records)["loss"])


@pytest.mark.slow
def test_a_spool_completes_its_own_target_only_and_another_target_gets_the_records_file_whole(project_store,
                                                                                               empty_store):
    records = jsonl_run(epochs=1)
    place_store(empty_store, Path("elsewhere"))
    spool = Path("run/undelivered-mlflow-rank0.jsonl")
    spool.write_text("".join(RECORDS.read_text().splitlines(keepends=True)[-2:]))  # what the live store missed
    live = f"sqlite:///{Path('mlflow.db').resolve()}"
    RunRecord(Path("run"), 0).add_spool(spool.name, "mlflow", {}, live)
    other = "logger.destinations.mlflow.tracking_uri=sqlite:///elsewhere/mlflow.db"
    elsewhere = sync("run", ["mlflow"], [other])
    assert [(s.records_file.name, s.sent, s.skipped) for s in elsewhere] == [("metrics-rank0.jsonl", len(records), None)]
    own = sync("run", ["mlflow"])
    assert [(s.records_file.name, s.sent, bool(s.skipped)) for s in own] == [
        ("metrics-rank0.jsonl", 0, True), (spool.name, 2, False)]


def test_a_progress_entry_of_an_earlier_version_without_a_target_counts_for_one_target_only():
    records = jsonl_run(epochs=1)
    sync("run", ["tensorboard"])
    (entry,) = progress()["metrics-rank0.jsonl"]["tensorboard"].values()
    PROGRESS.unlink()
    manifest = Path("run/run-rank0.json")  # as a version before targets left it:
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {
        "sync": {"metrics-rank0.jsonl": {"tensorboard": {"through": entry["through"]}}}}))
    written = manifest.read_bytes()
    assert [s.sent for s in sync("run", ["tensorboard"])] == [0]  # taken as this target's, recorded as its own
    assert progress() == {"metrics-rank0.jsonl": {"tensorboard": {
        str(Path("run/tensorboard").absolute()): {"through": entry["through"]}}}}
    other = sync("run", ["tensorboard"], ["logger.destinations.tensorboard.log_dir=other"])
    assert [s.sent for s in other] == [len(records)] and tensorboard_series("other") == as_float32(series(records))
    assert manifest.read_bytes() == written


def test_a_ctrl_c_python_can_only_print_inside_a_finalizer_still_interrupts_the_sync(monkeypatch, capsys):
    # A SIGINT that arrives while the garbage collector runs an object's __del__ raises there, and
    # Python prints "Exception ignored in ..." and carries on: the sync would finish as if never asked to stop.
    import composer_cfg.run.sync as sync_module

    jsonl_run(epochs=1, batches=20)
    replayed = []

    class Finalized:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)

    def timestamp(**fields):
        replayed.append(fields["batch"])
        if len(replayed) == 3:
            Finalized()  # made and dropped at once: the Ctrl-C arrives inside its __del__
        return Timestamp(**fields)

    monkeypatch.setattr(sync_module, "Timestamp", timestamp)
    shown = []  # what Python could only print ("Exception ignored in ...", a traceback)
    monkeypatch.setattr(sys, "unraisablehook", shown.append)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # (a background shell may ignore it)
    try:
        assert main(["run", "--to", "tensorboard"]) == 130
    finally:
        signal.signal(signal.SIGINT, before)
    assert len(replayed) == 3 and shown == []  # nothing replayed after it; no traceback of the Ctrl-C
    assert capsys.readouterr().err.splitlines()[-1] == (
        "composer-cfg-sync: interrupted; what each tracker has is recorded, and the next sync continues it")
    assert sys.unraisablehook == shown.append  # put back


@pytest.mark.slow
def test_an_interrupted_sync_is_continued_by_the_next_in_the_same_tracker_run_each_point_once(project_store):
    records = jsonl_run(epochs=1, batches=20_000)
    # Sent every 50 ms: the store receives the records in parts.
    child = subprocess.Popen([sys.executable, "-m", "composer_cfg.run.sync", "run", "--to", "mlflow",
                              "logger.destinations.mlflow.flush_seconds=0.05"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=default_sigint)
    deadline = time.monotonic() + 60
    while not PROGRESS.exists():  # the tracker run exists: recorded
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    client = MlflowClient(tracking_uri=f"sqlite:///{Path('mlflow.db').resolve()}")
    while not client.get_run(run_id()).data.metrics:  # the sync has sent some of the records
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert (child.returncode, err.splitlines()[-1]) == (
        130, "composer-cfg-sync: interrupted; what each tracker has is recorded, and the next sync continues it"), err
    assert "Traceback" not in err
    (interrupted,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
    assert interrupted.info.status in ("KILLED", "FINISHED")  # as the replay or the close ended: not RUNNING
    assert 0 < len(client.get_metric_history(interrupted.info.run_id, "loss")) < 20_000
    (synced,) = sync("run", ["mlflow"])
    assert synced.sent > 0  # what the first could not confirm (if its channel gave some up: all again)
    assert run_id() == interrupted.info.run_id  # continued, not a second run
    assert client.get_run(run_id()).info.status == "FINISHED"
    assert mlflow_series(run_id()) == series(records)  # every point once


@pytest.mark.slow
def test_a_sync_never_writes_the_run_manifest_and_keeps_its_progress_in_a_file_of_its_own():
    records = jsonl_run()
    lines = RECORDS.read_text().splitlines(keepends=True)
    RECORDS.write_text("".join(lines[:5]))  # the run wrote five records so far
    spool = Path("run/undelivered-mlflow-rank0.jsonl")
    spool.write_text("".join(lines[:2]))  # what its live store missed
    RunRecord(Path("run"), 0).add_spool(spool.name, "mlflow", {}, f"sqlite:///{Path('mlflow.db').resolve()}")
    manifest = Path("run/run-rank0.json")
    written = manifest.read_bytes()

    def sent(**options: bool) -> list[tuple[str, str, int]]:
        results = sync("run", ["mlflow", "tensorboard"], **options)
        assert manifest.read_bytes() == written  # neither a records file's sync, a spool's nor a fresh one writes it
        return [(s.records_file.name, s.destination, s.sent) for s in results]

    assert sent() == [("metrics-rank0.jsonl", "mlflow", 0), ("metrics-rank0.jsonl", "tensorboard", 5),
                      (spool.name, "mlflow", 2)]
    tensorboard_dir, store = str(Path("run/tensorboard").resolve()), f"sqlite:///{Path('mlflow.db').resolve()}"
    assert {file: {name: list(targets) for name, targets in entries.items()} for file, entries in progress().items()} == {
        "metrics-rank0.jsonl": {"tensorboard": [tensorboard_dir]}, spool.name: {"mlflow": [store]}}
    assert mlflow_series(run_id(file=spool.name)) == series(records[:2])
    assert run_files(Path("run")) == RunFiles([RECORDS], [spool])  # the progress file is no records file
    assert sent() == [("metrics-rank0.jsonl", "mlflow", 0), ("metrics-rank0.jsonl", "tensorboard", 0),
                      (spool.name, "mlflow", 0)]
    RECORDS.write_text("".join(lines))  # the run went on
    assert sent() == [("metrics-rank0.jsonl", "mlflow", 0), ("metrics-rank0.jsonl", "tensorboard", len(records) - 5),
                      (spool.name, "mlflow", 0)]
    assert tensorboard_series() == as_float32(series(records))  # each point once
    assert list(read_records("run")) == records
    assert sent(fresh=True) == [("metrics-rank0.jsonl", "mlflow", len(records)),  # the records file whole, elsewhere
                                ("metrics-rank0.jsonl", "tensorboard", len(records))]
    assert mlflow_series(run_id()) == series(records)


@pytest.mark.slow
def test_sync_progress_an_earlier_version_kept_in_the_manifest_is_honoured_and_never_written():
    records = jsonl_run()
    lines = RECORDS.read_text().splitlines(keepends=True)
    RECORDS.write_text("".join(lines[:5]))
    sync("run", ["mlflow", "tensorboard"])
    first = run_id()
    earlier = {file: {f"{name} {target}": {**entry, "target": target} for name, targets in entries.items()
                      for target, entry in targets.items()} for file, entries in progress().items()}
    PROGRESS.unlink()
    manifest = Path("run/run-rank0.json")  # as the version before kept it: in the manifest, by "<destination> <target>"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"sync": earlier}))
    written = manifest.read_bytes()
    assert [s.sent for s in sync("run", ["mlflow", "tensorboard"])] == [0, 0]  # nothing it says was sent, again
    RECORDS.write_text("".join(lines))
    assert [s.sent for s in sync("run", ["mlflow", "tensorboard"])] == [len(records) - 5] * 2
    assert run_id() == first and mlflow_series(first) == series(records)  # into the same run, each point once
    assert tensorboard_series() == as_float32(series(records))
    assert manifest.read_bytes() == written
    assert [s.sent for s in sync("run", ["mlflow", "tensorboard"])] == [0, 0]


@pytest.mark.parametrize(
    ("damage", "why"),
    [("{\"metrics-rank0.jsonl\": ", "not JSON: Expecting value: line 1 column 25 (char 24)"),
     ('{"metrics-rank0.jsonl": {"tensorboard": {"t": {"through": {"epoch": 0}}}}}',
      "metrics-rank0.jsonl.tensorboard.t.through.batch: field required")],
    ids=["cut-short", "wrong-shape"],
)
def test_a_damaged_progress_file_is_one_line_naming_it_before_anything_is_sent(damage, why, capsys):
    jsonl_run(epochs=1, batches=1)
    PROGRESS.write_text(damage)
    assert main(["run", "--to", "tensorboard"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"composer-cfg-sync: error: {PROGRESS}: damaged sync progress ({why}); restore it, or move it aside and "
        f"sync with --fresh (everything is sent again, into new tracker runs)"]
    assert not Path("run/tensorboard").exists()
    PROGRESS.rename("run/sync-progress-rank0.json.damaged")
    assert main(["run", "--to", "tensorboard", "--fresh"]) == 0


def job_run(job: Path) -> list[dict]:
    """A run of `State("s1", directory=job)` (as in a Hydra job that did not change into its
    directory) logged to JSON Lines only; its records, in job/s1/."""
    from composer_cfg import JSONLinesLogger, Logger, State

    with Logger(State("s1", directory=job), {"jsonl": JSONLinesLogger()}) as logger:
        loop = TrainingLoop(logger)
        for _ in loop.epochs(2):
            for batch in loop.batches(3):
                logger.data_batch({"loss": 1.0 / (batch + 1)})
    return list(read_records(job / "s1" / "metrics-rank0.jsonl"))


def test_a_run_in_a_job_directory_synced_from_elsewhere_writes_beside_the_run_once(tmp_path, monkeypatch):
    job, elsewhere = tmp_path / "job", tmp_path / "elsewhere"
    records = job_run(job)
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert [(s.sent, s.location) for s in sync(job / "s1", ["tensorboard"])] == [
        (len(records), str(job / "s1" / "tensorboard"))]
    assert tensorboard_series(str(job / "s1" / "tensorboard")) == as_float32(series(records))
    assert [s.sent for s in sync(job / "s1", ["tensorboard"])] == [0]
    assert list(elsewhere.iterdir()) == []


def test_a_wandb_spool_of_a_run_in_a_job_directory_completes_its_own_target_synced_from_elsewhere(
        tmp_path, monkeypatch):
    from composer_cfg import State, compose_config
    from composer_cfg.config.build import instantiate_destinations

    job, elsewhere = tmp_path / "job", tmp_path / "elsewhere"
    records = job_run(job)
    run = job / "s1"
    spool = run / "undelivered-wandb-rank0.jsonl"
    spool.write_text("".join((run / "metrics-rank0.jsonl").read_text().splitlines(keepends=True)[-2:]))
    wandb = instantiate_destinations(compose_config(["logger/destinations=[wandb]"]).logger, into={}, only=["wandb"])
    live = wandb["wandb"].sync_target(State("s1", directory=job).facts())  # the target the live run spooled for
    RunRecord(run, 0).add_spool(spool.name, "wandb", {}, live)
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    synced = sync(run, ["wandb"])
    assert [(s.records_file.name, s.sent, bool(s.skipped)) for s in synced] == [
        ("metrics-rank0.jsonl", 0, True), (spool.name, 2, False)]
    (offline,) = offline_runs(job / "wandb")  # where the live run's W&B directory was
    assert sorted(offline["history"]) == sorted({record["batch"] for record in records[-2:]})
    assert list(elsewhere.iterdir()) == []


def test_a_records_file_without_a_manifest_resolves_beside_a_directory_named_like_its_run_else_here(tmp_path):
    records = job_run(tmp_path / "job")
    for copy in (tmp_path / "kept" / "s1" / "metrics.jsonl", tmp_path / "loose" / "metrics.jsonl"):
        copy.parent.mkdir(parents=True)
        copy.write_bytes((tmp_path / "job" / "s1" / "metrics-rank0.jsonl").read_bytes())
    assert [s.location for s in sync(tmp_path / "kept" / "s1" / "metrics.jsonl", ["tensorboard"])] == [
        str(tmp_path / "kept" / "s1" / "tensorboard")]  # the run's directory, as its name says
    assert [s.location for s in sync(tmp_path / "loose" / "metrics.jsonl", ["tensorboard"])] == [
        str(tmp_path / "s1" / "tensorboard")]  # nothing says where the run was: the working directory
    assert tensorboard_series(str(tmp_path / "s1" / "tensorboard")) == as_float32(series(records))
