"""Composer 0.7.1/0.8.0's ``tests/loggers/test_progress_bar_logger.py``, replayed on composer_cfg.

Upstream trains 2 epochs over 100 batches (``RandomClassificationDataset`` of 100 samples, batch
size 1), evaluating one batch after each epoch, with tqdm mocked to count updates and closes.
Here the real tqdm runs: on a terminal (a pseudo-terminal) its live bars are read back; on a
file each bar is one line, written when it closes, whose count shows the updates.
"""

import fcntl
import io
import os
import re
import struct
import termios
import threading

from composer_cfg import Logger, ProgressBarLogger, State, TrainingLoop
from conftest import ranks

MAX_EPOCHS, BATCHES, EVAL_BATCHES = 2, 100, 1


def train(stream, state=None):
    logger = Logger(state or State("run"), ProgressBarLogger(stream=stream))
    loop = TrainingLoop(logger, dataloader_len=BATCHES)
    with logger:
        for _ in loop.epochs(MAX_EPOCHS):
            for _ in loop.batches(BATCHES):
                logger.data_batch({"loss/train": 0.5})
            for _ in loop.evaluate(EVAL_BATCHES):
                logger.data_batch({"metrics/eval/Accuracy": 0.75})


def finished_bars(text):
    """(split, count, total) of every bar line that shows a finished bar."""
    return [(split, int(count), int(total))
            for split, count, total in re.findall(r"Epoch +\d+ (train|val) *: 100%\|[^|]*\| (\d+)/(\d+)", text)]


def test_progress_bar_logger_off_a_terminal():
    stream = io.StringIO()
    train(stream)
    bars = finished_bars(stream.getvalue())
    # one train bar per epoch, updated once per batch; one eval bar per evaluation, once per eval batch
    assert bars.count(("train", BATCHES, BATCHES)) == MAX_EPOCHS
    assert bars.count(("val", EVAL_BATCHES, EVAL_BATCHES)) == MAX_EPOCHS
    assert len(bars) == 2 * MAX_EPOCHS  # each closed once


def test_progress_bar_logger_on_a_terminal():
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    chunks = []

    def read_all():  # drain the terminal as it is written, so a full buffer never blocks the bars
        try:
            while chunk := os.read(leader, 65536):
                chunks.append(chunk)
        except OSError:  # the other side closed
            pass

    reader = threading.Thread(target=read_all)
    reader.start()
    with open(follower, "w", buffering=1, closefd=True) as terminal:
        train(terminal)
    reader.join(10)
    os.close(leader)
    bars = set(finished_bars(b"".join(chunks).decode(errors="replace")))
    assert bars == {("train", BATCHES, BATCHES), ("val", EVAL_BATCHES, EVAL_BATCHES)}


def test_progress_bar_logger_world_size_2_shows_bars_on_local_rank_0_only():
    stream = io.StringIO()
    train(stream, State("run", dist_info=ranks(2, rank=1)))
    assert stream.getvalue() == ""
