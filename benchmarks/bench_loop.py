"""A realistic training loop: what logging costs a step of known duration.

Each step sleeps `--step-ms` (a device-bound step releases the interpreter, as sleeping does),
then logs 4 metrics with ``data_batch``; events fire as in Composer's trainer. Five destinations:
FileLogger (batch level), JSON Lines, InMemory, TensorBoard, and MLflow against a local
``mlflow server`` (SQLite store) reached through a loopback proxy that holds every request
`--latency-ms` before forwarding it (a distant tracking server). Reported: the time spent in
logging calls (``data_batch`` and the events, flushes included) as a percentage of the step, the
p50/p99/max of ``data_batch``, and how long ``close`` took; the five destinations again with
``offload_writers`` (the writers on threads of their own). Then the tensor case: host transfers
of 8 scalar tensors logged every step, eager and with ``defer_tensors`` (counted with the CPU
tensor subclass of the tests).

Run: ``.venv/bin/python benchmarks/bench_loop.py`` (``--steps 200`` for a faster look).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from counting_tensor import DeviceTensor, on_device  # noqa: E402 - the tests' helpers
from servers import MlflowServer  # noqa: E402

from composer_cfg import (Event, FileLogger, InMemoryLogger, JSONLinesLogger, Logger, MLFlowLogger,  # noqa: E402
                          State, TensorboardLogger)


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


def destinations(tracking_uri: str | None) -> dict[str, Any]:
    chosen: dict[str, Any] = {
        "file": FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False),
        "jsonl": JSONLinesLogger(),
        "in_memory": InMemoryLogger(),
        "tensorboard": TensorboardLogger(),
    }
    if tracking_uri is not None:
        chosen["mlflow"] = MLFlowLogger(tracking_uri=tracking_uri)
    return chosen


def run_loop(logger: Logger, steps: int, step_seconds: float, batches_per_epoch: int,
             metrics: Any) -> dict[str, float]:
    """Steps of `step_seconds`; the time spent in logging calls, and each data_batch's latency."""
    state, clock = logger.state, time.perf_counter
    logging_time, latencies = 0.0, []

    def fire(event: Event) -> None:
        nonlocal logging_time
        start = clock()
        logger.run_event(event)
        logging_time += clock() - start

    start = clock()
    logger.run_event(Event.INIT)  # starting the run (MLflow: creating it on the server) is not a step's cost
    init_time = clock() - start
    fire(Event.FIT_START)
    started = clock()
    for step in range(steps):
        if step % batches_per_epoch == 0:
            fire(Event.EPOCH_START)
        fire(Event.BATCH_START)
        time.sleep(step_seconds)  # the step itself
        data = metrics(step)
        start = clock()
        logger.data_batch(data)
        latency = clock() - start
        latencies.append(latency)
        logging_time += latency
        state.timestamp = state.timestamp.to_next_batch(samples=32)
        fire(Event.BATCH_END)
        if (step + 1) % batches_per_epoch == 0:
            state.timestamp = state.timestamp.to_next_epoch()
            fire(Event.EPOCH_END)
    fire(Event.FIT_END)
    loop_time = clock() - started
    start = clock()
    logger.close()
    close_time = clock() - start
    latencies.sort()
    return {
        "steps": steps,
        "logging_ms_per_step": logging_time / steps * 1e3,
        "overhead_percent": logging_time / steps / step_seconds * 100,
        "loop_ms_per_step": loop_time / steps * 1e3,
        "data_batch_p50_us": statistics.median(latencies) * 1e6,
        "data_batch_p99_us": latencies[int(len(latencies) * 0.99) - 1] * 1e6,
        "data_batch_max_us": latencies[-1] * 1e6,
        "init_s": init_time,
        "close_s": close_time,
        # per destination, from Logger.overhead(): the mean of its data calls (events, INIT included, apart)
        **{f"{name}_data_us": figures["data"]["us_per_call"] for name, figures in logger.overhead().items()},
    }


def floats(step: int) -> dict[str, float]:
    return {"loss/train": 1.0 / (step + 1), "accuracy": 0.5, "lr": 0.001, "trainer/global_step": step}


def tensors(step: int) -> dict[str, Any]:
    return {f"metric/{index}": on_device((step * 8 + index) / 64) for index in range(8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--step-ms", type=float, default=10.0)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    step = args.step_ms / 1e3
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        server = MlflowServer(Path(tmp, "mlflow-server"))
        server.start()
        proxy = delaying_proxy(server.port, args.latency_ms / 1e3)
        try:
            uri = f"http://127.0.0.1:{proxy.server_address[1]}"
            results = {
                "no destination": run_loop(Logger(State("none"), measure_overhead=True), args.steps, step, 100, floats),
                "4 local destinations": run_loop(Logger(State("local"), destinations(None), measure_overhead=True), args.steps, step, 100,
                                                 floats),
                f"5 destinations, MLflow at +{args.latency_ms:g} ms": run_loop(
                    Logger(State("five"), destinations(uri), measure_overhead=True), args.steps, step, 100, floats),
                "5 destinations, offload_writers": run_loop(
                    Logger(State("offloaded"), destinations(uri), measure_overhead=True, offload_writers=True),
                    args.steps, step, 100, floats),
            }
            for mode, defer in (("8 tensors/step, eager", False), ("8 tensors/step, defer_tensors", True)):
                DeviceTensor.transfers = 0
                logger = Logger(State(f"tensors-{defer}"), destinations(uri), defer_tensors=defer, measure_overhead=True)
                results[mode] = run_loop(logger, args.steps, step, 100, tensors)
                results[mode]["host_transfers"] = DeviceTensor.transfers
        finally:
            proxy.shutdown()
            server.terminate()
    print(f"{args.steps} steps of {args.step_ms:g} ms (sleep), 100 batches per epoch; flush intervals are the "
          f"destinations' defaults (100 batches)")
    for name, figures in results.items():
        print(f"{name}:")
        print("   " + ", ".join(f"{key}={value:.4g}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
