"""What combining values across ranks costs a training loop: `reduce`, against a per-call reduction
(Lightning's ``self.log(..., sync_dist=True)``: an all-reduce and a host copy per logged value) and
against no reduction, in the same run.

Run: ``python benchmarks/bench_reduce.py`` (``--steps 300`` for a faster look). Two ranks, forked
here, over gloo on loopback. Each step logs ``loss`` and ``grad_norm`` as device tensors (the
tests' `DeviceTensor`: a CPU tensor that counts its copies to the host) and ``tokens`` as an int,
with events in Composer's order, 100 batches per epoch, to an InMemoryLogger and a JSON Lines file.
Per step: the collective calls made at torch.distributed's API, the host copies, and the wall time
of the loop (its steps do nothing else), best of 3; rank 0's figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.distributed_c10d as c10d

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from counting_tensor import DeviceTensor, on_device  # noqa: E402 - the tests' helpers

from composer_cfg import InMemoryLogger, JSONLinesLogger, Logger, State, TrainingLoop  # noqa: E402

COLLECTIVES = ("all_gather", "gather", "all_reduce", "broadcast", "reduce", "barrier")
calls = {"count": 0, "depth": 0}


def counting(function):
    """`function`, counting the calls not made from inside another counted one (a tensor subclass
    dispatches a collective to itself once more)."""

    def call(*args, **kwargs):
        calls["count"] += calls["depth"] == 0
        calls["depth"] += 1
        try:
            return function(*args, **kwargs)
        finally:
            calls["depth"] -= 1

    return call


def per_call_reduction(values: dict) -> dict:
    """What ``sync_dist=True`` does with each value: all-reduce it, then read it on the host."""
    reduced = {}
    for key, value in values.items():
        tensor = value.clone() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if key == "grad_norm" else dist.ReduceOp.SUM)
        if key == "loss":
            tensor = tensor / dist.get_world_size()
        reduced[key] = tensor.item()
    return reduced


def run_case(case: str, steps: int, directory: Path) -> dict:
    rank = dist.get_rank()
    reduce = {"loss": "mean", "tokens": "sum", "grad_norm": "max"} if case.startswith("reduce") else None
    logger = Logger(State(f"bench-{case.replace(' ', '-')}-{time.monotonic_ns()}"),
                    {"memory": InMemoryLogger(), "jsonl": JSONLinesLogger(filename=str(directory / "{run_name}-{rank}.jsonl"))},
                    reduce=reduce, reduce_every=100 if case == "reduce 100" else 10)
    logger.run_event("init")
    dist.barrier()
    DeviceTensor.transfers, calls["count"] = 0, 0
    started = time.perf_counter()
    loop = TrainingLoop(logger, dataloader_len=100)
    for _ in loop.epochs(max(1, steps // 100)):
        for batch in loop.batches(100):
            values = {"loss": on_device(1.0 / (batch + 1) + rank), "tokens": 512, "grad_norm": on_device(0.5 + rank)}
            logger.data_batch(per_call_reduction(values) if case == "per call" else values)
    logger.close()
    elapsed = time.perf_counter() - started
    done = max(1, steps // 100) * 100
    return {"ms per step": elapsed / done * 1e3, "collectives per step": calls["count"] / done,
            "host copies per step": DeviceTensor.transfers / done}


def rank_main(rank: int, store: str, steps: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    for name in COLLECTIVES:  # torch.distributed's names and the module's own (what torch calls inside)
        counted = counting(getattr(c10d, name))
        setattr(c10d, name, counted)
        setattr(dist, name, counted)
    results: dict = {}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(3):
            for case in ("none", "reduce", "reduce 100", "per call"):
                figures = run_case(case, steps, Path(directory))
                best = results.get(case)
                if best is None or figures["ms per step"] < best["ms per step"]:
                    results[case] = figures
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store, out = str(Path(directory) / "store"), str(Path(directory) / "results.json")
        context = multiprocessing.get_context("fork")
        ranks = [context.Process(target=rank_main, args=(rank, store, args.steps, out)) for rank in range(2)]
        for process in ranks:
            process.start()
        for process in ranks:
            process.join()
        results = json.loads(Path(out).read_text())
    print("| case | ms per step | collective calls per step | host copies per step |")
    print("|---|---:|---:|---:|")
    names = {"none": "no reduction (each rank its own values)", "reduce": "`reduce` (3 keys, `reduce_every=10`, the default)",
             "reduce 100": "`reduce` (3 keys, `reduce_every=100`)", "per call": "per-call reduction (`sync_dist=True` style)"}
    for case, figures in results.items():
        print(f"| {names[case]} | {figures['ms per step']:.3f} | {figures['collectives per step']:.3f} | "
              f"{figures['host copies per step']:.3f} |")


if __name__ == "__main__":
    main()
