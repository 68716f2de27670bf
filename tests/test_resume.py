"""Resuming runs: a killed demo, started again with resume=auto, ends with the history of a run
that was never interrupted, in every destination, read back from the real back ends."""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from composer_cfg import (
    ConfigError,
    Event,
    JSONLinesLogger,
    Logger,
    MLFlowLogger,
    State,
    TensorboardLogger,
    Timestamp,
    TrainingLoop,
    build_logger,
)
from composer_cfg.core.status import RunStatus
from composer_cfg.run.files import open_text
from composer_cfg.run.records import read_records
from composer_cfg.run.run_record import existing_run, manifest_path, read_manifest
from wandb_records import offline_runs
from conftest import needs, place_store

MlflowClient = needs("mlflow").MlflowClient
ea = needs("tensorboard.backend.event_processing.event_accumulator")

TESTS = Path(__file__).parent
EPOCHS, BATCHES = 4, 8
DEMO = ["run_name=r", "resume=auto", f"demo.epochs={EPOCHS}", f"demo.batches_per_epoch={BATCHES}",
        "logger.destinations.file.log_level=batch", "logger.allowed_modules=[killer]",
        "log_config=false"]  # the killed attempts' configs name the killer: tests/test_run_config.py covers resume
DESTINATIONS = "file,jsonl,tensorboard,mlflow,wandb"
EPOCH_EVENTS = ("epoch_end", "epoch_checkpoint")


def kill_points(signum: int, count: int) -> list[tuple[int, str, int]]:
    """`count` points to kill the demo at, chosen by a seeded RNG: (signal, event, batch). Epoch
    events happen at batches that end an epoch; batch events at any batch of the run."""
    rng = random.Random(f"issue13-{signum}")
    points = []
    for _ in range(count):
        event = rng.choice(["batch_start", "batch_end", *EPOCH_EVENTS])
        batch = BATCHES * rng.randint(1, EPOCHS) if event in EPOCH_EVENTS else rng.randrange(EPOCHS * BATCHES)
        points.append((signum, event, batch))
    return points


def demo(directory: Path, *extra: str, destinations: str = DESTINATIONS) -> subprocess.CompletedProcess:
    """The composer-cfg command in `directory`, with W&B's own files there too."""
    env = {**os.environ, "PYTHONPATH": str(TESTS), "HYDRA_FULL_ERROR": "0", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", **{name: str(directory / ".wandb-home")
                                      for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}}
    return subprocess.run([sys.executable, "-m", "composer_cfg", "-cd", str(TESTS / "resume_conf"), *DEMO,
                           f"logger/destinations=[{destinations}]", *extra], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=300)


def read_back(directory: Path, rank: int = 0) -> dict:
    """What every destination of the demo run under `directory` holds, as readers see it (the
    per-rank files of `rank`; the trackers are rank 0's)."""
    run = directory / "outputs" / "r" / "r"
    accumulator = ea.EventAccumulator(str(run / "tensorboard"), size_guidance={ea.SCALARS: 0})
    accumulator.Reload()
    client = MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")  # the project's store
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    wandb_runs = offline_runs(directory / "outputs" / "r" / "wandb")
    return {
        "text": text_series(run / f"logs-rank{rank}.txt"),
        "jsonl": [(r["level"], r["epoch"], r["batch"], r["data"])
                  for r in read_records(run / f"metrics-rank{rank}.jsonl")],
        "tensorboard": {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
                        for tag in accumulator.Tags()["scalars"]},
        "mlflow runs": [r.info.status for r in runs],
        "mlflow": {key: sorted((m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, key))
                   for key in runs[0].data.metrics},
        "mlflow params": runs[0].data.params,
        "wandb ids": {w["id"] for w in wandb_runs},
        "wandb exit code": wandb_runs[-1]["exit_code"] if wandb_runs else None,
        "wandb": wandb_history(wandb_runs),
    }


def text_series(path: Path) -> list[tuple[str, int, str]]:
    """The data lines of a text log as a reader takes them: at a ``[resumed]`` line, the lines
    above it at or after its point go (an epoch's line at the point is the epoch before it)."""
    lines: list[tuple[str, int, str]] = []
    for line in path.read_text().splitlines():
        resumed = re.match(r"\[resumed\]: at epoch (\d+) batch (\d+);", line)
        data = re.match(r"\[(FIT|EPOCH|BATCH)\]\[batch=(\d+)\]: (.*)", line)
        if resumed:
            point = int(resumed[2])
            lines = [kept for kept in lines if kept[1] < point or (kept[0] == "EPOCH" and kept[1] == point)]
        elif data:
            lines.append((data[1], int(data[2]), data[3]))
    return lines


def wandb_history(runs: list[dict]) -> dict[int, dict]:
    """The W&B history of every attempt, merged by step; a value logged twice is an error."""
    merged: dict[int, dict] = {}
    for run in runs:
        for step, items in run["history"].items():
            twice = set(merged.get(step, {})) & set(items)
            assert not twice, f"step {step}: {sorted(twice)} written by two attempts"
            merged.setdefault(step, {}).update(items)
    return merged


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, empty_store) -> dict:
    directory = tmp_path_factory.mktemp("uninterrupted")
    place_store(empty_store, directory)  # the project's store, made already (MLflow takes seconds to make one)
    out = demo(directory)
    assert out.returncode == 0, out.stderr
    return read_back(directory)


def run_record(directory: Path, rank: int = 0) -> dict:
    return read_manifest(manifest_path(directory / "outputs" / "r" / "r", rank))["run"]


@pytest.mark.slow
@pytest.mark.parametrize("signum, event, batch", kill_points(signal.SIGTERM, 3))
def test_a_killed_demo_resumed_with_auto_has_the_history_of_an_uninterrupted_run(
        tmp_path, project_store, uninterrupted, signum, event, batch):
    killer = [f"logger.destinations.killer.at_batch={batch}",
              f"logger.destinations.killer.event={event}", f"logger.destinations.killer.signum={signum}"]
    # W&B's service drops what it has not written to its file when the process is SIGKILLed (measured
    # with wandb 0.31: a run file of its header only); after SIGTERM the run is finished first.
    destinations = DESTINATIONS if signum == signal.SIGTERM else DESTINATIONS.replace(",wandb", "")
    killed = demo(tmp_path, *killer, destinations=destinations + ",killer")
    assert killed.returncode == -signum, killed.stderr
    assert run_record(tmp_path)["status"] == ("RUNNING" if signum == signal.SIGKILL else "KILLED")

    resumed = demo(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = read_back(tmp_path)
    for destination in ("text", "jsonl", "tensorboard", "mlflow", "mlflow params"):
        assert after[destination] == uninterrupted[destination], destination
    assert after["mlflow runs"] == ["FINISHED"]  # one tracker run, and how it ended
    run = run_record(tmp_path)
    assert [attempt["status"] for attempt in run["attempts"]] == [
        "CRASHED" if signum == signal.SIGKILL else "KILLED", "FINISHED"]
    assert run["status"] == "FINISHED"
    if signum == signal.SIGTERM:
        assert after["wandb"] == uninterrupted["wandb"]
        assert len(after["wandb ids"]) == 1 and after["wandb exit code"] == 0


#: The demo's events at one value of the batch counter, in the order they fire (an epoch's checkpoint
#: comes in its body, after its last batch; the next epoch's first batch starts at that value too).
ORDER = ("batch_end", "epoch_checkpoint", "epoch_end", "batch_start")
INSIDE = (None, "mark", "delivery")


def kill_sequence(count: int) -> list[tuple[int, str, str | None]]:
    """`count` points to SIGKILL the demo at, one attempt after another, chosen by a seeded RNG, in
    the order a run reaches them: (batch, event, inside), `inside` killing inside the checkpoint
    that follows an ``epoch_checkpoint`` event (`killer.Killer`). A point is kept only if the
    attempt after the previous kill reaches it (it starts at the last mark: a kill after a mark
    was written at an epoch's end leaves that epoch's events behind)."""
    def position(point: tuple[int, str, str | None]) -> tuple[int, int, int]:
        return point[0], ORDER.index(point[1]), INSIDE.index(point[2])

    rng, pool = random.Random("issue21-sequence"), set()
    while True:
        event = rng.choice(ORDER)
        batch = BATCHES * rng.randint(1, EPOCHS) if event in EPOCH_EVENTS else rng.randrange(1, EPOCHS * BATCHES)
        pool.add((batch, event, rng.choice(INSIDE) if event == "epoch_checkpoint" else None))
        points, resumes_at = [], (0, 0, 0)
        for point in sorted(pool, key=position):
            if position(point) > resumes_at:
                points.append(point)
                if point[1] == "epoch_end" or point[2] == "delivery":  # the epoch's mark was written
                    resumes_at = (point[0], ORDER.index("epoch_end"), len(INSIDE))
        if len(points) == count:
            return points


@pytest.mark.slow
@pytest.mark.timeout(600)  # 21 runs of the demo
def test_a_demo_killed_at_20_seeded_points_one_after_another_ends_with_every_back_end_exact(
        tmp_path, project_store, uninterrupted):
    points = kill_sequence(20)
    assert {inside for _, _, inside in points} == {None, "mark", "delivery"}  # inside checkpoints too
    for batch, event, inside in points:
        killer = [f"logger.destinations.killer.at_batch={batch}", f"logger.destinations.killer.event={event}",
                  f"logger.destinations.killer.inside={'null' if inside is None else inside}"]
        killed = demo(tmp_path, *killer, destinations=DESTINATIONS.replace(",wandb", "") + ",killer")
        assert killed.returncode == -signal.SIGKILL, (batch, event, inside, killed.stderr)
    resumed = demo(tmp_path, destinations=DESTINATIONS.replace(",wandb", ""))
    assert resumed.returncode == 0, resumed.stderr
    after = read_back(tmp_path)
    for destination in ("text", "jsonl", "tensorboard", "mlflow", "mlflow params"):
        assert after[destination] == uninterrupted[destination], destination
    assert after["mlflow runs"] == ["FINISHED"]
    run = run_record(tmp_path)
    assert [attempt["status"] for attempt in run["attempts"]] == ["CRASHED"] * len(points) + ["FINISHED"]
    assert not list((tmp_path / "outputs" / "r" / "r").glob("held-*"))  # every sealed interval delivered


LOCAL = "file,jsonl,tensorboard,mlflow"


def torchrun(directory: Path, *extra: str, destinations: str = LOCAL) -> subprocess.CompletedProcess:
    """The demo under torchrun, 2 ranks on CPU."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_", "SLURM_",
                                                                         "TORCHELASTIC", "COMPOSER_RUN_NAME"))},
           "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "TMPDIR": str(directory)}
    command = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node=2", "--standalone", "-m",
               "composer_cfg", "-cd", str(TESTS / "resume_conf"), *DEMO, f"logger/destinations=[{destinations}]", *extra]
    return subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_under_torchrun_a_rank_killed_and_the_job_run_again_resumes_every_rank(tmp_path_factory, empty_store):
    reference, directory = tmp_path_factory.mktemp("uninterrupted2"), tmp_path_factory.mktemp("killed2")
    for project in (reference, directory):
        place_store(empty_store, project)
    assert torchrun(reference).returncode == 0
    batch = random.Random("issue13-torchrun").randrange(BATCHES * 2, BATCHES * EPOCHS)
    killed = torchrun(directory, f"logger.destinations.killer.at_batch={batch}", "logger.destinations.killer.rank=1",
                      destinations=LOCAL + ",killer")
    assert killed.returncode != 0  # torchrun stops the other rank (SIGTERM) once one dies
    assert run_record(directory, 1)["attempts"][-1]["status"] == "RUNNING"  # SIGKILL: it could not say

    resumed = torchrun(directory)
    assert resumed.returncode == 0, resumed.stderr
    for rank in (0, 1):
        after, expected = read_back(directory, rank), read_back(reference, rank)
        for destination in ("text", "jsonl", "tensorboard", "mlflow", "mlflow params", "mlflow runs"):
            assert after[destination] == expected[destination], (rank, destination, mlflow_story(directory))
        run = run_record(directory, rank)
        assert run["status"] == run["attempts"][-1]["status"] == "FINISHED"
    # (rank 0 may have been stopped before it recorded its first attempt: how far it got is timing)
    assert [attempt["status"] for attempt in run_record(directory, 1)["attempts"]] == ["CRASHED", "FINISHED"]


def mlflow_story(directory: Path) -> dict:
    """What explains a run's MLflow runs: each one's status, tags and start, and rank 0's record."""
    client = MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    return {"runs": [(r.info.status, r.info.start_time, r.data.tags.get("composer_cfg.run")) for r in runs],
            "rank 0": run_record(directory, 0)}


def train(logger: Logger, batches: range, checkpoint_at: int | None = None) -> None:
    state = logger.state
    for batch in batches:
        state.timestamp = Timestamp(batch=batch)
        if batch == checkpoint_at:
            logger.run_event(Event.BATCH_CHECKPOINT)
        logger.data_batch({"loss": 1.0 / (batch + 1)})


@pytest.mark.slow
def test_build_logger_with_resume_auto_continues_the_files_and_the_tracker_run_of_a_killed_attempt(project_store):
    overrides = ["run_name=r", "logger/destinations=[jsonl,mlflow]"]
    first = build_logger(overrides=overrides, resume="auto")
    train(first, range(5), checkpoint_at=3)  # batches 3 and 4 come after the last checkpoint
    first.close(RunStatus.KILLED)
    run_id = first.destinations["mlflow"].run_id

    before = Path("r/metrics-rank0.jsonl").stat().st_size
    second = build_logger(State("r", timestamp=Timestamp(batch=3)), overrides=overrides, resume="auto")
    train(second, range(3, 6))
    second.close()
    # the report counts this attempt's bytes, not the file's
    assert second.report()["jsonl"]["bytes_written"] == Path("r/metrics-rank0.jsonl").stat().st_size - before > 0
    assert second.destinations["mlflow"].run_id == run_id
    assert [r["batch"] for r in read_records("r/metrics-rank0.jsonl")] == [0, 1, 2, 3, 4, 5]
    client = MlflowClient(tracking_uri=f"sqlite:///{Path('mlflow.db').absolute()}")
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == [0, 1, 2, 3, 4, 5]
    assert client.get_run(run_id).info.status == "FINISHED"
    run = existing_run("r", 0)
    assert [(a["status"], a["resumed_at"] and a["resumed_at"]["batch"]) for a in run["attempts"]] == [
        ("KILLED", None), ("FINISHED", 3)]
    assert run["destinations"]["mlflow"]["identity"] == {"run_id": run_id}
    assert run["destinations"]["jsonl"]["identity"] == {"filename": str(Path("r/metrics-rank0.jsonl").absolute())}


@pytest.mark.slow
def test_what_a_tracker_is_held_is_delivered_at_a_finished_close_and_dropped_otherwise(tmp_path, empty_store):
    for status, expected in ((RunStatus.FINISHED, [0, 1, 2]), (RunStatus.FAILED, [0])):
        store = place_store(empty_store, tmp_path / status.value)
        uri = f"sqlite:///{store}"
        logger = Logger(State(f"held-{status.value}"), {"mlflow": MLFlowLogger(tracking_uri=uri)}, resume="auto")
        logger.run_event(Event.INIT)
        train(logger, range(3), checkpoint_at=1)
        logger.close(status)
        client = MlflowClient(tracking_uri=uri)
        history = client.get_metric_history(logger.destinations["mlflow"].run_id, "loss")
        assert sorted(m.step for m in history) == expected, status


def test_resume_must_without_a_run_is_one_line_on_the_command_line_and_creates_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=gone", "resume=must"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    manifest = tmp_path / "outputs" / "gone" / "gone" / "run-rank0.json"
    assert out.stderr.splitlines() == [
        f"composer-cfg: error: resume: 'must', but there is no run 'gone' to continue (no run record in '{manifest}'); use "
        f"resume=auto to start it when it is missing (from command line 'resume=must')"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_resume_on_a_run_that_was_not_started_with_resume_is_refused_before_anything_changes(tmp_path):
    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=plain", "hydra.run.dir=outputs/plain",
                               "demo.epochs=1", "demo.batches_per_epoch=2", "logger/destinations=[file,jsonl]", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert command().returncode == 0
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    out = command("resume=auto")
    directory = tmp_path / "outputs" / "plain" / "plain"
    assert out.returncode == 2 and out.stderr.splitlines() == [
        f"composer-cfg: error: logger.destinations.{name}.filename: '{directory / file}' already exists, but the run "
        f"'plain' that wrote it was not started with resume (it has no run record in "
        f"'{directory / 'run-rank0.json'}'), so it can not be continued: choose another run_name, or set "
        f"overwrite=true to replace it (from logger/destinations/{name}.yaml in pkg://composer_cfg.conf)"
        for name, file in (("file", "logs-rank0.txt"), ("jsonl", "metrics-rank0.jsonl"))]
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_resume_must_in_a_script_without_a_run_is_refused_before_anything_opens():
    with pytest.raises(ConfigError, match="'must', but there is no run 'gone' to continue"):
        Logger(State("gone"), JSONLinesLogger(), resume="must").run_event(Event.INIT)
    assert list(Path().iterdir()) == []


def test_appending_first_cuts_a_line_a_killed_process_left_half_written(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("whole\nhalf wri")
    with open_text(path, overwrite=False, append=True) as file:
        file.write("next\n")
    assert path.read_text() == "whole\nnext\n"


def test_read_records_drops_what_a_resume_record_replaces(tmp_path):
    path = tmp_path / "m.jsonl"
    with Logger(State("m"), JSONLinesLogger(str(path))) as logger:
        train(logger, range(4))
    continued = JSONLinesLogger(str(path))
    continued.continue_run({"filename": str(path)})
    with Logger(State("m", timestamp=Timestamp(batch=2)), continued) as logger:
        train(logger, range(2, 3))
    assert [(r["batch"], r["data"]["loss"]) for r in read_records(path)] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert len(path.read_text().splitlines()) == 6  # the replaced records stay in the file, after a marker



@pytest.mark.slow
def test_a_requeued_slurm_job_finds_its_run_by_the_job_id(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "COMPOSER_RUN_NAME", "RUN_NAME"))},
           "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "HYDRA_FULL_ERROR": "0"}
    for _ in range(2):  # the job, then the same job requeued
        out = subprocess.run([sys.executable, "-m", "composer_cfg", "resume=auto", "demo.epochs=1",
                              "logger/destinations=[file,jsonl]"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    run = read_manifest(manifest_path(tmp_path / "outputs" / "slurm-4242" / "slurm-4242", 0))["run"]
    assert [(a["status"], a["resumed_at"] and a["resumed_at"]["epoch"]) for a in run["attempts"]] == [
        ("FINISHED", None), ("FINISHED", 1)]
    records = list(read_records(tmp_path / "outputs" / "slurm-4242" / "slurm-4242" / "metrics-rank0.jsonl"))
    assert [r["batch"] for r in records if r["level"] == "BATCH"] == list(range(16))


DAMAGED_DEMO = ["composer_cfg", "run_name=r", "hydra.run.dir=out", "resume=auto", "demo.epochs=1",
                "demo.batches_per_epoch=2", "logger/destinations=[file,jsonl]"]


@pytest.fixture(scope="module")
def finished_resumable_run(tmp_path_factory) -> Path:
    """The directory of a finished run started with resume=auto (its manifest intact): each
    damaged-manifest case damages a copy of it."""
    directory = tmp_path_factory.mktemp("resumable")
    out = subprocess.run([sys.executable, "-m", *DAMAGED_DEMO], cwd=directory, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return directory


@pytest.mark.slow
@pytest.mark.parametrize(("damage", "why"), [
    (lambda text: text[:len(text) // 2], "not JSON: "),
    (lambda text: "[]", "the whole file: input should be a valid dictionary"),
    (lambda text: '{"run": {"attempts": []}}', "run.run_name: field required"),
    (lambda text: text.replace('"status": "FINISHED"', '"status": 3', 1), "run.attempts.0.status: input should be a valid string"),
], ids=["cut-short", "not-an-object", "edited-run", "edited-attempt"])
def test_a_damaged_manifest_is_one_line_naming_the_file_from_the_command_sync_and_plot(
        tmp_path, finished_resumable_run, damage, why):
    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    shutil.copytree(finished_resumable_run / "out", tmp_path / "out")
    manifest = tmp_path / "out" / "r" / "run-rank0.json"
    manifest.write_text(damage(manifest.read_text()))
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    out = command(*DAMAGED_DEMO)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"composer-cfg: error: resume: {manifest}: a damaged run manifest ({why}")
    assert out.stderr.rstrip().endswith("restore it, or move the run's directory aside and start the run again "
                                        "(from command line 'resume=auto')")
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before
    relative = Path("out/r/run-rank0.json")
    for prog, args in (("composer-cfg-sync", ["composer_cfg.run.sync", "out", "--to", "tensorboard"]),
                       ("composer-cfg-plot", ["composer_cfg.run.plot", "out"])):
        out = command(*args)
        assert out.returncode == 2 and out.stderr.splitlines()[-1].startswith(
            f"{prog}: error: {relative}: a damaged run manifest ({why}"), out.stderr
        assert "Traceback" not in out.stderr


OWN_SCRIPT = """
import os, signal, sys
from functools import partial
from pathlib import Path
from composer_cfg import Event, TrainingLoop, build_logger

kill_at = int(sys.argv[1])  # the batch this attempt dies at (SIGKILL), as a preempted job does
logger = build_logger(overrides=["run_name=own", "logger/destinations=[jsonl,tensorboard]"], resume="auto")
with logger:
    start = logger.resumed_from  # None on the first attempt: then the run starts at zero
    print("resumed from", None if start is None else (start.epoch, start.batch), flush=True)
    weights = float(Path("model.txt").read_text()) if start is not None else 0.0  # the user's own checkpoint
    loop = TrainingLoop(logger)
    for epoch in loop.epochs(3):
        for batch in loop.batches(10):
            if batch == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            weights += 1.0
            logger.data_batch({"loss": 1.0 / (batch + 1), "weights": weights})
        Path("model.txt").write_text(str(weights))
        logger.run_event(Event.EPOCH_CHECKPOINT)
print("batches run:", int(weights), flush=True)
"""


@pytest.mark.slow
def test_a_script_written_as_the_readme_shows_killed_mid_epoch_finishes_the_run_once_when_run_again(tmp_path):
    # The second epoch's fourth batch kills the first attempt; the second attempt starts at the
    # second epoch (the last checkpoint), runs the 20 batches left of 3 epochs of 10, no more.
    (tmp_path / "train.py").write_text(OWN_SCRIPT)

    def attempt(kill_at: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "train.py", str(kill_at)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    first = attempt(kill_at=13)
    assert first.returncode == -signal.SIGKILL and first.stdout.splitlines() == ["resumed from None"], first.stderr
    second = attempt(kill_at=-1)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == ["resumed from (1, 10)", "batches run: 30"]
    steps = [(step, 1.0 / (step + 1)) for step in range(30)]
    records = [r for r in read_records(tmp_path / "own") if "loss" in r["data"]]
    assert [(r["batch"], r["data"]["loss"]) for r in records] == steps
    assert [r["data"]["weights"] for r in records] == [float(step + 1) for step in range(30)]
    events = ea.EventAccumulator(str(tmp_path / "own" / "tensorboard"), size_guidance={ea.SCALARS: 0})
    events.Reload()
    assert sorted((e.step, e.value) for e in events.Scalars("weights")) == [(s, s + 1.0) for s in range(30)]
    run = read_manifest(tmp_path / "own" / "run-rank0.json")["run"]
    assert [(a["status"], a["resumed_at"]) for a in run["attempts"]] == [
        ("CRASHED", None),
        ("FINISHED", {"epoch": 1, "batch": 10, "batch_in_epoch": 0, "sample": 0, "sample_in_epoch": 0, "token": 0,
                      "token_in_epoch": 0})]


@pytest.mark.slow
def test_a_requeue_with_a_changed_parameter_is_said_and_never_fatal_to_mlflow(caplog, project_store):
    def attempt(lr: float, resume: str, dies: bool) -> Logger:
        logger = build_logger(overrides=["run_name=p", "logger/destinations=[mlflow]"], resume=resume)
        logger.log_hyperparameters({"lr": lr, "seed": 0})
        loop = TrainingLoop(logger)
        for _ in loop.epochs(2):
            for batch in loop.batches(3):
                logger.data_batch({"loss": 1.0 / (batch + 1)})
            if dies:  # before its first checkpoint
                logger.close(RunStatus.KILLED)
                return logger
            logger.run_event(Event.EPOCH_CHECKPOINT)
        logger.close()
        return logger

    run_id = attempt(0.1, "auto", dies=True).destinations["mlflow"].run_id
    assert attempt(0.2, "must", dies=False).destinations["mlflow"].run_id == run_id  # requeued with a change
    client = MlflowClient(tracking_uri=f"sqlite:///{Path('mlflow.db').absolute()}")
    run = client.get_run(run_id)
    assert (run.info.status, run.data.params) == ("FINISHED", {"lr": "0.1", "seed": "0"})
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [
        (step, 1.0 / (step + 1)) for step in range(6)]
    assert ("MLFlowLogger: parameter 'lr' was already logged as '0.1'; MLflow parameters can not change, so '0.2' "
            "is not logged") in caplog.messages


def test_a_continued_run_without_a_checkpoint_keeps_the_timestamp_it_was_given():
    first = build_logger(overrides=["run_name=g", "logger/destinations=[jsonl]"], resume="auto")
    train(first, range(3))  # no checkpoint event
    first.close(RunStatus.KILLED)
    second = build_logger(State("g", timestamp=Timestamp(batch=3)), overrides=["run_name=g", "logger/destinations=[jsonl]"],
                          resume="auto")
    assert (second.resumed_from, second.state.timestamp) == (Timestamp(batch=3), Timestamp(batch=3))
    second.close()


def test_a_batch_checkpoint_in_a_training_loop_body_continues_after_that_batch(caplog):
    def attempt(dies_at: int | None) -> list[int]:
        logger = build_logger(overrides=["run_name=b", "logger/destinations=[jsonl]"], resume="auto")
        loop, trained = TrainingLoop(logger), []
        for _ in loop.epochs(2):
            for batch in loop.batches(4):
                if batch == dies_at:
                    logger.close(RunStatus.KILLED)
                    return trained
                trained.append(batch)
                logger.data_batch({"loss": float(batch)})
                if batch % 2 == 1:
                    logger.run_event(Event.BATCH_CHECKPOINT)  # after the batch's step, as a user saves it
        logger.close()
        return trained

    assert attempt(dies_at=6) == [0, 1, 2, 3, 4, 5]
    with caplog.at_level("INFO", logger="composer_cfg"):
        assert attempt(dies_at=None) == [6, 7]  # batches 0-5 are done and checkpointed: none again
    assert "run 'b' continues from its last checkpoint: epoch 1, batch 6 (load your model's checkpoint of that point)" \
        in caplog.messages
    assert [r["batch"] for r in read_records("b")] == list(range(8))


@pytest.mark.slow
def test_the_demo_continues_from_a_checkpoint_named_with_any_time_field(tmp_path):
    checkpoint = 'demo.checkpoint="{run_name}/ck/ep{epoch}-ba{batch}-in{batch_in_epoch}-rank{rank}.npz"'

    def demo_run(epochs: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=t", "resume=auto", "hydra.run.dir=out",
                               f"demo.epochs={epochs}", "demo.batches_per_epoch=4", "logger/destinations=[jsonl]",
                               checkpoint], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert demo_run(1).returncode == 0
    second = demo_run(2)
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in (tmp_path / "out/t/ck").iterdir()) == ["ep1-ba4-in0-rank0.npz", "ep2-ba8-in0-rank0.npz"]
    assert [r["data"]["epoch"] for r in read_records(tmp_path / "out") if r["level"] == "EPOCH"] == [0, 1]


def test_the_records_file_keeps_exactly_what_the_trackers_keep_whatever_the_order_around_a_checkpoint(tmp_path):
    # Composer's order: the timestamp moves to the next epoch, epoch_end fires, a callback logs the
    # epoch's metrics (at the point the checkpoint marks), then epoch_checkpoint. A batch checkpoint
    # fired inside a body, with data logged after it in the same body. The second attempt is killed
    # after a checkpoint; the third finishes. The records file and the tracker (held until each
    # checkpoint) must agree: what was logged before a checkpoint stays, what came after it is redone.
    def attempt(dies_at: int | None) -> None:
        logger = Logger(State("o"), {"jsonl": JSONLinesLogger(), "tensorboard": TensorboardLogger()}, resume="auto")
        logger.run_event(Event.INIT)
        state = logger.state
        while state.timestamp.epoch < 2:
            logger.run_event(Event.EPOCH_START)
            while state.timestamp.batch_in_epoch < 3:
                batch = state.timestamp.batch
                if batch == dies_at:
                    logger.close(RunStatus.KILLED)
                    return
                logger.data_batch({"loss": float(batch)})
                if batch == 1:
                    state.after_body = partial(Timestamp.to_next_batch)  # as TrainingLoop's body does
                    logger.run_event(Event.BATCH_CHECKPOINT)
                    state.after_body = None
                    logger.data_batch({"after_checkpoint": float(batch)})
                state.timestamp = state.timestamp.to_next_batch()
                logger.run_event(Event.BATCH_END)
            state.timestamp = state.timestamp.to_next_epoch()
            logger.run_event(Event.EPOCH_END)
            logger.data_epoch({"val": float(state.timestamp.epoch)})  # at the point the checkpoint marks
            logger.run_event(Event.EPOCH_CHECKPOINT)
        logger.close()

    attempt(dies_at=2)  # after the batch checkpoint at batch 1
    attempt(dies_at=4)  # after the epoch checkpoint at (1, 3)
    attempt(dies_at=None)
    records = [(r["batch"], key, value) for r in read_records(tmp_path / "o") for key, value in r["data"].items()]
    events = ea.EventAccumulator(str(tmp_path / "o" / "tensorboard"), size_guidance={ea.SCALARS: 0})
    events.Reload()
    tracker = sorted((e.step, tag, e.value) for tag in events.Tags()["scalars"] for e in events.Scalars(tag))
    assert sorted(records) == tracker
    assert sorted(records) == sorted([(b, "loss", float(b)) for b in range(6)] + [(3, "val", 1.0), (6, "val", 2.0)])


def test_a_finished_run_run_again_with_auto_continues_from_its_end_and_duplicates_nothing(tmp_path):
    # Checkpoints after the first two epochs only; the run finishes (every destination has all of
    # it), then the same script runs again: nothing is trained or logged twice.
    def attempt() -> tuple[Timestamp | None, int]:
        logger = Logger(State("f"), {"jsonl": JSONLinesLogger(), "tensorboard": TensorboardLogger()}, resume="auto")
        logger.run_event(Event.INIT)
        resumed_from, loop, trained = logger.resumed_from, TrainingLoop(logger), 0
        for epoch in loop.epochs(3):
            for batch in loop.batches(2):
                logger.data_batch({"loss": float(batch)})
                trained += 1
            if epoch < 2:
                logger.run_event(Event.EPOCH_CHECKPOINT)
        logger.close()
        return resumed_from, trained

    assert attempt() == (None, 6)
    resumed_from, trained = attempt()
    assert ((resumed_from.epoch, resumed_from.batch), trained) == ((3, 6), 0)
    events = ea.EventAccumulator(str(tmp_path / "f" / "tensorboard"), size_guidance={ea.SCALARS: 0})
    events.Reload()
    assert sorted((e.step, e.value) for e in events.Scalars("loss")) == [(b, float(b)) for b in range(6)]
    assert [(r["batch"], r["data"]["loss"]) for r in read_records(tmp_path / "f")] == [(b, float(b)) for b in range(6)]


@pytest.mark.slow
def test_an_attempt_stopped_before_it_recorded_its_mlflow_run_is_continued_in_that_run(tmp_path, project_store):
    # SIGTERM once MLflow made the run and before the manifest has its id (another destination
    # still opening): the next attempt finds the run by its tag and continues it.
    stopped = demo(tmp_path, "logger.destinations.killer.event=init", "logger.destinations.killer.at_batch=0",
                   "logger.destinations.killer.signum=15", destinations="file,mlflow,killer")
    assert stopped.returncode != 0, stopped.stderr
    assert "identity" not in run_record(tmp_path)["destinations"].get("mlflow", {})
    assert demo(tmp_path, destinations="file,mlflow").returncode == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss/train")] == list(range(EPOCHS * BATCHES))


def test_each_records_file_of_a_run_keeps_its_own_part_when_two_loggers_name_their_destination_alike(tmp_path):
    # Training and evaluation Loggers of one run, each with a destination named "jsonl", each its
    # own file: the resumed training file is cut at its own size, not at the other file's.
    def attempt(batches: range, dies: bool) -> None:
        train = Logger(State("two"), {"jsonl": JSONLinesLogger()}, resume="auto")
        train.run_event(Event.INIT)
        evaluation = Logger(State("two"), {"jsonl": JSONLinesLogger("{run_name}/z-eval-rank{rank}.jsonl", overwrite=True)})
        evaluation.data_epoch({"eval": 1.0})
        evaluation.close()
        for batch in batches:
            train.state.timestamp = Timestamp(batch=batch)
            train.data_batch({"loss": float(batch)})
            if batch == 2:
                train.state.timestamp = Timestamp(batch=3)
                train.run_event(Event.BATCH_CHECKPOINT)
        train.close(RunStatus.KILLED if dies else RunStatus.FINISHED)

    attempt(range(5), dies=True)  # batches 3 and 4 come after the checkpoint
    attempt(range(3, 6), dies=False)
    assert [r["data"]["loss"] for r in read_records(tmp_path / "two" / "metrics-rank0.jsonl")] == [
        float(batch) for batch in range(6)]


FROM_SCRATCH_SCRIPT = """
import os, signal, sys
from pathlib import Path
from composer_cfg import Event, TrainingLoop, build_logger

kill_at = int(sys.argv[1])
logger = build_logger(overrides=["run_name=fit", "logger/destinations=[jsonl]"], resume="auto")
with logger:
    start = logger.resumed_from
    if start is None or int(start.batch) == 0:  # as docs/resume.md says: no checkpoint to continue from
        logger.data_fit({"lr": 0.1})
        weights = 0.0
    else:
        weights = float(Path("model.txt").read_text())
    loop = TrainingLoop(logger)
    for epoch in loop.epochs(2):
        for batch in loop.batches(10):
            if batch == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            weights += 1.0
            logger.data_batch({"weights": weights})
        Path("model.txt").write_text(str(weights))
        logger.run_event(Event.EPOCH_CHECKPOINT)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [3, 13], ids=["before the first checkpoint", "after it"])
def test_run_level_data_logged_as_the_docs_say_is_read_back_once_whenever_the_first_attempt_died(tmp_path, kill_at):
    (tmp_path / "train.py").write_text(FROM_SCRATCH_SCRIPT)
    for argument in (kill_at, -1):
        subprocess.run([sys.executable, "train.py", str(argument)], cwd=tmp_path, capture_output=True, timeout=120)
    records = list(read_records(tmp_path / "fit"))
    assert [r["data"] for r in records if r["level"] == "FIT"] == [{"lr": 0.1}]
    assert [r["data"]["weights"] for r in records if r["level"] == "BATCH"] == [float(n) for n in range(1, 21)]
