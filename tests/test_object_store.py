"""ObjectStoreLogger against a local directory, memory, and a real S3 protocol server (moto)."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from composer_cfg import Logger, LogLevel, ObjectStoreLogger, State, build_logger


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


def test_filter_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_filters.py").write_text("def only_checkpoints(state, level, name):\n    return 'ckpt' in name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    destination = ObjectStoreLogger(str(tmp_path / "store"), should_log_artifact="my_filters.only_checkpoints")
    publish(destination, [("logs.txt", "l"), ("ckpt.txt", "c")]).close()
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


def test_selected_from_the_config_with_the_demo_checkpoints(tmp_path):
    overrides = ["run_name=cfg", "logger/destinations=[object_store]",
                 f"logger.destinations.object_store.url={tmp_path / 'bucket'}"]
    with build_logger(overrides=overrides) as logger:
        from composer_cfg.demo import run_demo

        run_demo(logger, epochs=2, batches_per_epoch=2)
    assert sorted(p.name for p in (tmp_path / "bucket/cfg/checkpoints").iterdir()) == ["ep0-rank0.npz", "ep1-rank0.npz"]
