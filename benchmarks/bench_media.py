"""What logging an image costs the training thread, against baselines run in the same process.

Run: ``python benchmarks/bench_media.py`` (add ``--quick`` for a fast, noisier run).
Each number is the best of several repeats, in microseconds per image, for a float CHW image
(the form a vision model's batch has) of each size; `Logger.log_images` checks it, scales it to
uint8 HWC and copies it once, then each destination stores it its own way. Baselines: the least
work that keeps the same image (``np.save`` of the converted array into memory), and encoding it
as a PNG with Pillow (what TensorBoard, MLflow and W&B do with it, on their own threads).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import timeit
from collections.abc import Callable

import numpy as np

from composer_cfg import InMemoryLogger, JSONLinesLogger, Logger, State, TensorboardLogger

SIZES = (32, 224)


def best_us(call: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def converted(image: np.ndarray) -> np.ndarray:
    return np.rint(np.moveaxis(image, 0, -1) * 255).astype(np.uint8, order="C")


def npy_in_memory(image: np.ndarray) -> None:
    np.save(io.BytesIO(), converted(image), allow_pickle=False)


def png(image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(converted(image)).save(io.BytesIO(), format="PNG")


def through(destinations: Callable[[], dict], image: np.ndarray, number: int, repeat: int) -> tuple[float, float]:
    """(µs per call on the calling thread, µs per image until every destination has it on disk)."""
    steps = iter(range(10**9))
    logger = Logger(State(f"bench-{os.urandom(4).hex()}"), destinations())
    logger.run_event("init")
    caller = best_us(lambda: logger.log_images(image, name="sample", step=next(steps)), number, repeat)
    logger.close()
    logger = Logger(State(f"bench-{os.urandom(4).hex()}"), destinations())
    logger.run_event("init")

    def all_of_it() -> None:
        for _ in range(number):
            logger.log_images(image, name="sample", step=next(steps))
        logger.flush()

    total = min(timeit.repeat(all_of_it, number=1, repeat=repeat)) / number * 1e6
    logger.close()
    return caller, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    number, repeat = (20, 3) if args.quick else (200, 5)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        os.chdir(directory)
        print(f"{'case':58} " + " ".join(f"{f'{s}x{s}':>18}" for s in SIZES))
        rows: dict[str, list[str]] = {}
        for size in SIZES:
            image = rng.random((3, size, size))
            rows.setdefault("np.save of the uint8 image, in memory (baseline)", []).append(
                f"{best_us(lambda: npy_in_memory(image), number, repeat):18.1f}")
            rows.setdefault("Pillow PNG encoding (baseline)", []).append(
                f"{best_us(lambda: png(image), number, repeat):18.1f}")
            for name, destinations in (("no destination", dict), ("InMemoryLogger", lambda: {"m": InMemoryLogger()}),
                                       ("JSONLinesLogger", lambda: {"jsonl": JSONLinesLogger()}),
                                       ("TensorboardLogger", lambda: {"tb": TensorboardLogger()})):
                caller, total = through(destinations, image, number, repeat)
                rows.setdefault(f"log_images -> {name}: caller", []).append(f"{caller:18.1f}")
                rows.setdefault(f"log_images -> {name}: until flushed", []).append(f"{total:18.1f}")
        for case, cells in rows.items():
            print(f"{case:58} " + " ".join(cells))


if __name__ == "__main__":
    main()
