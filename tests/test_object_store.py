"""ObjectStoreLogger against a local directory, memory, and a real S3 protocol server (moto)."""

import errno
import gc
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from composer_cfg import (
    ConfigError,
    FileLogger,
    JSONLinesLogger,
    Logger,
    LogLevel,
    ObjectStoreLogger,
    State,
    TensorboardLogger,
    build_logger,
)
from scripted_store import ScriptedFileSystem, hold_upload_of, scripted, stored  # noqa: F401 - scripted: a fixture


def publish(destination, names_and_texts, state=None, overwrite=False):
    logger = Logger(state or State("run"), destination)
    logger.run_event("init")
    for name, text in names_and_texts:
        Path("source.txt").write_text(text)
        logger.file_artifact(LogLevel.EPOCH, name, "source.txt", overwrite=overwrite)
        Path("source.txt").unlink()  # the caller may delete it at once: a copy was staged
    return logger


def test_local_directory_upload_and_download(tmp_path):
    destination = ObjectStoreLogger(f"file://{tmp_path / 'store'}", object_name="{run_name}/r{rank}/{artifact_name}")
    publish(destination, [("ckpt/ep0.txt", "zero"), ("ckpt/ep1.txt", "one")]).close()
    assert (tmp_path / "store/run/r0/ckpt/ep1.txt").read_text() == "one"
    assert sorted(p.name for p in (tmp_path / "store/run/r0/ckpt").iterdir()) == ["ep0.txt", "ep1.txt"]
    destination.get_file_artifact("ckpt/ep0.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "zero"
    with pytest.raises(FileExistsError, match="back.txt exists: pass overwrite=True"):
        destination.get_file_artifact("ckpt/ep0.txt", tmp_path / "back.txt")


def test_overwrite_false_never_replaces_and_the_error_surfaces(tmp_path):
    destination = ObjectStoreLogger(str(tmp_path / "store"))
    logger = publish(destination, [("a.txt", "first")])
    destination.wait()
    publish_again = [("a.txt", "second")]
    Path("source.txt").write_text(publish_again[0][1])
    logger.file_artifact(LogLevel.EPOCH, "a.txt", "source.txt", overwrite=False)
    destination.wait()
    with pytest.raises(RuntimeError, match="artifact upload failed: FileExistsError: .*a.txt already exists"):
        logger.run_event("batch_end")
    logger.run_event("batch_end")  # reported once
    logger.file_artifact(LogLevel.EPOCH, "a.txt", "source.txt", overwrite=True)
    logger.close()
    assert (tmp_path / "store/a.txt").read_text() == "second"
    assert sorted(os.listdir(tmp_path / "store")) == ["a.txt"]  # no temporary files left behind


def test_failure_is_raised_at_close_after_pending_uploads_finish(tmp_path):
    destination = ObjectStoreLogger(str(tmp_path / "store"))
    (tmp_path / "store").mkdir()
    (tmp_path / "store/taken.txt").write_text("old")
    logger = publish(destination, [("taken.txt", "new"), ("free.txt", "fine")])
    with pytest.raises(RuntimeError, match="taken.txt already exists"):
        logger.close()
    assert (tmp_path / "store/taken.txt").read_text() == "old" and (tmp_path / "store/free.txt").read_text() == "fine"


def test_filter_by_import_path_from_a_module_the_config_allows(tmp_path, monkeypatch):
    (tmp_path / "my_filters.py").write_text("def only_checkpoints(state, level, name):\n    return 'ckpt' in name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    filtered = ["run_name=f", "logger/destinations=[object_store]", "logger.destinations.object_store.url=store",
                "logger.destinations.object_store.should_log_artifact=my_filters.only_checkpoints"]
    with pytest.raises(ConfigError, match="'my_filters.only_checkpoints' is outside the modules this config may import"):
        build_logger(overrides=filtered)
    with build_logger(overrides=[*filtered, "logger.allowed_modules=[my_filters]"]) as logger:
        for name in ("logs.txt", "ckpt.txt"):
            Path(name).write_text(name)
            logger.file_artifact(LogLevel.EPOCH, name, name)
    assert os.listdir(tmp_path / "store") == ["ckpt.txt"]


class FlakyFileSystem(MemoryFileSystem):
    """memory://, whose first `failures` uploads fail like a dropped connection would."""

    protocol = "flaky"
    failures = 0
    error: type[Exception] = ConnectionResetError

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.replace("flaky://", "memory://", 1))

    def put_file(self, lpath, rpath, *args, **kwargs):
        if FlakyFileSystem.failures > 0:
            FlakyFileSystem.failures -= 1
            raise FlakyFileSystem.error("connection reset by peer")
        return super().put_file(lpath, rpath, *args, **kwargs)


@pytest.fixture
def flaky():
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    FlakyFileSystem.store.clear()
    yield FlakyFileSystem
    FlakyFileSystem.failures = 0
    FlakyFileSystem.error = ConnectionResetError


def test_transient_errors_are_retried_with_backoff(flaky, caplog):
    flaky.failures = 3
    destination = ObjectStoreLogger("flaky://bucket", max_retries=4, retry_backoff=0.01)
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        publish(destination, [("ckpt.txt", "data")]).close()
    assert fsspec.filesystem("flaky").cat("/bucket/ckpt.txt") == b"data"
    assert [m.split(" in ")[0] for m in caplog.messages] == [
        f"upload of /bucket/ckpt.txt failed (ConnectionResetError: connection reset by peer); retry {n} of 4"
        for n in (1, 2, 3)
    ]


def test_retries_give_up_and_permanent_errors_are_not_retried(flaky, caplog):
    flaky.failures = 10
    destination = ObjectStoreLogger("flaky://bucket", max_retries=2, retry_backoff=0.01)
    logger = publish(destination, [("ckpt.txt", "data")])
    with pytest.raises(RuntimeError, match="artifact upload failed: ConnectionResetError"):
        logger.close()
    flaky.failures, flaky.error = 1, PermissionError
    caplog.clear()
    logger = publish(ObjectStoreLogger("flaky://bucket", retry_backoff=0.01), [("other.txt", "x")])
    with pytest.raises(RuntimeError, match="PermissionError"):
        logger.close()
    assert caplog.messages == []


def test_s3_upload_overwrite_refusal_and_download(s3, tmp_path):
    _, fs, options = s3
    destination = ObjectStoreLogger("s3://bucket/runs", storage_options=options)
    logger = publish(destination, [("run/ckpt.txt", "v1"), ("run/empty.txt", "")])
    destination.wait()
    publish_again = ObjectStoreLogger("s3://bucket/runs", storage_options=options)
    second = publish(publish_again, [("run/ckpt.txt", "v2"), ("run/empty.txt", "not empty")])
    with pytest.raises(RuntimeError, match="already exists and overwrite is False"):
        second.close()
    logger.close()
    fs.invalidate_cache()
    assert fs.cat("bucket/runs/run/ckpt.txt") == b"v1" and fs.cat("bucket/runs/run/empty.txt") == b""
    destination.get_file_artifact("run/ckpt.txt", tmp_path / "down.txt")
    assert (tmp_path / "down.txt").read_text() == "v1"


WORKER = """
import sys
from pathlib import Path
from composer_cfg import Logger, LogLevel, ObjectStoreLogger, State
url = sys.argv[1]
destination = ObjectStoreLogger(url, object_name="{run_name}/{artifact_name}", storage_options={"skip_instance_cache": True})
with Logger(State("shared"), destination) as logger:
    logger.run_event("init")
    rank = logger.state.rank
    for i in range(10):
        Path(f"f{rank}-{i}.bin").write_bytes(bytes([rank]) * (1000 * (i + 1)))
        logger.file_artifact(LogLevel.BATCH, f"rank{rank}/part{i}.bin", f"f{rank}-{i}.bin")
    Path("race.txt").write_text(f"rank {rank}")
    logger.file_artifact(LogLevel.FIT, "race.txt", "race.txt", overwrite=False)
"""


@pytest.mark.slow
def test_four_ranks_upload_concurrently_and_exactly_one_wins_a_race(s3, tmp_path):
    url, fs, _ = s3
    for rank in range(4):
        (tmp_path / f"rank{rank}").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, "s3://bucket/runs"], cwd=tmp_path / f"rank{rank}",
                              env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "4"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(4)]
    results = [proc.communicate(timeout=120) for proc in procs]
    codes = [proc.returncode for proc in procs]
    assert sorted(codes) == [0, 1, 1, 1], results
    assert all("race.txt already exists and overwrite is False" in err for (_, err), code in zip(results, codes) if code)
    fs.invalidate_cache()
    for rank in range(4):
        for i in range(10):
            assert fs.cat(f"bucket/runs/shared/rank{rank}/part{i}.bin") == bytes([rank]) * (1000 * (i + 1))
    winner = codes.index(0)
    assert fs.cat("bucket/runs/shared/race.txt") == f"rank {winner}".encode()


KILLED = """
import sys, time
from pathlib import Path
from composer_cfg import Logger, LogLevel, ObjectStoreLogger, State
destination = ObjectStoreLogger(sys.argv[1], storage_options=eval(sys.argv[2]))
logger = Logger(State("run"), destination)
Path("big.bin").write_bytes(b"x" * (64 * 2**20))
logger.file_artifact(LogLevel.FIT, "big.bin", "big.bin")
print("queued", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_killed_process_leaves_no_partial_object(s3, tmp_path, where):
    _, fs, options = s3
    url, options_text = (str(tmp_path / "store"), "{}") if where == "local" else ("s3://bucket/k", repr(options))
    for delay in (0.0, 0.05, 0.2):
        with subprocess.Popen([sys.executable, "-c", KILLED, url, options_text], cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout.readline() == "queued\n"
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        if where == "local":
            final = tmp_path / "store" / "big.bin"
            assert not final.exists() or final.stat().st_size == 64 * 2**20
            final.unlink(missing_ok=True)
        else:
            fs.invalidate_cache()
            assert not fs.exists("bucket/k/big.bin") or fs.size("bucket/k/big.bin") == 64 * 2**20
            fs.rm("bucket/k/big.bin", recursive=False) if fs.exists("bucket/k/big.bin") else None


ENDS_WITHOUT_CLOSE = """
import sys
from pathlib import Path
from composer_cfg import build_logger
logger = build_logger(overrides=["run_name=exits", "logger/destinations=[file,object_store]",
                                 "logger.destinations.file.log_level=batch",
                                 "logger.destinations.object_store.url=s3://bucket/runs"])
for step in range(3):
    logger.data_batch({"step": step})
Path("ckpt.bin").write_bytes(b"x" * 5_000_000)
logger.file_artifact("epoch", "{run_name}/ckpt.bin", "ckpt.bin")
if sys.argv[1] == "raise":
    raise RuntimeError("diverged")
"""


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["return", "raise"])
def test_the_last_uploads_of_a_run_that_ends_without_close_reach_s3(s3, tmp_path, ending):
    """The exit hook runs before concurrent.futures stops its executors, which s3fs needs."""
    _, fs, _ = s3
    out = subprocess.run([sys.executable, "-c", ENDS_WITHOUT_CLOSE, ending], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == (0 if ending == "return" else 1), out.stderr
    fs.invalidate_cache()
    assert fs.cat("bucket/runs/exits/logs-rank0.txt") == (tmp_path / "exits/logs-rank0.txt").read_bytes()
    assert fs.size("bucket/runs/exits/ckpt.bin") == 5_000_000


def test_selected_from_the_config_with_the_demo_checkpoints(tmp_path):
    overrides = ["run_name=cfg", "logger/destinations=[object_store]",
                 f"logger.destinations.object_store.url={tmp_path / 'bucket'}"]
    with build_logger(overrides=overrides) as logger:
        from composer_cfg.cli.demo import run_demo

        run_demo(logger, epochs=2, batches_per_epoch=2)
    assert sorted(p.name for p in (tmp_path / "bucket/cfg/checkpoints").iterdir()) == ["ep1-rank0.npz", "ep2-rank0.npz"]


# ---------------------------------------------------------------------------------------------
# The object-store items of issue 10 (and the race of issue 12), against real file systems.
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def staging_root(tmp_path, monkeypatch):
    """The directory staging directories are made in (the temporary directory, redirected)."""
    root = tmp_path.parent / f"{tmp_path.name}-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def offer(logger, name, text, overwrite):
    """Publish `text` as artifact `name` through `logger`, from a file deleted right after."""
    source = Path(f"source-{threading.get_ident()}.txt")
    source.write_text(text)
    try:
        logger.file_artifact(LogLevel.FIT, name, source, overwrite=overwrite)
    finally:
        source.unlink()


def opened(destination, state=None):
    logger = Logger(state or State("run"), {"object_store": destination})
    logger.run_event("init")
    return logger


# 1. Newest version wins (Composer's test_race_with_overwrite), 20 times each way.

@pytest.mark.parametrize("repeat", range(20))
@pytest.mark.parametrize("first_upload", ["slow", "slow then a transient error"])
def test_the_newest_version_wins_while_an_older_one_uploads(scripted, staging_root, first_upload, repeat):
    before_put, started, release = hold_upload_of(b"v0")
    scripted.before_put = before_put
    if first_upload != "slow":
        scripted.errors = [ConnectionResetError("connection reset by peer")]
    destination = ObjectStoreLogger("scripted://bucket", retry_backoff=0)
    logger = opened(destination)
    offer(logger, "ckpt.txt", "v0", overwrite=True)
    assert started.wait(10)
    for version in range(1, 10):
        offer(logger, "ckpt.txt", f"v{version}", overwrite=True)
    # v0 is uploading, v9 waits; v1..v8 were dropped, their staged copies deleted, at once
    assert len(list(staging_root.glob("composer_cfg-staging-*/*"))) == 2
    release.set()
    logger.close()
    assert stored("ckpt.txt") == b"v9"
    attempts_of_v0 = [b"v0"] if first_upload == "slow" else [b"v0", b"v0"]
    assert scripted.uploads["/bucket/ckpt.txt"] == [*attempts_of_v0, b"v9"]
    assert list(staging_root.iterdir()) == []  # no staged copy (nor the staging directory) left


def test_a_file_logger_snapshot_retried_after_a_transient_error_never_lands_after_a_newer_one(
    scripted, staging_root
):
    """Issue 12: the first (empty) snapshot of a republished log fails once; newer ones follow."""
    before_put, started, release = hold_upload_of(b"")
    scripted.before_put = before_put
    scripted.errors = [ConnectionResetError("connection reset by peer")]
    store = ObjectStoreLogger("scripted://bucket", retry_backoff=0)
    file = FileLogger(capture_stdout=False, capture_stderr=False, log_level="batch", flush_interval=1)
    with Logger(State("run"), {"object_store": store, "file": file}) as logger:
        logger.run_event("init")
        logger.run_event("epoch_start")  # a flush: publishes the empty log
        assert started.wait(10)
        for batch in range(5):
            logger.data_batch({"loss": 1 / (batch + 1)})
            logger.run_event("batch_end")  # a flush each: republishes the log
        release.set()
    final = Path(file.filename).read_bytes()
    assert final.count(b"\n") == 5 and stored("run/logs-rank0.txt") == final
    uploaded = scripted.uploads["/bucket/run/logs-rank0.txt"]
    assert uploaded[:2] == [b"", b""] and uploaded[-1] == final  # the retry, then newer versions
    assert all(newer.startswith(older) for older, newer in zip(uploaded, uploaded[1:]))  # never older after newer
    assert list(staging_root.iterdir()) == []


# 2. Per name, at most one upload in flight; different names upload at the same time.

def test_one_upload_in_flight_per_name_and_different_names_in_parallel(scripted):
    names = [f"n{i}.txt" for i in range(4)]
    lined_up = threading.Barrier(4, timeout=10)  # broken (an upload fails) unless all 4 run at once
    first_seen: set = set()
    seen_lock = threading.Lock()

    def before_put(name, data):
        with seen_lock:
            first = name not in first_seen
            first_seen.add(name)
        if first and name != "/bucket/shared.txt":
            lined_up.wait()
        time.sleep(0.002)

    scripted.before_put = before_put
    destination = ObjectStoreLogger("scripted://bucket", num_concurrent_uploads=4, retry_backoff=0)
    logger = opened(destination)
    for name in names:
        offer(logger, name, f"{name} v0", overwrite=True)
    assert destination.wait(10) == []
    assert scripted.most_in_flight == 4

    def publish_versions(name):
        for version in range(1, 31):
            offer(logger, name, f"{name} v{version}", overwrite=True)
            offer(logger, "shared.txt", f"{name} v{version}", overwrite=True)

    threads = [threading.Thread(target=publish_versions, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    logger.close()
    assert set(scripted.most_active.values()) == {1}  # never two uploads of one name at once
    for name in names:
        assert stored(name) == f"{name} v30".encode()
        versions = [int(data.decode().rsplit("v", 1)[1]) for data in scripted.uploads[f"/bucket/{name}"]]
        assert versions == sorted(set(versions)) and versions[0] == 0 and versions[-1] == 30
    assert stored("shared.txt") in {f"{name} v30".encode() for name in names}  # some thread's last word


# 3. overwrite=False: refused at the call for a name in the queue; refused in the background for a
#    name already uploaded.

@pytest.mark.slow
def test_overwrite_false_for_a_name_being_uploaded_is_refused_at_the_call(scripted, staging_root):
    before_put, started, release = hold_upload_of(b"first")
    scripted.before_put = before_put
    destination = ObjectStoreLogger("scripted://bucket")
    logger = opened(destination)
    offer(logger, "a.txt", "first", overwrite=False)
    assert started.wait(10)
    with pytest.raises(FileExistsError, match=r"^/bucket/a.txt is already being uploaded and overwrite is False\n"):
        offer(logger, "a.txt", "second", overwrite=False)
    gc.collect()  # the error's traceback held the refused artifact a while
    assert len(list(staging_root.glob("composer_cfg-staging-*/*"))) == 1  # the refused copy is gone
    release.set()
    logger.close()
    assert stored("a.txt") == b"first" and scripted.uploads["/bucket/a.txt"] == [b"first"]


def test_overwrite_false_for_a_name_waiting_is_refused_at_the_call_and_the_waiting_version_kept(scripted):
    before_put, started, release = hold_upload_of(b"blocker")
    scripted.before_put = before_put
    destination = ObjectStoreLogger("scripted://bucket", num_concurrent_uploads=1)
    logger = opened(destination)
    offer(logger, "other.txt", "blocker", overwrite=True)
    assert started.wait(10)
    offer(logger, "b.txt", "queued", overwrite=False)  # waits behind other.txt (one upload thread)
    with pytest.raises(FileExistsError, match=r"^/bucket/b.txt is already being uploaded and overwrite is False\n"):
        offer(logger, "b.txt", "refused", overwrite=False)
    assert destination.wait(0.05) == ["/bucket/b.txt", "/bucket/other.txt"]
    release.set()
    logger.close()
    assert stored("b.txt") == b"queued" and scripted.uploads["/bucket/b.txt"] == [b"queued"]


def store_for(where, request):
    """(url, storage_options, read(object name) -> bytes) of a fresh store of kind `where`."""
    if where == "local":
        return "artifacts", None, lambda name: (Path("artifacts") / name).read_bytes()
    if where == "memory":
        request.getfixturevalue("scripted")
        return "scripted://bucket", None, stored
    _, fs, options = request.getfixturevalue("s3")

    def read(name):
        fs.invalidate_cache()
        return fs.cat(f"bucket/runs/{name}")

    return "s3://bucket/runs", options, read


@pytest.mark.parametrize("where", ["local", "memory", "s3"])
def test_overwrite_false_for_a_name_already_uploaded_is_refused_in_the_background(where, request):
    url, options, read = store_for(where, request)
    destination = ObjectStoreLogger(url, storage_options=options)
    logger = opened(destination)
    offer(logger, "a.txt", "first", overwrite=False)
    assert destination.wait(30) == []
    offer(logger, "a.txt", "second", overwrite=False)  # accepted at the call: nothing in the queue
    assert destination.wait(30) == []
    with pytest.raises(RuntimeError, match=r"^artifact upload failed: FileExistsError: .*a.txt already exists and "
                                           r"overwrite is False\n") as raised:
        logger.run_event("batch_end")
    assert isinstance(raised.value.__cause__, FileExistsError)
    logger.close()  # already reported
    assert read("a.txt") == b"first"


# 4. Retry and pool settings are validated, in a script and in a config, naming the key.

BAD_SETTINGS = [
    ("max_retries", -1, "expected a non-negative integer, got -1"),
    ("retry_backoff", -0.5, "expected a non-negative number, got -0.5"),
    ("close_timeout", 0, "expected a positive number, got 0"),
    ("num_concurrent_uploads", 0, "expected a positive integer, got 0"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_SETTINGS)
def test_bad_retry_and_pool_settings_are_config_errors_at_construction(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as raised:
        ObjectStoreLogger("artifacts", **{key: value})
    assert str(raised.value) == f"{key}: {message}"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("key", "value", "message"), BAD_SETTINGS)
def test_bad_retry_and_pool_settings_are_config_errors_in_a_config(tmp_path, key, value, message):
    override = f"++logger.destinations.object_store.{key}={value}"
    with pytest.raises(ConfigError) as raised:
        build_logger(overrides=["run_name=bad", "+logger/destinations=object_store", override])
    assert str(raised.value).startswith(f"logger.destinations.object_store.{key}: {message} (from command line ")
    assert os.listdir(tmp_path) == []  # nothing built: not even the file logger's log


def test_max_retries_zero_means_one_attempt_and_no_retry(flaky, caplog):
    flaky.failures = 5
    logger = opened(ObjectStoreLogger("flaky://bucket", max_retries=0, retry_backoff=0))
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        offer(logger, "ckpt.txt", "data", overwrite=True)
        with pytest.raises(RuntimeError, match=r"^artifact upload failed: ConnectionResetError: connection reset"):
            logger.close()
    assert flaky.failures == 4  # exactly one attempt
    assert not [message for message in caplog.messages if "retry" in message]
    assert not fsspec.filesystem("flaky").exists("/bucket/ckpt.txt")


# 5. A local store may not be the working directory or contain it.

@pytest.mark.parametrize("url", [".", "./", "sub/..", "{cwd}", "file://{cwd}", "..", "{parent}", "/"])
def test_a_store_at_or_above_the_runs_directory_is_refused_before_anything_is_made(tmp_path, url):
    url = url.format(cwd=tmp_path, parent=tmp_path.parent)
    with pytest.raises(ConfigError, match=r"^url: .* is the run's directory"):
        ObjectStoreLogger(url)
    with pytest.raises(ConfigError) as raised:
        build_logger(overrides=["run_name=bad", "+logger/destinations=object_store",
                                f"logger.destinations.object_store.url={url}"])
    assert str(raised.value).startswith("logger.destinations.object_store.url: ")
    assert f"is the run's directory ({tmp_path.resolve()}) or contains it" in str(raised.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("url", ["artifacts", "./artifacts", "file://{cwd}/artifacts"])
def test_a_store_below_the_working_directory_is_fine(tmp_path, url):
    url = url.format(cwd=tmp_path)
    with build_logger(overrides=["run_name=ok", "logger/destinations=[object_store]",
                                 f"logger.destinations.object_store.url={url}"]) as logger:
        offer(logger, "run/ckpt.txt", "data", overwrite=False)
    assert (tmp_path / "artifacts/run/ckpt.txt").read_text() == "data"


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "composer_cfg", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "0"})


def test_the_command_refuses_the_runs_directory_as_store_and_creates_nothing(tmp_path):
    out = run_cli("+logger/destinations=object_store", "logger.destinations.object_store.url=.", cwd=tmp_path)
    assert out.returncode == 2
    (line,) = out.stderr.splitlines()
    assert line.startswith("composer-cfg: error: logger.destinations.object_store.url: '.' is the run's directory "
                           f"({tmp_path.resolve()}/outputs/")  # the job's, where '.' resolves
    assert os.listdir(tmp_path) == []  # no outputs/ directory


def test_the_command_refuses_a_store_containing_the_run_directory_before_creating_it(tmp_path):
    """Under the command the job runs in outputs/<date>/<time>, so a store at <cwd>/outputs contains
    the job's working directory: a bad config, and a bad config creates nothing (DESIGN section 3)."""
    out = run_cli("+logger/destinations=object_store", f"logger.destinations.object_store.url={tmp_path}/outputs",
                  cwd=tmp_path)
    assert out.returncode == 2
    assert "logger.destinations.object_store" in out.stderr and "url" in out.stderr
    assert os.listdir(tmp_path) == []


def test_a_store_whose_object_is_a_live_log_file_is_a_config_error(tmp_path):
    """Issue 10: "a store root that contains or equals a live destination file is a config error".
    Here the store root holds the FileLogger's file under the very name it is published as."""
    with pytest.raises(ConfigError, match=r"logger\.destinations\.object_store\.url"):
        build_logger(overrides=["run_name=live", "logger/destinations=[file,object_store]",
                                "logger.destinations.file.filename=logs/run.txt",
                                "logger.destinations.file.artifact_name=run.txt",
                                "logger.destinations.object_store.url=logs"])
    assert os.listdir(tmp_path) == []


def test_a_live_log_file_inside_the_store_keeps_every_line(tmp_path):
    """The same set-up built in a script: refused (ConfigError), or else no line is lost."""
    try:
        file = FileLogger("logs/run.txt", artifact_name="run.txt", capture_stdout=False, capture_stderr=False,
                          log_level="batch", flush_interval=1)
        store = ObjectStoreLogger("logs")
        logger = Logger(State("live"), {"file": file, "store": store})
        logger.run_event("init")
    except ConfigError:
        return
    with logger:
        for batch in range(5):
            logger.data_batch({"batch": batch})
            logger.run_event("batch_end")
            store.wait(10)
    assert (tmp_path / "logs/run.txt").read_text().count("\n") == 5


# 6. Close ordering: a store listed before the destinations that publish at close still gets,
#    and waits for, their final flush.

def file_logger_run(logger):
    logger.run_event("epoch_start")  # a flush
    for batch in range(3):
        logger.data_batch({"loss": 1 / (batch + 1)})
    logger.data_fit({"final": "only in the last flush"})


def tensorboard_run(logger):
    logger.data_batch({"loss": 1.0})
    logger.run_event("batch_end")
    logger.run_event("epoch_end")  # a flush
    for batch in range(3):
        logger.data_batch({"loss": 1 / (batch + 2)})


def jsonl_run(logger):
    logger.data_batch({"loss": 1.0})
    logger.run_event("epoch_end")  # a flush
    for batch in range(3):
        logger.data_batch({"loss": 1 / (batch + 2)})


def final_files(kind):
    """{artifact name: local path} of what the destination wrote."""
    if kind == "file":
        return {"run/logs-rank0.txt": Path("run/logs-rank0.txt")}
    if kind == "jsonl":
        return {"run/metrics-rank0.jsonl": Path("run/metrics-rank0.jsonl")}
    return {f"run/tensorboard/{path.name}": path for path in Path("run/tensorboard").glob("events.out.tfevents.*")}


@pytest.mark.parametrize("where", ["local", "memory", "s3"])
@pytest.mark.parametrize("kind", ["file", "tensorboard", "jsonl"])
def test_a_store_listed_first_waits_for_the_final_flush_of_the_others(kind, where, request, staging_root):
    url, options, read = store_for(where, request)
    if where == "memory":
        ScriptedFileSystem.before_put = lambda name, data: time.sleep(0.05)  # the last upload is still running
    destination, run = {
        "file": (lambda: FileLogger(capture_stdout=False, capture_stderr=False, flush_interval=1000), file_logger_run),
        "tensorboard": (lambda: TensorboardLogger(flush_interval=1000), tensorboard_run),
        "jsonl": (lambda: JSONLinesLogger(flush_interval=1000), jsonl_run),
    }[kind]
    store = ObjectStoreLogger(url, storage_options=options)
    with Logger(State("run"), {"object_store": store, kind: destination()}) as logger:
        logger.run_event("init")
        run(logger)
    files = final_files(kind)
    assert len(files) == 1
    for name, path in files.items():
        local = path.read_bytes()
        assert read(name) == local
    if kind == "file":
        assert b"only in the last flush" in local
    if kind == "jsonl":
        assert local.count(b"\n") == 4
    assert list(staging_root.iterdir()) == []


# 7. Transient or permanent: by type and code, never by the words of the message.

def client_error(code, status=None):
    from botocore.exceptions import ClientError

    response = {"Error": {"Code": code, "Message": f"{code} said the server"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "PutObject")


def from_s3fs(code, status):
    """The error s3fs raises for a ClientError: an OSError (or subclass) raised from it."""
    from s3fs.errors import translate_boto_error

    return translate_boto_error(client_error(code, status))


def raised_from_none_while_handling(error, context):
    try:
        try:
            raise context
        except Exception:
            raise error from None
    except Exception as chained:
        return chained


TRANSIENT = {
    "ClientError SlowDown": lambda: client_error("SlowDown", 503),
    "ClientError SlowDown, no status": lambda: client_error("SlowDown"),
    "ClientError HTTP 503, unknown code": lambda: client_error("SomethingNew", 503),
    "ClientError InternalError 500": lambda: client_error("InternalError", 500),
    "s3fs OSError from SlowDown": lambda: from_s3fs("SlowDown", 503),
    "ConnectionResetError": lambda: ConnectionResetError("connection reset by peer"),
    "TimeoutError": lambda: TimeoutError("timed out"),
    "OSError ECONNREFUSED": lambda: OSError(errno.ECONNREFUSED, "refused"),
}
PERMANENT = {
    "ClientError AccessDenied": lambda: client_error("AccessDenied", 403),
    "s3fs PermissionError from AccessDenied": lambda: from_s3fs("AccessDenied", 403),
    "s3fs FileNotFoundError from NoSuchBucket": lambda: from_s3fs("NoSuchBucket", 404),
    "PermissionError saying 503 Throttled": lambda: PermissionError("503 Throttled"),
    "OSError saying SlowDown 503": lambda: OSError("SlowDown: 503 Service Unavailable, Throttling"),
    "RuntimeError saying Throttling": lambda: RuntimeError("Throttling: rate exceeded (503)"),
    "FileNotFoundError": lambda: FileNotFoundError(errno.ENOENT, "no such file"),
    "PermissionError raised from None while handling a reset": lambda: raised_from_none_while_handling(
        PermissionError("access denied"), ConnectionResetError("reset")),
}


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_transient_errors_by_type_and_code_are_retried(scripted, caplog, kind):
    error = TRANSIENT[kind]()
    scripted.errors = [error]
    logger = opened(ObjectStoreLogger("scripted://bucket", max_retries=2, retry_backoff=0))
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        offer(logger, "a.txt", "data", overwrite=True)
        logger.close()
    assert stored("a.txt") == b"data" and len(scripted.uploads["/bucket/a.txt"]) == 2
    assert [m.split("; ")[-1].split(" in ")[0] for m in caplog.messages] == ["retry 1 of 2"]


@pytest.mark.parametrize("kind", list(PERMANENT))
def test_permanent_errors_are_not_retried_whatever_their_message_says(scripted, caplog, kind):
    error = PERMANENT[kind]()
    scripted.errors = [error]
    logger = opened(ObjectStoreLogger("scripted://bucket", max_retries=2, retry_backoff=0))
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        offer(logger, "a.txt", "data", overwrite=True)
        with pytest.raises(RuntimeError, match=rf"^artifact upload failed: {type(error).__name__}: ") as raised:
            logger.close()
    assert raised.value.__cause__ is error
    assert scripted.uploads["/bucket/a.txt"] == [b"data"]  # one attempt
    assert caplog.messages == []
    assert not fsspec.filesystem("memory").exists("/bucket/a.txt")


@pytest.mark.slow
def test_a_missing_bucket_on_s3_is_not_retried(s3, caplog):
    _, _, options = s3
    logger = opened(ObjectStoreLogger("s3://no-such-bucket/runs", storage_options=options, retry_backoff=0.01))
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        offer(logger, "a.txt", "data", overwrite=True)
        with pytest.raises(RuntimeError, match=r"^artifact upload failed: FileNotFoundError"):
            logger.close()
    assert caplog.messages == []


def test_retries_wait_with_jitter_within_the_documented_bounds(scripted, caplog):
    backoff, waits = 0.02, defaultdict(list)
    for _ in range(3):
        scripted.errors = [ConnectionResetError("reset") for _ in range(3)]
        caplog.clear()
        logger = opened(ObjectStoreLogger("scripted://bucket", max_retries=3, retry_backoff=backoff))
        with caplog.at_level(logging.WARNING, logger="composer_cfg"):
            offer(logger, "a.txt", "data", overwrite=True)
            logger.close()
        assert stored("a.txt") == b"data"
        # only this upload's retries (a background thread of an earlier test may log meanwhile)
        logged = [re.search(r"; retry (\d) of 3 in ([0-9.e-]+) s$", m) for m in caplog.messages
                  if m.startswith("upload of /bucket/a.txt failed")]
        assert [int(m.group(1)) for m in logged] == [1, 2, 3]
        for match in logged:
            waits[int(match.group(1))].append(float(match.group(2)))
    for attempt, seconds in waits.items():
        low = backoff * 2 ** (attempt - 1)
        assert all(low - 1e-9 <= wait <= low + backoff + 1e-9 for wait in seconds), (attempt, seconds)
    jitters = [round(wait - backoff * 2 ** (attempt - 1), 4) for attempt, seconds in waits.items() for wait in seconds]
    assert len(set(jitters)) > 1, jitters  # 9 waits: not one fixed schedule


# 8. After close: no silent restart; the full URL of an artifact.

def test_after_close_an_artifact_is_refused_and_nothing_restarts(scripted):
    destination = ObjectStoreLogger("scripted://bucket")
    logger = opened(destination)
    offer(logger, "a.txt", "before", overwrite=True)
    logger.close()
    Path("late.txt").write_text("late")
    with pytest.raises(RuntimeError, match="closed"):
        destination.log_file_artifact(logger.state, LogLevel.FIT, "late.txt", Path("late.txt"), overwrite=True)
    with pytest.raises(RuntimeError, match="^this Logger is closed"):
        logger.file_artifact(LogLevel.FIT, "late.txt", "late.txt", overwrite=True)
    assert destination.wait(1) == []
    assert stored("a.txt") == b"before" and not fsspec.filesystem("memory").exists("/bucket/late.txt")
    assert scripted.uploads["/bucket/late.txt"] == []


def test_an_artifact_refused_after_close_leaves_no_staging_directory(scripted, staging_root):
    destination = ObjectStoreLogger("scripted://bucket")
    logger = opened(destination)
    offer(logger, "a.txt", "before", overwrite=True)
    logger.close()
    assert list(staging_root.iterdir()) == []
    Path("late.txt").write_text("late")
    with pytest.raises(RuntimeError, match="closed"):
        destination.log_file_artifact(logger.state, LogLevel.FIT, "late.txt", Path("late.txt"), overwrite=True)
    assert list(staging_root.iterdir()) == []


def test_uri_for_an_artifact_on_s3_is_the_full_url(s3):
    _, fs, options = s3
    destination = ObjectStoreLogger("s3://bucket/prefix", object_name="{run_name}/{artifact_name}",
                                    storage_options=options)
    with pytest.raises(RuntimeError, match="known only after Event.INIT"):
        destination.get_uri_for_artifact("ckpt.txt")
    logger = opened(destination, State("myrun"))
    offer(logger, "ckpt/ep0.txt", "zero", overwrite=False)
    logger.close()
    uri = destination.get_uri_for_artifact("ckpt/ep0.txt")
    assert uri == "s3://bucket/prefix/myrun/ckpt/ep0.txt"
    with fsspec.open(uri, "rb", **options) as f:
        assert f.read() == b"zero"


def test_uri_for_an_artifact_on_a_local_directory_is_a_file_url(tmp_path):
    destination = ObjectStoreLogger("artifacts")
    logger = opened(destination)
    offer(logger, "ckpt/ep0.txt", "zero", overwrite=False)
    logger.close()
    uri = destination.get_uri_for_artifact("ckpt/ep0.txt")
    assert uri == f"file://{tmp_path}/artifacts/ckpt/ep0.txt" == (tmp_path / "artifacts/ckpt/ep0.txt").as_uri()
    with fsspec.open(uri, "rb") as f:
        assert f.read() == b"zero"


# 9. Downloads and local publishes never follow a symbolic link planted at a predictable name.

@pytest.fixture
def victim(tmp_path):
    path = tmp_path.parent / f"{tmp_path.name}-victim.txt"
    path.write_text("precious")
    yield path
    path.unlink(missing_ok=True)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_download_never_follows_a_planted_link(where, request, tmp_path, victim):
    url, options, _ = store_for(where, request)
    destination = ObjectStoreLogger(url, storage_options=options)
    logger = opened(destination)
    offer(logger, "a.txt", "downloaded", overwrite=False)
    logger.close()
    down = tmp_path / "down"
    down.mkdir()
    nowhere = tmp_path.parent / f"{tmp_path.name}-created-by-attacker"
    (down / ".a.txt.partial").symlink_to(victim)            # the old scheme's temporary name
    (down / ".b.txt.partial").symlink_to(nowhere)           # a dangling link: nothing may be created
    destination.get_file_artifact("a.txt", down / "a.txt")
    destination.get_file_artifact("a.txt", down / "b.txt")
    (down / "c.txt").symlink_to(victim)                     # the destination itself is a link
    with pytest.raises(FileExistsError):
        destination.get_file_artifact("a.txt", down / "c.txt")
    destination.get_file_artifact("a.txt", down / "c.txt", overwrite=True)
    assert victim.read_text() == "precious" and not nowhere.exists()
    for name in ("a.txt", "b.txt", "c.txt"):
        assert not (down / name).is_symlink() and (down / name).read_text() == "downloaded"


@pytest.mark.parametrize("overwrite", [True, False])
def test_a_local_publish_never_follows_a_planted_link(tmp_path, victim, overwrite):
    store = tmp_path / "artifacts"
    (store / "run").mkdir(parents=True)
    nowhere = tmp_path.parent / f"{tmp_path.name}-created-by-attacker"
    (store / "run/.a.txt.partial").symlink_to(victim)
    (store / "run/.b.txt.partial").symlink_to(nowhere)
    (store / "run/c.txt").symlink_to(victim)  # the final name itself
    destination = ObjectStoreLogger("artifacts")
    logger = opened(destination)
    for name in ("a.txt", "b.txt", "c.txt"):
        offer(logger, f"run/{name}", f"published {name}", overwrite=overwrite)
    assert destination.wait(10) == []
    if overwrite:
        logger.close()
        assert not (store / "run/c.txt").is_symlink() and (store / "run/c.txt").read_text() == "published c.txt"
    else:  # an existing entry, link or not, is never replaced
        with pytest.raises(RuntimeError, match=r"FileExistsError: .*run/c.txt already exists and overwrite is False"):
            logger.close()
        assert (store / "run/c.txt").is_symlink()
    assert victim.read_text() == "precious" and not nowhere.exists()
    for name in ("a.txt", "b.txt"):
        assert not (store / "run" / name).is_symlink() and (store / "run" / name).read_text() == f"published {name}"


# The upload queue is bounded: a store that does not keep up makes the logging thread wait for
# room (block) or lets the artifact go, said and counted (drop).

@pytest.mark.parametrize("when_full", ["drop", "block"])
def test_a_full_upload_queue_waits_for_room_or_drops_and_says_so(scripted, staging_root, when_full, caplog):
    before_put, started, release = hold_upload_of(b"held")
    scripted.before_put = before_put
    destination = ObjectStoreLogger("scripted://bucket", num_concurrent_uploads=1, queue_size=2, when_full=when_full,
                                    close_timeout=0.2 if when_full == "block" else 30)
    logger = opened(destination)
    offer(logger, "a.txt", "held", overwrite=False)
    assert started.wait(10)
    offer(logger, "b.txt", "b", overwrite=False)  # waits behind the held upload: the queue is full
    offer(logger, "b.txt", "b2", overwrite=True)  # a new version of a waiting one takes its place
    offer(logger, "c.txt", "c", overwrite=False)  # one too many: waited for (block, 0.2 s), then let go
    offer(logger, "d.txt", "d", overwrite=False)  # an outage costs one wait, not one per artifact
    release.set()
    with pytest.raises(RuntimeError) as raised:
        logger.close()
    assert str(raised.value) == ("2 artifact(s) were not uploaded to scripted://bucket: the upload queue was full: "
                                 "/bucket/c.txt, /bucket/d.txt")
    assert [message for message in caplog.messages if "is full" in message] == [
        f"ObjectStoreLogger: the upload queue to scripted://bucket is full; artifact {name!r} is not uploaded"
        for name in ("c.txt", "d.txt")]
    assert (stored("a.txt"), stored("b.txt")) == (b"held", b"b2")
    report = destination.report()
    assert report | {"blocked_seconds": 0} == {"queued": 0, "peak_queued": 2, "uploaded": 2, "failed": 0, "dropped": 2,
                                               "waits": 1 if when_full == "block" else 0, "blocked_seconds": 0}
    assert list(staging_root.iterdir()) == []  # no staged copy left


def test_an_upload_left_unfinished_at_close_has_its_s3_multipart_upload_aborted(s3):
    """A large upload still running when close gives up (a SIGTERM's grace, close_timeout) leaves
    an unfinished multipart upload, whose parts S3 keeps (and bills) until it is aborted."""
    _, fs, options = s3
    store = ObjectStoreLogger("s3://bucket/runs", storage_options=options)
    logger = opened(store)
    mpu = fs.call_s3("create_multipart_upload", Bucket="bucket", Key="runs/big.bin")  # as put_file starts one
    fs.call_s3("upload_part", Bucket="bucket", Key="runs/big.bin", UploadId=mpu["UploadId"], PartNumber=1,
               Body=b"x" * 5 * 2**20)
    fs.call_s3("create_multipart_upload", Bucket="bucket", Key="runs/someone-elses.bin")
    store.sink().abort(["bucket/runs/big.bin"])
    left = [upload["Key"] for upload in fs.call_s3("list_multipart_uploads", Bucket="bucket").get("Uploads", [])]
    assert left == ["runs/someone-elses.bin"]  # ours aborted, nothing else touched
    logger.close()


# 10. A relative local root resolves when the store opens, in the run's directory, as other destinations do.

def test_a_relative_local_root_resolves_at_open_in_the_runs_directory_beside_its_log(tmp_path):
    job, elsewhere = tmp_path / "job", tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    destination = ObjectStoreLogger("artifacts")
    assert destination.output_location() == "artifacts"  # before open: the URL as given
    logger = Logger(State("run", directory=job), {"file": FileLogger(), "object_store": destination})
    logger.run_event("init")
    assert destination.output_location() == str(job / "artifacts")
    offer(logger, "ckpt/ep0.txt", "zero", overwrite=False)
    logger.close()
    assert (job / "artifacts" / "ckpt" / "ep0.txt").read_text() == "zero"
    assert (job / "artifacts" / "run" / "logs-rank0.txt").read_bytes() == (job / "run" / "logs-rank0.txt").read_bytes()
    assert list(elsewhere.iterdir()) == []
    assert destination.get_uri_for_artifact("ckpt/ep0.txt") == (job / "artifacts" / "ckpt" / "ep0.txt").as_uri()
    destination.get_file_artifact("ckpt/ep0.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "zero"


def test_a_store_made_inside_a_hydra_job_follows_the_state_it_is_opened_with(tmp_path):
    """Built in Python inside a job (the job's directory given to the config checks), a Logger of a
    state without a directory keeps the upload beside its log, in the working directory."""
    from composer_cfg.config.params import job_directory

    with job_directory(tmp_path / "job"):
        destinations = {"file": FileLogger(), "store": ObjectStoreLogger(url="artifacts")}
    with Logger(State("direct"), destinations) as logger:
        logger.run_event("init")
    assert (tmp_path / "artifacts" / "direct" / "logs-rank0.txt").read_bytes() == (
        tmp_path / "direct" / "logs-rank0.txt").read_bytes()
    assert not (tmp_path / "job").exists()
