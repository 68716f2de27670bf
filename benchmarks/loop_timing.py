"""The timed training loop shared by `bench_loop.py` and `peers.py`: what logging costs a step.

A step (`BusyStep`) keeps its core busy for about `step_seconds` while leaving the interpreter
free for other threads most of the time (hashlib releases the GIL while it hashes), as a host
thread waiting on a device does. A `time.sleep` step (`SleepStep`) lets the core idle, and a
step that streams megabytes through the caches evicts the loop's own data: after either, on
this machine, even a call that does nothing costs 10-15 µs instead of 1.
Everything between the end of one step and the start of the next is logging's cost: the data
call, the events, the flushes they cause, moving the timestamp. The metrics are made before the
clock starts (making them is the model's work, not logging's).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

#: Batches per epoch: an epoch's events fire every this many steps.
BATCHES_PER_EPOCH = 100


class Loop(Protocol):
    """One logging library driven the way its trainer drives it."""

    def start(self) -> None:
        """Start the run (INIT, FIT_START; creating a tracker's run): not a step's cost."""

    def log(self, metrics: dict[str, Any]) -> None:
        """The step's data call."""

    def after(self, step: int, epoch_ends: bool, last: bool) -> None:
        """What the trainer does between this step's data call and the next step: events, flushes."""

    def close(self) -> None:
        """End the run, waiting for what is still being sent."""


class BusyStep:
    """About `seconds` of a busy core with the interpreter free (see the module's docstring):
    SHA-256 of a 32 KiB buffer, over and over (small enough to leave the caches to the loop)."""

    def __init__(self, seconds: float) -> None:
        self._buffer = bytes(32 << 10)
        per_call = min(_timed(lambda: self._hash(1000)) for _ in range(3)) / 1000
        self._calls = max(1, round(seconds / per_call))

    def _hash(self, calls: int) -> None:
        buffer, sha256 = self._buffer, hashlib.sha256
        for _ in range(calls):
            sha256(buffer).digest()

    def __call__(self) -> None:
        self._hash(self._calls)


class SleepStep:
    """`seconds` of sleep: the core idles."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def __call__(self) -> None:
        time.sleep(self._seconds)


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(loop: Loop, steps: int, step: Callable[[], None], metrics: Callable[[int], dict[str, Any]]
            ) -> dict[str, float]:
    """Run `steps` steps of `loop`; the cost of logging per step (also as a percentage of the steps'
    measured mean length) and the latency of its data calls."""
    clock = time.perf_counter
    start = clock()
    loop.start()
    init_time = clock() - start
    gaps, latencies, step_time = [], [], 0.0
    for index in range(steps):
        step_time += _timed(step)
        data = metrics(index)
        gap_start = clock()
        loop.log(data)
        latencies.append(clock() - gap_start)
        loop.after(index, (index + 1) % BATCHES_PER_EPOCH == 0, index == steps - 1)
        gaps.append(clock() - gap_start)
    start = clock()
    loop.close()
    close_time = clock() - start
    latencies.sort()
    gaps.sort()
    per_step = sum(gaps) / steps
    return {
        "logging_ms_per_step": per_step * 1e3,
        "step_ms": step_time / steps * 1e3,
        "overhead_percent": per_step / (step_time / steps) * 100,
        "gap_p99_us": gaps[int(steps * 0.99) - 1] * 1e6,
        "data_p50_us": statistics.median(latencies) * 1e6,
        "data_p99_us": latencies[int(steps * 0.99) - 1] * 1e6,
        "data_max_us": latencies[-1] * 1e6,
        "init_s": init_time,
        "close_s": close_time,
    }


def floats(step: int) -> dict[str, Any]:
    """Four numbers, as a training loop logs them after `.item()`."""
    return {"loss/train": 1.0 / (step + 1), "accuracy": 0.5, "lr": 0.001, "trainer/global_step": step}


def zero_d_tensors(step: int) -> dict[str, Any]:
    """The same four numbers as 0-d CPU tensors, as a loop logs a loss without `.item()`."""
    import torch

    return {key: torch.tensor(float(value)) for key, value in floats(step).items()}
