"""Per-call cost of `Logger.data` against baselines measured in the same process.

Run: ``python benchmarks/bench_logging.py`` (add ``--quick`` for a fast, noisier run).
Every number is the best of several repeats, in microseconds per call, for a 4-key dict.
Ratios compare runs of this one process, so they hold across machines better than times do.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import tempfile
import threading
import time
import timeit
import tracemalloc
from pathlib import Path

from composer_cfg import FileLogger, InMemoryLogger, JSONLinesLogger, Logger, LogLevel, State
from composer_cfg.core.values import normalise  # noqa: F401 - timed by name, in best_us's statements

BATCH = LogLevel.BATCH
DATA = {"loss/train": 0.1234567, "accuracy": 0.875, "lr": 0.001, "trainer/global_step": 12}


def best_us(statement: str, number: int, repeat: int, **names: object) -> float:
    """Best time of `statement` (source, so no call wrapper is timed), in microseconds."""
    timings = timeit.repeat(statement, number=number, repeat=repeat, globals={**globals(), **names})
    return min(timings) / number * 1e6


def raw_write_loop(path: Path, number: int, repeat: int, buffering: int) -> float:
    """The least work that writes the FileLogger's bytes: a hand-specialised format and write."""
    with open(path, "w", buffering=buffering) as file:
        statement = (
            """file.write(f'[BATCH][batch=12]: {{ "loss/train": {d["loss/train"]:.4f}, "accuracy": """
            """{d["accuracy"]:.4f}, "lr": {d["lr"]:.4f}, "trainer/global_step": {d["trainer/global_step"]}, }}\\n')"""
        )
        return best_us(statement, number, repeat, file=file, d=DATA)


def stdlib_logging(path: Path, number: int, repeat: int) -> float:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(levelname)s]: %(message)s"))
    log = logging.getLogger("bench")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        return best_us('log.info("%s", DATA)', number, repeat, log=log)
    finally:
        log.removeHandler(handler)
        handler.close()


def file_logger(directory: Path, number: int, repeat: int, buffer_size: int, **settings: bool) -> float:
    """`settings`: the Logger's (``measure_overhead=True``). ``buffer_size=1`` writes on the calling
    thread; otherwise the call queues for the log's own thread (what is timed is the caller's cost)."""
    state = State("bench")
    destination = FileLogger(
        str(directory / f"file-{buffer_size}-{sorted(settings)}.txt"),
        log_level="batch",
        capture_stdout=False,
        capture_stderr=False,
        buffer_size=buffer_size,
        overwrite=True,
    )
    with Logger(state, destination, **settings) as logger:
        logger.data_batch(DATA)  # open the file outside the timing
        return best_us("logger.data(BATCH, DATA)", number, repeat, logger=logger)


def in_memory_new_timestamps(number: int, repeat: int) -> float:
    """A new timestamp per call, as in a loop that logs once per batch (timestamps made beforehand)."""
    state = State("bench")
    timestamps = [state.timestamp]
    for _ in range(999):
        timestamps.append(timestamps[-1].to_next_batch(samples=32, duration=0.01))
    logger = Logger(state, InMemoryLogger())
    next_timestamp = itertools.cycle(timestamps).__next__
    return best_us(
        "state.timestamp = next_timestamp(); logger.data(BATCH, DATA)",
        number, repeat, state=state, next_timestamp=next_timestamp, logger=logger,
    )


def jsonl_logger(directory: Path, number: int, repeat: int) -> float:
    state = State("bench")
    destination = JSONLinesLogger(str(directory / "metrics.jsonl"), overwrite=True)
    with Logger(state, destination) as logger:
        return best_us("logger.data(BATCH, DATA)", number, repeat, logger=logger)


def in_memory(number: int, repeat: int, **settings: bool) -> float:
    """`settings`: the Logger's (``measure_overhead=True``)."""
    destination = InMemoryLogger()
    return best_us("memory.data(BATCH, DATA)", number, repeat, memory=Logger(State("bench"), destination, **settings))


def threads_file_logger(directory: Path, calls: int, threads: int) -> float:
    """Microseconds per call when `threads` threads share one Logger -> FileLogger (wall time)."""
    destination = FileLogger(str(directory / f"threads-{threads}.txt"), log_level="batch", capture_stdout=False,
                             capture_stderr=False, buffer_size=-1, overwrite=True)
    with Logger(State("bench"), destination) as logger:
        logger.data_batch(DATA)
        per_thread = calls // threads

        def work() -> None:
            for _ in range(per_thread):
                logger.data(BATCH, DATA)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return (time.perf_counter() - started) / (per_thread * threads) * 1e6


def bytes_per_scalar(calls: int) -> float:
    state = State("bench")
    memory = InMemoryLogger()
    logger = Logger(state, memory)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for batch in range(calls):
        state.timestamp = state.timestamp.to_next_batch(samples=32)
        logger.data_batch({"loss/train": batch * 0.001, "accuracy": 0.5, "lr": 0.001, "trainer/global_step": batch})
    state.timestamp = None  # the loop's own timestamp is not the logger's memory
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / (calls * len(DATA))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    args = parser.parse_args()
    number, repeat = (20_000, 3) if args.quick else (200_000, 7)

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        nothing = Logger(State("bench"))
        filtered = Logger(State("bench"), [InMemoryLogger(log_level="fit") for _ in range(3)])
        memory = Logger(State("bench"), InMemoryLogger())
        rows = {
            "Logger.data, 0 destinations": best_us("nothing.data(BATCH, DATA)", number, repeat, nothing=nothing),
            "Logger.data, 3 destinations filtering BATCH": best_us(
                "filtered.data(BATCH, DATA)", number, repeat, filtered=filtered
            ),
            "values.normalise (the flat, plain dict of every call)": best_us("normalise(DATA)", number, repeat),
            "Logger.data -> InMemoryLogger, same timestamp": best_us(
                "memory.data(BATCH, DATA)", number, repeat, memory=memory
            ),
            "  same (InMemoryLogger), measure_overhead=True": in_memory(number, repeat, measure_overhead=True),
            "Logger.data -> InMemoryLogger, new timestamp": in_memory_new_timestamps(number, repeat),
            "raw write loop (default buffering)": raw_write_loop(directory / "raw.txt", number, repeat, -1),
            "Logger.data -> FileLogger (buffer_size=-1: queued for its thread)": file_logger(directory, number,
                                                                                             repeat, -1),
            "  same (FileLogger), measure_overhead=True": file_logger(directory, number, repeat, -1,
                                                                      measure_overhead=True),
            "  same, 4 threads sharing the Logger (wall time per call)": threads_file_logger(directory, number, 4),
            "raw write loop (line buffered)": raw_write_loop(directory / "raw1.txt", number, repeat, 1),
            "Logger.data -> FileLogger (buffer_size=1, the default)": file_logger(directory, number, repeat, 1),
            "Logger.data -> JSONLinesLogger (flush_interval=100, the default)": jsonl_logger(directory, number, repeat),
            "stdlib logging.FileHandler": stdlib_logging(directory / "std.txt", number, repeat),
        }
    width = max(map(len, rows))
    for name, micros in rows.items():
        print(f"{name:<{width}}  {micros:8.3f} us")
    print()
    print(f"FileLogger / raw write loop, default buffering: "
          f"{rows['Logger.data -> FileLogger (buffer_size=-1: queued for its thread)'] / rows['raw write loop (default buffering)']:.2f}x")
    print(f"FileLogger / raw write loop, line buffered:     "
          f"{rows['Logger.data -> FileLogger (buffer_size=1, the default)'] / rows['raw write loop (line buffered)']:.2f}x")
    print(f"FileLogger (default) / stdlib logging:          "
          f"{rows['Logger.data -> FileLogger (buffer_size=1, the default)'] / rows['stdlib logging.FileHandler']:.2f}x")
    print(f"JSONLinesLogger / FileLogger (default):         "
          f"{rows['Logger.data -> JSONLinesLogger (flush_interval=100, the default)'] / rows['Logger.data -> FileLogger (buffer_size=1, the default)']:.2f}x")
    print(f"InMemoryLogger bytes per scalar:                {bytes_per_scalar(50_000 if args.quick else 200_000):.1f}")


if __name__ == "__main__":
    main()
