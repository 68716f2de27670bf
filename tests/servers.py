"""Real back ends for the hang, leak and MLflow-window tests: a real `mlflow server`, and a loopback
listener that accepts connections and never answers; and `Lines`, to follow a child process.

Test modules import the fixtures they use (``from servers import mlflow, silent_listener``). The
session's MLflow server is one process however many modules import its fixture.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this one's, never phoning home, plus `extra`."""
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", **extra}


class MlflowServer:
    """``mlflow server`` on a SQLite store, in a process group of its own so the server and its
    uvicorn worker are stopped, continued and terminated together."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.database = directory / "db.sqlite"
        self.artifacts = directory / "artifacts"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log = None

    def start(self, ready_within: float = 60.0) -> None:
        """Start it (on the same port and database as before, when restarted); return once it answers."""
        assert self.process is None, "already running"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self._log = open(self.directory / "server.log", "ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.database}",
             "--default-artifact-root", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env=child_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        )
        deadline = time.monotonic() + ready_within
        while not self.healthy(timeout=1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.terminate()
                raise RuntimeError(f"mlflow server did not start: see {self.directory / 'server.log'}")
            time.sleep(0.1)

    def healthy(self, timeout: float = 5) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=timeout) as response:
                return response.status == 200
        except OSError:
            return False

    def _signal(self, signum: int) -> None:
        assert self.process is not None, "not running"
        os.killpg(self.process.pid, signum)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """SIGSTOP for the duration of the block: connections are still accepted (by the kernel),
        no request is ever answered. SIGCONT afterwards, whatever happened."""
        self._signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._signal(signal.SIGCONT)

    def terminate(self) -> None:
        """End the server and wait until its port refuses connections."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self._signal(signal.SIGKILL)
            self.process.wait(15)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the uvicorn worker may outlive its parent briefly
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 0)
                time.sleep(0.05)
                continue
            break
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def ensure_running(self) -> None:
        """Restart it if a test left it terminated or unhealthy."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._signal(signal.SIGCONT)
            if self.healthy():
                return
        self.terminate()
        self.start()


_shared_server: MlflowServer | None = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server for the session (a SQLite store behind it). Each module that
    imports this fixture gets its own session-scoped copy of it; they share one server, ended
    when the session ends."""
    global _shared_server
    if _shared_server is None:
        server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
        server.start()
        _shared_server = server
    yield _shared_server
    _shared_server.terminate()


@pytest.fixture
def mlflow(mlflow_server: MlflowServer) -> Iterator[MlflowServer]:
    """The session's server, running and answering at the start of the test and after it."""
    mlflow_server.ensure_running()
    yield mlflow_server
    mlflow_server.ensure_running()


class SilentListener:
    """A loopback TCP server that accepts every connection, reads whatever is sent, and never
    answers: a hung tracking server or S3 endpoint. Closing it drops every connection."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._server.setblocking(False)
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-listener", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                sock = key.fileobj
                if sock is self._server:
                    with contextlib.suppress(BlockingIOError):
                        connection, _ = self._server.accept()
                        connection.setblocking(False)
                        self._selector.register(connection, selectors.EVENT_READ)
                        self.accepted += 1
                    continue
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]  # read, and never answer
                except BlockingIOError:
                    continue
                except ConnectionError:
                    data = b""
                if not data:  # the client gave up: forget the connection
                    self._selector.unregister(sock)
                    sock.close()  # type: ignore[union-attr]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


class Lines:
    """The lines a child prints, read on a thread so the test waits for them with a bound."""

    def __init__(self, stream) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line.strip())

    def next(self, timeout: float = 30) -> str:
        return self._queue.get(timeout=timeout)

    def count(self) -> int:
        """How many lines were read and not yet taken."""
        return self._queue.qsize()

    def skip(self, count: int, timeout: float = 30) -> None:
        for _ in range(count):
            self.next(timeout)

    def done(self, timeout: float = 30) -> None:
        """Wait until the stream ended (the child closed it, or died)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the child's output did not end"

    def rest(self) -> list[str]:
        """The lines read and not yet taken (after `done`: everything the child printed)."""
        lines = []
        while not self._queue.empty():
            lines.append(self._queue.get())
        return lines
