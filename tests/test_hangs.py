"""Back ends that hang: every wait is bounded, `close()` says what was not delivered, SIGTERM still
ends the process. Against real back ends: a loopback listener that accepts connections and never
answers, a real `mlflow server` stopped with SIGSTOP, an S3 endpoint that never answers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from composer_cfg import JSONLinesLogger, Logger, MLFlowLogger, ObjectStoreLogger, State, build_logger
from composer_cfg.run.records import read_records
from composer_cfg.run.sync import sync
from composer_cfg.runtime import exit_hooks
from servers import Lines, MlflowServer, SilentListener, child_env, mlflow, mlflow_server, silent_listener  # noqa: F401
from wandb_records import offline_run
from conftest import needs

MlflowClient = needs("mlflow").MlflowClient

MARGIN = 10.0  # seconds: generous, only the bound matters


@pytest.fixture
def hung_client_env(monkeypatch):
    """MLflow's own HTTP client waits long and never retries: the bound under test is the logger's,
    and a request left hanging in the background ends as soon as the back end drops it."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def open_files_under(directory: Path) -> list[str]:
    """The files under `directory` this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory.resolve())):
            found.append(target)
    return found


def next_batch(logger: Logger, data: dict) -> None:
    """Log `data` for the batch in progress, end the batch (a flush point for flush_interval=1)."""
    logger.data_batch(data)
    logger.state.timestamp = logger.state.timestamp.to_next_batch()
    logger.run_event("batch_end")


# -- starting: build_logger against a tracking server that never answers ---------------------------


TIMEOUT = 5  # seconds: long enough that a second wait for the hung start would show


@pytest.mark.slow
def test_build_logger_against_a_silent_tracking_server_times_out_and_leaves_nothing_open(
        silent_listener, hung_client_env, tmp_path):
    handler_before = signal.getsignal(signal.SIGTERM)
    # Streams as they are now (normally unpatched; a W&B run earlier in this process leaves its own
    # patch of `write` on them, which must survive too).
    writes_before = vars(sys.stdout).get("write"), vars(sys.stderr).get("write")
    overrides = ["run_name=hang", "+logger/destinations=mlflow",
                 f"logger.destinations.mlflow.tracking_uri={silent_listener.url}",
                 f"logger.destinations.mlflow.timeout={TIMEOUT}"]
    start = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        build_logger(overrides=overrides)
    elapsed = time.monotonic() - start

    assert str(raised.value) == (f"destination 'mlflow' at {silent_listener.url} did not start within {TIMEOUT} s "
                                 f"(its back end did not answer)")
    assert TIMEOUT <= elapsed < TIMEOUT * 1.6  # one wait: closing after the failed start does not wait again
    assert silent_listener.accepted >= 1  # the request really reached the hung server
    # Nothing stays open or installed: the FileLogger (which opened its file and captured the
    # streams at INIT, before MLflow's start hung) was closed and its capture undone.
    assert (vars(sys.stdout).get("write"), vars(sys.stderr).get("write")) == writes_before
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert exit_hooks.guarded() == []  # the atexit hook went with the last guarded Logger
    assert (tmp_path / "hang" / "logs-rank0.txt").exists()
    assert open_files_under(tmp_path) == []


# -- closing: a real server that stops answering mid-run -------------------------------------------


@pytest.mark.slow
def test_close_is_bounded_when_the_server_stops_answering_mid_run_and_spools_what_was_not_delivered(
        mlflow: MlflowServer, hung_client_env, caplog):
    experiment = f"stopped-{uuid.uuid4().hex}"
    destination = MLFlowLogger(tracking_uri=mlflow.url, experiment_name=experiment, flush_interval=1, timeout=1)
    logger = Logger(State("stopped"), {"mlflow": destination})
    logger.run_event("init")
    client = MlflowClient(tracking_uri=mlflow.url)
    for step in range(3):
        next_batch(logger, {"loss": 1.0 / (step + 1), "acc": step / 10})
    # Steps 0-2 are delivered and acknowledged before the server stops. The server may commit a
    # batch's parameters before its metrics, so wait until both the marker (logged after the
    # steps, sent in the same or a later request) and the steps themselves are in the store.
    logger.data_fit({"marker": "before the stop"})

    def delivered() -> bool:
        return ("marker" in client.get_run(destination.run_id).data.params
                and len(client.get_metric_history(destination.run_id, "loss")) == 3)

    deadline = time.monotonic() + 20
    while not delivered() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert delivered()

    with mlflow.stopped():
        for step in range(3, 6):
            start = time.monotonic()
            next_batch(logger, {"loss": 1.0 / (step + 1), "acc": step / 10})
            assert time.monotonic() - start < MARGIN  # logging only enqueues: training never waits
        start = time.monotonic()
        logger.close()  # left behind, not raised: training never fails because a tracker stopped answering
        elapsed = time.monotonic() - start

    assert elapsed < 1 + MARGIN  # close waits at most `timeout`
    # What the store did not take waits in the spool, and the warnings say so and where.
    spool = Path("stopped/undelivered-mlflow-rank0.jsonl").absolute()
    where = f"'mlflow' at {mlflow.url} (run {destination.run_id})"
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"destination {where} did not finish closing within 1 s; 3 record(s) it had not taken were given up (spool)",
        f"3 record(s) were not delivered to {where} and wait in {spool}: "
        f"`composer-cfg-sync <run dir> --to <destination>` delivers them"]
    assert [(r["batch"], r["data"]) for r in read_records(spool)] == [
        (step, {"loss": 1.0 / (step + 1), "acc": step / 10}) for step in range(3, 6)]
    report = destination.report()
    assert (report["delivered"], report["spooled"], report["dropped"], report["queued"]) == (4, 3, 0, 0)  # + the marker
    # The server works again once continued (the requests left in the background may land now);
    # a sync of the spool completes the same run's history.
    assert mlflow.healthy()
    assert client.get_run(destination.run_id).info.run_name == "stopped"
    (synced,) = sync("stopped", ["mlflow"], [f"logger.destinations.mlflow.tracking_uri={mlflow.url}"])
    assert (synced.records_file.absolute(), synced.sent) == (spool, 3)
    assert [(m.step, m.value) for m in client.get_metric_history(destination.run_id, "loss")] == [
        (step, 1.0 / (step + 1)) for step in range(6)]


@pytest.mark.slow
def test_a_server_that_stops_answering_before_checkpoints_never_fails_or_stalls_a_resumable_run(
        mlflow: MlflowServer, hung_client_env, caplog):
    destination = MLFlowLogger(tracking_uri=mlflow.url, experiment_name=f"checkpoints-{uuid.uuid4().hex}",
                               flush_interval=1, timeout=2)
    logger = Logger(State("checkpoints"), {"jsonl": JSONLinesLogger(flush_interval=1), "mlflow": destination},
                    resume="auto")  # a resumable run: the tracker's data waits for each checkpoint

    def batches(steps: range) -> None:
        for step in steps:
            next_batch(logger, {"loss": float(step)})
            if (step + 1) % 4 == 0:
                logger.run_event("batch_checkpoint")

    logger.run_event("init")
    batches(range(4))
    assert destination.wait(30) == 0
    with mlflow.stopped():
        start = time.monotonic()
        batches(range(4, 12))  # two checkpoints with the server stopped: no error
        elapsed = time.monotonic() - start
        logger.close()
    assert elapsed < 2 * 1.5  # one timeout at the first checkpoint, none at the second
    assert sum("did not finish writing within 2 s at a checkpoint" in m for m in caplog.messages) == 1
    assert [r["data"]["loss"] for r in read_records("checkpoints/metrics-rank0.jsonl")] == [float(s) for s in range(12)]
    spooled = list(read_records(destination.report()["spool"]))
    assert sorted(r["batch"] for r in spooled if "artifact" not in r) == list(range(4, 12))
    log = Path("checkpoints/metrics-rank0.jsonl").absolute()  # published at each checkpoint and at close
    publications = [(r["artifact"]["name"], r["artifact"]["file"]) for r in spooled if "artifact" in r]
    # those of the second checkpoint and of close; the first one's may have been stored already (this
    # server's artifact store is a local directory the client writes itself, stopped server or not)
    assert set(publications) == {("checkpoints/metrics-rank0.jsonl", str(log))} and len(publications) in (2, 3)
    run = json.loads(Path("checkpoints/run-rank0.json").read_text())["run"]
    assert (run["status"], run["checkpoint"]["batch"]) == ("FINISHED", 12)  # both checkpoints recorded
    assert mlflow.healthy()
    skipped, synced = sync("checkpoints", ["mlflow"], [f"logger.destinations.mlflow.tracking_uri={mlflow.url}"])
    assert skipped.skipped and (synced.sent, synced.refused) == (8 + len(publications), [])
    client = MlflowClient(tracking_uri=mlflow.url)
    assert [(m.step, m.value) for m in client.get_metric_history(destination.run_id, "loss")] == [
        (step, float(step)) for step in range(12)]
    stored = Path(client.download_artifacts(destination.run_id, "checkpoints/metrics-rank0.jsonl", tempfile.mkdtemp()))
    assert stored.read_bytes() == log.read_bytes()  # the whole log, as the run left it


@pytest.mark.slow
@pytest.mark.parametrize("when_full", ["drop", "block"])
def test_a_stopped_server_delays_logging_no_more_than_the_queue_policy_and_a_sync_completes_the_run(
        mlflow: MlflowServer, hung_client_env, when_full):
    destination = MLFlowLogger(tracking_uri=mlflow.url, experiment_name=f"policy-{uuid.uuid4().hex}",
                               flush_interval=1, timeout=1, queue_size=2, when_full=when_full)
    logger = Logger(State("policy"), {"mlflow": destination})
    logger.run_event("init")
    next_batch(logger, {"loss": 0.0})
    assert destination.wait(30) == 0  # delivered before the outage
    with mlflow.stopped():
        for step in range(1, 11):
            next_batch(logger, {"loss": float(step)})
        report = destination.report()
        # The first delivery in the outage hangs; the queue fills; what does not fit is spooled at
        # once (drop), or after one wait of `timeout` for room, and never another (block).
        assert (report["waits"], report["queued"]) == ((0, 2) if when_full == "drop" else (1, 2))
        assert report["spooled"] == 8 and report["dropped"] == 0
        logger.close()  # bounded; what waited is spooled
    report = destination.report()
    assert (report["delivered"], report["spooled"], report["dropped"], report["queued"]) == (1, 10, 0, 0)
    spool = Path(report["spool"])
    assert sorted(r["batch"] for r in read_records(spool)) == list(range(1, 11))
    assert mlflow.healthy()
    Path("policy/metrics-rank0.jsonl").write_text(spool.read_text())  # as if the run had a jsonl destination too
    skipped, synced = sync("policy", ["mlflow"], [f"logger.destinations.mlflow.tracking_uri={mlflow.url}"])
    assert (skipped.sent, skipped.skipped) == (0, "the run logged to mlflow itself; its spool completes it")
    assert synced.sent == 10
    client = MlflowClient(tracking_uri=mlflow.url)
    # (the request that hung may land too: MLflow keeps one copy of a point sent twice)
    assert [(m.step, m.value) for m in client.get_metric_history(destination.run_id, "loss")] == [
        (step, float(step)) for step in range(11)]


WANDB_HUNG_CHILD = """
import logging, os, sys
logging.basicConfig(format="%(message)s")
from composer_cfg import Logger, State, WandBLogger
destination = WandBLogger(mode="online", timeout=2, queue_size=5, when_full="drop")
logger = Logger(State("wb_outage"), {"wandb": destination})
for step in range(20):
    logger.data_batch({"loss": float(step)})
    logger.state.timestamp = logger.state.timestamp.to_next_batch()
print("logged", destination.report(), flush=True)
logger.close()
print("closed", destination.report(), flush=True)
sys.stderr.flush()
# wandb's own exit hook waits for its service process, which keeps retrying the server (W&B's
# behaviour, after everything composer_cfg controls has ended: see docs/reference/destinations.md, `wandb`).
os._exit(0)
"""


@pytest.mark.slow
def test_a_w_and_b_server_that_never_answers_costs_logging_nothing_and_its_records_wait_in_the_spool(
        tmp_path, silent_listener):
    env = {**child_env(), "WANDB_MODE": "online", "WANDB_BASE_URL": silent_listener.url, "WANDB_API_KEY": "a" * 40}
    # Files, not pipes: wandb's service process inherits them and outlives the child a while.
    with open(tmp_path / "out", "w+") as out, open(tmp_path / "err", "w+") as err:
        status = subprocess.run([sys.executable, "-c", WANDB_HUNG_CHILD], cwd=tmp_path, env=env, stdout=out,
                                stderr=err, timeout=60 + MARGIN).returncode
    done = subprocess.CompletedProcess([], status, (tmp_path / "out").read_text(), (tmp_path / "err").read_text())
    assert done.returncode == 0, done.stderr
    spool = tmp_path / "wb_outage/undelivered-wandb-rank0.jsonl"
    logged, closed = done.stdout.splitlines()
    # W&B's start hangs on its thread; the queue fills at 5 and the rest goes straight to the spool.
    assert logged == ("logged {'queued': 5, 'peak_queued': 5, 'delivered': 0, 'spooled': 15, 'dropped': 0, "
                      f"'failed': 0, 'in_doubt': 0, 'waits': 0, 'blocked_seconds': 0.0, 'spool': '{spool}'}}")
    # A run that never started: close does not wait for it again; nothing is raised, everything is spooled.
    assert closed.startswith("closed {'queued': 0, 'peak_queued': 5, 'delivered': 0, 'spooled': 20, 'dropped': 0")
    assert (f"20 record(s) were not delivered to 'wandb' and wait in {spool}: `composer-cfg-sync <run dir> --to "
            f"<destination>` delivers them") in done.stderr.splitlines()
    # Every call is in the spool, and a sync delivers it (here into W&B offline: no run started to add to).
    (synced,) = sync(tmp_path / "wb_outage", ["wandb"])
    assert synced.sent == 20
    history = offline_run(Path("wandb"))["history"]
    assert {step: values["loss"] for step, values in history.items()} == {step: float(step) for step in range(20)}


# -- SIGTERM ends a process whose back end hangs ---------------------------------------------------

SIGTERM_CHILD = """
import sys, time
from composer_cfg import build_logger
from composer_cfg.runtime import exit_hooks
exit_hooks.SIGTERM_GRACE = 2
logger = build_logger(overrides=["run_name=hung", "logger/destinations=[mlflow]",
                                 "logger.destinations.mlflow.tracking_uri=" + sys.argv[1],
                                 "logger.destinations.mlflow.timeout=60",
                                 "logger.destinations.mlflow.flush_interval=1"])
print("started", flush=True)
step = 0
while True:
    logger.data_batch({"step": float(step)})
    logger.state.timestamp = logger.state.timestamp.to_next_batch()
    logger.run_event("batch_end")
    print(step, flush=True)
    step += 1
    time.sleep(0.01)
"""


def wait_until(condition, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("hang", ["silent-server-at-start", "server-stopped-mid-run"])
def test_sigterm_ends_the_process_even_when_the_back_end_hangs(request, tmp_path, hang, hung_client_env):
    if hang == "silent-server-at-start":
        back_end = request.getfixturevalue("silent_listener")
    else:
        back_end = request.getfixturevalue("mlflow")
    with subprocess.Popen([sys.executable, "-c", SIGTERM_CHILD, back_end.url], cwd=tmp_path, env=child_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        try:
            lines = Lines(child.stdout)
            if isinstance(back_end, SilentListener):
                wait_until(lambda: back_end.accepted >= 1)  # build_logger waits for the run to start
                start = time.monotonic()
                child.send_signal(signal.SIGTERM)
                status = child.wait(15)
            else:
                assert lines.next() == "started"
                lines.skip(3)
                with back_end.stopped():
                    lines.skip(3)  # a delivery is now stuck on the stopped server
                    start = time.monotonic()
                    child.send_signal(signal.SIGTERM)
                    status = child.wait(15)
            elapsed = time.monotonic() - start
        finally:
            if child.poll() is None:
                child.kill()
            stderr = child.stderr.read()
    assert status == -signal.SIGTERM, stderr
    assert elapsed < 15


# -- an S3 endpoint that never answers -------------------------------------------------------------


@pytest.mark.slow
def test_object_store_close_is_bounded_against_a_silent_s3_endpoint_and_names_what_was_not_uploaded(
        silent_listener, monkeypatch, tmp_path):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_ENDPOINT_URL_S3": silent_listener.url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    store = ObjectStoreLogger("s3://bucket/runs", max_retries=0, close_timeout=2,
                              storage_options={"skip_instance_cache": True,
                                               "client_kwargs": {"endpoint_url": silent_listener.url}})
    staging_root = tmp_path / "tmp"  # where the logger stages its copies (tempfile's directory)
    staging_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging_root))
    Path("a.txt").write_text("checkpoint a")
    Path("b.txt").write_text("checkpoint b")
    logger = Logger(State("silent"), {"store": store})
    logger.run_event("init")
    logger.file_artifact("epoch", "{run_name}/a.txt", "a.txt")
    logger.file_artifact("epoch", "{run_name}/b.txt", "b.txt")
    start = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        logger.close()
    elapsed = time.monotonic() - start

    assert elapsed < 2 + MARGIN
    assert str(raised.value) == ("2 upload(s) to s3://bucket/runs did not finish within 2 s: "
                                 "bucket/runs/silent/a.txt, bucket/runs/silent/b.txt")
    assert silent_listener.accepted >= 1
    assert list(staging_root.iterdir()) == []  # the staged copies are gone even so


# -- a run started by a data call: never waits, one run ---------------------------------------------


def test_a_run_started_by_a_data_call_never_blocks_and_is_created_once(mlflow: MlflowServer, hung_client_env):
    experiment = f"lazy-{uuid.uuid4().hex}"
    destination = MLFlowLogger(tracking_uri=mlflow.url, experiment_name=experiment, flush_interval=1, timeout=2)
    logger = Logger(State("lazy"), {"mlflow": destination})  # no INIT: the first call starts the run
    with mlflow.stopped():
        for step in range(4):
            start = time.monotonic()
            next_batch(logger, {"loss": float(step)})
            assert time.monotonic() - start < 1.0  # enqueues: it never waits for the stopped server
    logger.close()  # the server answers again: the queued creation and metrics go through, in order
    client = MlflowClient(tracking_uri=mlflow.url)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "lazy"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [
        (step, float(step)) for step in range(4)]


# -- SIGTERM: local files first, the run's end recorded, what was lost said -------------------------

LOCAL_FIRST_CHILD = """
import sys
from composer_cfg import JSONLinesLogger, Logger, MLFlowLogger, ObjectStoreLogger, State, close_at_exit
from composer_cfg.runtime import exit_hooks
exit_hooks.SIGTERM_GRACE = 8
# Listed first, the hung tracker (and a store that never answers) must not keep the local file from
# its last flush, nor the run from being ended: waits are cut to the grace period.
destinations = {"mlflow": MLFlowLogger(tracking_uri=sys.argv[1], experiment_name=sys.argv[2], timeout=60,
                                       flush_interval=10_000)}
if sys.argv[3] != "-":
    destinations["store"] = ObjectStoreLogger("s3://bucket/runs", max_retries=0, close_timeout=600,
                                              storage_options={"client_kwargs": {"endpoint_url": sys.argv[3]}})
destinations["jsonl"] = JSONLinesLogger(flush_interval=10_000)
logger = close_at_exit(Logger(State("local_first"), destinations))
logger.run_event("init")
if "store" in destinations:
    open("ckpt.bin", "wb").write(b"x" * 1000)
    logger.file_artifact("epoch", "ckpt.bin", "ckpt.bin")
for step in range(500):
    logger.data_batch({"step": float(step)})
print("logged", flush=True)
import time
while True:
    time.sleep(0.1)
"""


def run_until_sigterm(tmp_path, *args: str, stop=None) -> tuple[int, float, str]:
    with subprocess.Popen([sys.executable, "-c", LOCAL_FIRST_CHILD, *args], cwd=tmp_path, env=child_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        try:
            assert Lines(child.stdout).next() == "logged"
            with stop() if stop else contextlib.nullcontext():
                start = time.monotonic()
                child.send_signal(signal.SIGTERM)
                status = child.wait(30)
                elapsed = time.monotonic() - start
        finally:
            if child.poll() is None:
                child.kill()
        return status, elapsed, child.stderr.read()


@pytest.mark.slow
def test_on_sigterm_a_hung_tracker_never_costs_a_local_file_its_last_flush(tmp_path, mlflow, hung_client_env):
    status, elapsed, stderr = run_until_sigterm(tmp_path, mlflow.url, f"first-{uuid.uuid4().hex}", "-",
                                                stop=mlflow.stopped)
    assert status == -signal.SIGTERM and elapsed < 8 + MARGIN
    records = (tmp_path / "local_first/metrics-rank0.jsonl").read_text().splitlines()
    assert len(records) == 500  # closed before anything waited on the network
    where = f"'mlflow' at {mlflow.url} \\(run [0-9a-f]+\\)"
    assert re.search(f"destination {where} did not finish closing within [0-9.]+ s", stderr)
    spool = tmp_path / "local_first/undelivered-mlflow-rank0.jsonl"  # said, not lost
    # the 500 calls, and the JSON Lines file its close published (kept as the file's name and path)
    assert re.search(f"501 record\\(s\\) were not delivered to {where} and wait in {re.escape(str(spool))}", stderr)
    spooled = list(read_records(spool))
    assert [r["data"]["step"] for r in spooled if "artifact" not in r] == [float(step) for step in range(500)]
    assert [r["artifact"]["file"] for r in spooled if "artifact" in r] == [
        str(tmp_path / "local_first/metrics-rank0.jsonl")]


@pytest.mark.slow
def test_on_sigterm_a_slow_upload_still_leaves_time_to_end_the_tracked_run(tmp_path, mlflow, silent_listener,
                                                                           monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    experiment = f"slow-{uuid.uuid4().hex}"
    status, elapsed, stderr = run_until_sigterm(tmp_path, mlflow.url, experiment, silent_listener.url)
    assert status == -signal.SIGTERM and elapsed < 8 + MARGIN
    assert re.search(r"closing destination 'store' after SIGTERM: close failed: TimeoutError: 2 upload\(s\) to "
                     r"s3://bucket/runs did not finish within [0-9.]+ s: bucket/runs/ckpt.bin, "
                     r"bucket/runs/local_first/metrics-rank0.jsonl", stderr)  # the log's final publication too
    client = MlflowClient(tracking_uri=mlflow.url)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "KILLED" and len(client.get_metric_history(run.info.run_id, "step")) == 500


@pytest.mark.slow
def test_a_download_from_an_endpoint_that_never_answers_is_bounded(silent_listener, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    store = ObjectStoreLogger("s3://bucket/runs", close_timeout=2,
                              storage_options={"skip_instance_cache": True,
                                               "client_kwargs": {"endpoint_url": silent_listener.url}})
    Logger(State("down"), store).run_event("init")
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"downloading 'ckpt.pt' from s3://bucket/runs did not finish within 2 s"):
        store.get_file_artifact("ckpt.pt", "ckpt.pt")
    assert time.monotonic() - start < 2 + MARGIN and not Path("ckpt.pt").exists()
