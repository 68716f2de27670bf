"""Data-parallel training whose dashboard shows every rank: the mean loss, the tokens of all ranks,
the slowest step and the rank that took it, with one gather per reduction barrier.

    torchrun --nproc_per_node=2 examples/distributed/train.py +logger/destinations=jsonl

Extra arguments are overrides of composer_cfg's config (``logger.reduce_every=4``...).
"""

from __future__ import annotations

import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from composer_cfg import Event, TrainingLoop, build_logger

REDUCE = "logger.reduce={loss:mean,tokens:sum,step_seconds:max}"


def main(overrides: list[str]) -> None:
    dist.init_process_group("gloo")  # first: the logger's reduction gathers over this run's ranks
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
    logger = build_logger(overrides=["run_name=ddp", REDUCE, *overrides])
    loop = TrainingLoop(logger, dataloader_len=8)
    with logger:
        for _ in loop.epochs(2):
            for batch in loop.batches(8, samples=16):
                started = time.perf_counter()
                inputs = torch.randn(16, 4, generator=data)
                targets = inputs.sum(dim=1, keepdim=True) * (1 + rank)
                loss = torch.nn.functional.mse_loss(model(inputs), targets)
                optimizer.zero_grad()
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e9)
                optimizer.step()
                # Each rank logs its own values; nothing here waits for the other ranks.
                logger.data_batch({"loss": loss.detach(), "tokens": inputs.numel(), "grad_norm": grad_norm,
                                   "step_seconds": time.perf_counter() - started})
            logger.run_event(Event.EPOCH_CHECKPOINT)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
