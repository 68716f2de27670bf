"""Shared fixtures: a destination that records every call, and an isolated working directory."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from composer_cfg import LoggerDestination, LogLevel
from composer_cfg.core.dist import DistInfo


class Recorder(LoggerDestination):
    """Records each call as a tuple, in order."""

    def __init__(self, log_level: LogLevel | None = None) -> None:
        self.log_level = log_level
        self.calls: list[tuple[Any, ...]] = []

    def log_data(self, state, log_level, data):
        self.calls.append(("data", log_level, data))

    def log_file_artifact(self, state, log_level, artifact_name, file_path, *, overwrite):
        self.calls.append(("artifact", log_level, artifact_name, file_path, overwrite))

    def run_event(self, event, state, logger):
        self.calls.append(("event", str(event)))
        super().run_event(event, state, logger)

    def close(self, state, logger):
        self.calls.append(("close",))

    def post_close(self):
        self.calls.append(("post_close",))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test runs in its own directory with no rank variables from the outside, and the
    back ends (W&B, MLflow) keep their state there too and never touch the network."""
    monkeypatch.chdir(tmp_path)
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / ".wandb-home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "SLURM_PROCID",
                 "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_NODEID",
                 "COMPOSER_RUN_NAME", "RUN_NAME"):
        monkeypatch.delenv(name, raising=False)
    # A W&B run in this process leaves its service's address in the environment (wandb sets it); a
    # child started with it joins that service (one test's hung server then held the next test's W&B
    # 90 s), or fails once the service is gone. Removed for good, never restored (module-scoped
    # fixtures start children before this fixture runs).
    os.environ.pop("WANDB_SERVICE", None)
    yield
    os.environ.pop("WANDB_SERVICE", None)


#: The extra that installs each optional module the tests use (`needs`).
EXTRA_OF = {"torch": "dist", "tensorboard": "tensorboard", "tensorboardX": "tensorboard", "PIL": "tensorboard",
            "mlflow": "mlflow", "wandb": "wandb", "matplotlib": "plot", "hypothesis": "test", "moto": "test",
            "s3fs": "s3", "botocore": "s3", "psutil": "system", "pynvml": "system"}
#: Programs an extra installs: a test that failed for want of one is skipped too (`pytest_runtest_makereport`).
PROGRAM_OF = {"moto_server": "moto"}


def default_sigint() -> None:
    """A child's ``preexec_fn`` for a test that sends it SIGINT: the default disposition, as a
    terminal's Ctrl-C meets it (a test run started in the background of a shell without job control
    ignores SIGINT, and its children would inherit that: Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def needs(module: str) -> Any:
    """`module`, imported; where it is not installed (the package alone), the test module is
    skipped, saying which extra installs it."""
    extra = EXTRA_OF[module.split(".")[0]]
    return pytest.importorskip(module, reason=f"needs {module.split('.')[0]}: pip install 'composer_cfg[{extra}]'")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In an environment without some extras (the package alone), a test that failed because one
    of them is missing (its import, or composer_cfg's own "pip install 'composer_cfg[x]'" error,
    in this process or a child's output) is reported skipped, with the hint. With every extra
    installed (`make test`) nothing is missing and nothing changes."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.excinfo is None:
        return
    text = report.longreprtext
    missing = {module: [f"No module named '{module}", f"'composer_cfg[{extra}]'"] for module, extra in EXTRA_OF.items()}
    for program, module in PROGRAM_OF.items():
        missing[module].append(f"{program}'")
    for module, signs in missing.items():
        extra = EXTRA_OF[module]
        if importlib.util.find_spec(module) is None and any(sign in text for sign in signs):
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0,
                               f"Skipped: needs {module}: pip install 'composer_cfg[{extra}]'")
            return


def needs_destinations(text: str) -> None:
    """Skip the test, with the install hint, when `text` (overrides, a config) names a built-in
    destination whose back end is not installed."""
    from composer_cfg.destinations.registry import BUILT_IN

    for name, destination in BUILT_IN.items():
        if re.search(rf"\b{name}\b", text):
            for module, extra in destination.requires.items():
                pytest.importorskip(module, reason=f"needs {module}: pip install 'composer_cfg[{extra}]'")
    if "s3://" in text:
        needs("s3fs")


def until(condition, timeout: float = 30.0) -> bool:
    """Whether `condition()` holds within `timeout` seconds, polled: for what a destination's own
    thread does in its own time (a scheduled flush on a thread channel)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty SQLite tracking store, made by MLflow once for the session. Tests copy it where a
    new store is expected: creating MLflow's tables costs 2 to 7 s per store, opening a copy does not.
    (Creating the project's store itself is tested in test_mlflow.py: a Logger's first run, and four
    processes at once.)"""
    MlflowClient = needs("mlflow").MlflowClient
    database = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    client._tracking_client.store.engine.dispose()  # the copies must be of a closed file
    return database


def place_store(empty_store: Path, directory: Path) -> Path:
    """A copy of the empty store as ``mlflow.db`` in `directory` (created): where MLFlowLogger's
    default tracking_uri finds the project's store of a program started there."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, directory / "mlflow.db")
    return directory / "mlflow.db"


@pytest.fixture
def project_store(empty_store, tmp_path) -> Path:
    """The project's store of this test's directory (``mlflow.db``), already made: a copy of the
    empty one."""
    return place_store(empty_store, tmp_path)


def ranks(world_size: int, rank: int = 0) -> DistInfo:
    return DistInfo(rank=rank, local_rank=rank, world_size=world_size, local_world_size=world_size)


def destination_options() -> list[str]:
    """The options of the packaged logger/destinations group, read from the config tree."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_module("composer_cfg.conf", version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options("logger/destinations"))


class Clock:
    """A monotonic clock a test sets by hand (`now`, in seconds); `reads` counts the readings."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The clock `FlushSchedule` reads for ``flush_seconds``, at 0 until a test moves it."""
    from composer_cfg.core import flush_schedule

    fake = Clock()
    monkeypatch.setattr(flush_schedule, "monotonic", fake)
    return fake


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 protocol server (moto) on 127.0.0.1, for the session; yields its URL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(10)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """An empty S3 world with bucket 'bucket': yields (url, s3fs file system, storage_options)."""
    import urllib.request

    import s3fs

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_ENDPOINT_URL_S3": s3_server}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    urllib.request.urlopen(urllib.request.Request(f"{s3_server}/moto-api/reset", method="POST"), timeout=5)
    options = {"skip_instance_cache": True}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("bucket")
    return s3_server, fs, options
