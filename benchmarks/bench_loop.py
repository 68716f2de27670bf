"""A realistic training loop: what logging costs a step of known duration, against peers.

Each step keeps a core busy for `--step-ms` with the interpreter free (or sleeps, ``--step
sleep``), then logs 4 metrics; events fire as in Composer's trainer (`loop_timing.py` times
everything between two steps: the data call, the events, the flushes).
Five destinations: a text log (FileLogger at batch level), JSON Lines, memory, TensorBoard, and
MLflow against a local ``mlflow server`` (SQLite store) reached through a loopback proxy that
holds every request `--latency-ms` before forwarding it (a distant tracking server). Cases: no
destination; the five with floats, with 0-d CPU tensors, and with 8 device tensors per step
(counted with the device-tensor stand-in of the tests); the five with ``measure_overhead`` for
the cost of each destination. Every case runs with the defaults, as a user gets them.

With ``--peers-python`` (a Python with ``lightning`` and ``mosaicml`` installed, see
`benchmarks/README.md`), Lightning's and Composer 0.32's loggers do the same work against the
same server in the same run (`peers.py`).

Run: ``.venv/bin/python benchmarks/bench_loop.py`` (``--steps 200`` for a faster look).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from counting_tensor import DeviceTensor, on_device  # noqa: E402 - the tests' helpers
from loop_timing import BATCHES_PER_EPOCH, BusyStep, SleepStep, floats, measure, zero_d_tensors  # noqa: E402
from servers import MlflowServer  # noqa: E402

from composer_cfg import (  # noqa: E402
    Event,
    FileLogger,
    InMemoryLogger,
    JSONLinesLogger,
    Logger,
    MLFlowLogger,
    State,
    TensorboardLogger,
)


def delaying_proxy(upstream_port: int, latency: float) -> ThreadingHTTPServer:
    """A loopback HTTP proxy to ``127.0.0.1:upstream_port`` that waits `latency` seconds per request."""

    class Handler(BaseHTTPRequestHandler):
        def forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(latency)
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            headers = {key: value for key, value in self.headers.items() if key.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            upstream.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        def log_message(self, *args: Any) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


def destinations(tracking_uri: str) -> dict[str, Any]:
    return {
        "file": FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False),
        "jsonl": JSONLinesLogger(),
        "in_memory": InMemoryLogger(),
        "tensorboard": TensorboardLogger(),
        "mlflow": MLFlowLogger(tracking_uri=tracking_uri),
    }


class ComposerCfgLoop:
    """A composer_cfg `Logger` driven as `TrainingLoop` drives it."""

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def start(self) -> None:
        self.logger.run_event(Event.INIT)  # MLflow: creates the run on the server
        self.logger.run_event(Event.FIT_START)
        self.logger.run_event(Event.EPOCH_START)
        self.logger.run_event(Event.BATCH_START)

    def log(self, metrics: dict[str, Any]) -> None:
        self.logger.data_batch(metrics)

    def after(self, step: int, epoch_ends: bool, last: bool) -> None:
        logger, state = self.logger, self.logger.state
        state.timestamp = state.timestamp.to_next_batch(samples=32)
        logger.run_event(Event.BATCH_END)
        if epoch_ends:
            state.timestamp = state.timestamp.to_next_epoch()
            logger.run_event(Event.EPOCH_END)
        if not last:
            if epoch_ends:
                logger.run_event(Event.EPOCH_START)
            logger.run_event(Event.BATCH_START)

    def close(self) -> None:
        self.logger.run_event(Event.FIT_END)
        self.logger.close()


class NothingLoop:
    """The floor: the loop's own timing, around calls that do nothing."""

    def start(self) -> None:
        pass

    def log(self, metrics: dict[str, Any]) -> None:
        pass

    def after(self, step: int, epoch_ends: bool, last: bool) -> None:
        pass

    def close(self) -> None:
        pass


def device_tensors(step: int) -> dict[str, Any]:
    return {f"metric/{index}": on_device((step * 8 + index) / 64) for index in range(8)}


def run_peer(python: str, library: str, metrics: str, uri: str, args: argparse.Namespace) -> dict[str, float]:
    """`peers.py` in `python`, against the same server: its figures."""
    out = subprocess.run([python, str(HERE / "peers.py"), library, "--metrics", metrics, "--tracking-uri", uri,
                          "--steps", str(args.steps), "--step-ms", str(args.step_ms), "--step", args.step],
                         capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--step-ms", type=float, default=10.0)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--step", choices=["busy", "sleep"], default="busy",
                        help="busy: a busy core, the interpreter free (default); sleep: the core idles")
    parser.add_argument("--peers-python", help="a Python with lightning and mosaicml (see benchmarks/README.md)")
    args = parser.parse_args()
    step = (BusyStep if args.step == "busy" else SleepStep)(args.step_ms / 1e3)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        server = MlflowServer(Path(tmp, "mlflow-server"))
        server.start()
        proxy = delaying_proxy(server.port, args.latency_ms / 1e3)
        try:
            uri = f"http://127.0.0.1:{proxy.server_address[1]}"
            results["calls that do nothing"] = measure(NothingLoop(), args.steps, step, floats)
            results["composer_cfg, no destination"] = measure(ComposerCfgLoop(Logger(State("none"))), args.steps,
                                                              step, floats)
            for name, metrics in (("floats", floats), ("0-d tensors", zero_d_tensors)):
                loop = ComposerCfgLoop(Logger(State(f"five-{metrics.__name__}"), destinations(uri)))
                results[f"composer_cfg, 5 destinations, {name}"] = measure(loop, args.steps, step, metrics)
            DeviceTensor.transfers = 0
            loop = ComposerCfgLoop(Logger(State("five-device"), destinations(uri)))
            results["composer_cfg, 5 destinations, 8 device tensors"] = measure(loop, args.steps, step, device_tensors)
            results["composer_cfg, 5 destinations, 8 device tensors"]["host_transfers"] = DeviceTensor.transfers
            measured = Logger(State("five-measured"), destinations(uri), measure_overhead=True)
            results["composer_cfg, 5 destinations, floats, measure_overhead"] = {
                **measure(ComposerCfgLoop(measured), args.steps, step, floats),
                **{f"{name}_data_us": figures["data"]["us_per_call"] for name, figures in measured.overhead().items()}}
            if args.peers_python:
                for library in ("lightning", "composer"):
                    for metrics in ("floats", "tensors"):
                        label = "0-d tensors" if metrics == "tensors" else metrics
                        results[f"{library}, 5 destinations, {label}"] = run_peer(args.peers_python, library, metrics,
                                                                                  uri, args)
        finally:
            proxy.shutdown()
            server.terminate()
    print(f"{args.steps} steps of {args.step_ms:g} ms ({args.step}), {BATCHES_PER_EPOCH} batches per epoch, "
          f"MLflow at +{args.latency_ms:g} ms per request")
    for name, figures in results.items():
        print(f"{name}:")
        print("   " + ", ".join(f"{key}={value:.4g}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
