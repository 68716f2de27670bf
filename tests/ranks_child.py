"""One rank of a run with `reduce`, launched by test_reduce (torchrun, or one process per rank).

It logs values that differ by rank and batch, writes what it logged (``raw-rank<r>.json``), and
counts every collective call the Python API makes on the logger's group and on the training's
(``counts-rank<r>.json``, with the logger's report and the host copies of its device tensors).
Options, as JSON in argv[1]: epochs, batches, overrides, stop_key_after (rank 1 stops logging
``loss`` from that batch), die_at / stall_at (rank 1 exits or sleeps `stall_seconds` at that batch),
flush_at (rank 0 alone calls ``logger.flush()`` at that batch), sleep (seconds per batch), system_every
(the machine's metrics every that many seconds; each sample written down with its tick), raise_at
(rank 0 raises there), train_collective (an all-reduce of the training's own per batch, as DDP's),
burst (that many calls at batch 0 before the loop, with no event, rank 0 logging one more record
every 100, then a flush), destroy_first (end the process group before closing the logger),
late_close (rank 1 sleeps that long, with a cue file, before closing), lonely (rank 0 alone builds
and starts one more Logger with reduce, after the run).
"""

import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.distributed_c10d as c10d

sys.path.insert(0, str(Path(__file__).parent))
from counting_tensor import DeviceTensor, on_device  # noqa: E402

from composer_cfg import Event, Logger, State, TrainingLoop, build_logger  # noqa: E402
from composer_cfg.runtime.system_metrics import SystemMetrics  # noqa: E402

OPTIONS = json.loads(sys.argv[1])
COLLECTIVES = ("all_gather", "gather", "all_reduce", "broadcast", "reduce", "barrier", "scatter", "all_to_all",
               "reduce_scatter", "all_gather_into_tensor", "reduce_scatter_tensor", "send", "recv", "isend",
               "irecv", "monitored_barrier")
counts = {"logger": 0, "training": 0}
depth: list = []
raw: list = []


def counting(function):
    """`function`, counting the calls not made from inside another counted one (a tensor subclass
    dispatches a collective to itself once more), by group: the logger's or the training's."""

    def call(*args, **kwargs):
        group = kwargs.get("group")
        if not depth:
            counts["training" if group is None or group is c10d.GroupMember.WORLD else "logger"] += 1
        depth.append(None)
        try:
            return function(*args, **kwargs)
        finally:
            depth.pop()

    return call


for name in COLLECTIVES:  # torch.distributed's names and the module's own (what torch calls inside)
    if hasattr(c10d, name):
        counted = counting(getattr(c10d, name))
        setattr(c10d, name, counted)
        setattr(dist, name, counted)

original_sample = SystemMetrics.sample


def recorded_sample(self):
    sample = original_sample(self)
    raw.append([["tick", round(time.time() / self.every_seconds)], "BATCH", sample])
    return sample


SystemMetrics.sample = recorded_sample


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    system = [f"logger.system_metrics={{every_seconds:{OPTIONS['system_every']}}}"] if "system_every" in OPTIONS else []
    logger = build_logger(overrides=["run_name=ranks", *system, *OPTIONS.get("overrides", [])])
    at_init = dict(counts)
    loop = TrainingLoop(logger, dataloader_len=OPTIONS["batches"])
    peeks: list = []
    for call in range(OPTIONS.get("burst", 0)):
        logger.data_batch({"loss": float(call + 1000 * rank)})
        if rank == 0 and call % 100 == 0:
            logger.data_batch({"debug": call})
    if "burst" in OPTIONS:
        logger.flush()
    for epoch in loop.epochs(OPTIONS["epochs"]):
        for batch in loop.batches(OPTIONS["batches"]):
            if rank == 1 and batch == OPTIONS.get("die_at"):
                os._exit(3)
            if rank == 1 and batch == OPTIONS.get("stall_at"):
                Path("stalling").touch()  # the test's cue: rank 0 is at its next barrier moments later
                time.sleep(OPTIONS["stall_seconds"])
            if batch in (2, 5):  # what rank 0's InMemoryLogger shows before and after the exchange at batch 4
                peeks.append(logger.destinations["in_memory"].most_recent_values.get("tokens"))
            if rank == 0 and batch == OPTIONS.get("flush_at"):
                logger.flush()
            if rank == 0 and batch == OPTIONS.get("raise_at"):
                raise RuntimeError("this rank fails")
            if OPTIONS.get("train_collective"):
                dist.all_reduce(torch.ones(1))
            time.sleep(OPTIONS.get("sleep", 0))
            values = {
                "loss": float(torch.tensor(1.0 / (batch + 1) + 0.25 * rank, dtype=torch.float32)),
                "tokens": 10 * (rank + 1) + batch,
                "grad_norm": float((batch * 7 + rank * 3) % 5),
                "lr": 0.1 * (rank + 1),
            }
            if rank == 1 and batch >= OPTIONS.get("stop_key_after", 10**9):
                del values["loss"]
            raw.append([batch, "BATCH", dict(values)])
            if "loss" in values:  # a device tensor: it crosses to the host at a barrier
                values["loss"] = on_device(values["loss"])
            logger.data_batch(values)
        raw.append([int(logger.state.timestamp.batch), "EPOCH", {"eval/acc": 0.5 + 0.1 * rank + 0.01 * epoch}])
        logger.data_epoch(raw[-1][2])
        logger.run_event(Event.EPOCH_CHECKPOINT)
    logger.data_fit({"tokens": 1000 * (rank + 1)})  # after fit_end's exchange: the close exchange's
    if OPTIONS.get("destroy_first"):
        dist.destroy_process_group()
    if rank == 1 and "late_close" in OPTIONS:
        Path("closing").touch()
        time.sleep(OPTIONS["late_close"])
    logger.close()
    if rank == 0 and OPTIONS.get("lonely"):
        lonely = Logger(State("lonely"), reduce={"tokens": "sum"}, reduce_timeout=2)
        lonely.run_event(Event.INIT)
        lonely.close()
    Path(f"raw-rank{rank}.json").write_text(json.dumps(raw))
    Path(f"counts-rank{rank}.json").write_text(json.dumps({
        "at_init": at_init, "end": counts, "report": logger.report().get("reduce"),
        "transfers": DeviceTensor.transfers, "world": world, "peeks": peeks}))
    if dist.is_initialized():
        dist.destroy_process_group()


main()
