"""`TrainingLoop`: fire training events in Composer's order around a plain Python loop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

from composer_cfg.core.events import Event
from composer_cfg.core.logger import Logger
from composer_cfg.core.timestamp import Timestamp


class TrainingLoop:
    """Drives a `Logger`'s events and the state's timestamp for a loop of epochs and batches.

    >>> from composer_cfg import InMemoryLogger, Logger, State, Timestamp
    >>> logger = Logger(State("demo"), InMemoryLogger())
    >>> loop = TrainingLoop(logger)
    >>> for epoch in loop.epochs(2):
    ...     for batch in loop.batches(3, samples=8):
    ...         logger.data_batch({"loss": 1.0 / (batch + 1)})
    ...     logger.data_epoch({"epoch": epoch})
    >>> logger.state.timestamp.epoch, logger.state.timestamp.batch, logger.state.timestamp.sample
    (2, 6, 48)

    Order of events, as in Composer's trainer: ``fit_start``; per epoch ``epoch_start``, per
    batch ``batch_start``, the body, the timestamp moves to the next batch, ``batch_end``; after
    the batches the timestamp moves to the next epoch and ``epoch_end`` fires; ``fit_end`` last.
    Data logged in a body sees the timestamp of the batch or epoch in progress.

    ``epochs(n)`` counts in all, as Composer's ``max_duration`` does: it runs the epochs from the
    state's timestamp up to `n`. The first ``batches(n)`` of an epoch the timestamp is inside of
    (a continued run's) runs the batches of it not done yet; any other runs `n`. A checkpoint event
    fired in a body marks the point after that body (`State.after_body`). A run continued with
    ``resume=auto`` starts at its last checkpoint (`Logger.resumed_from`), so the same loop
    finishes the run instead of running it again:

    >>> state = State("demo", timestamp=Timestamp(epoch=1, batch=4, batch_in_epoch=1))  # resumed
    >>> loop = TrainingLoop(Logger(state, InMemoryLogger()))
    >>> [(epoch, list(loop.batches(3))) for epoch in loop.epochs(2)]
    [(1, [4, 5])]
    """

    def __init__(self, logger: Logger, dataloader_len: int | None = None) -> None:
        """`dataloader_len`: batches per epoch, known before the first epoch starts (bars use it)."""
        self.logger = logger
        self.state = logger.state
        if dataloader_len is not None:
            self.state.dataloader_len = dataloader_len
        self._done_in_epoch = self.state.timestamp.batch_in_epoch  # of a continued run's epoch in progress

    def epochs(self, count: int) -> Iterator[int]:
        """Yield the numbers (0-based) of the epochs from the state's timestamp up to `count`."""
        fire = self.logger.run_event
        fire(Event.FIT_START)
        state = self.state
        for _ in range(max(0, count - state.timestamp.epoch)):
            fire(Event.EPOCH_START)
            self._done_in_epoch = state.timestamp.batch_in_epoch
            state.after_body = Timestamp.to_next_epoch
            try:
                yield state.timestamp.epoch
            finally:  # also when the caller leaves the loop
                state.after_body = None
            state.timestamp = state.timestamp.to_next_epoch()
            fire(Event.EPOCH_END)
        fire(Event.FIT_END)

    def evaluate(self, count: int) -> Iterator[int]:
        """Yield `count` evaluation batch numbers (0-based), between ``eval_start`` and ``eval_end``.

        Per batch: ``eval_batch_start``, the body, ``eval_after_forward``, ``eval_batch_end``.
        The training timestamp does not move.
        """
        fire = self.logger.run_event
        self.state.eval_dataloader_len = count
        fire(Event.EVAL_START)
        for index in range(count):
            fire(Event.EVAL_BATCH_START)
            yield index
            fire(Event.EVAL_AFTER_FORWARD)
            fire(Event.EVAL_BATCH_END)
        fire(Event.EVAL_END)

    def batches(self, count: int, samples: int = 0, tokens: int = 0) -> Iterator[int]:
        """Yield `count` batch numbers (global, 0-based), less those of a continued run's epoch
        done before it stopped; each batch adds `samples` and `tokens`."""
        fire, state = self.logger.run_event, self.state
        state.dataloader_len = count
        done, self._done_in_epoch = self._done_in_epoch, 0
        after_batch, after_batches = partial(Timestamp.to_next_batch, samples=samples, tokens=tokens), state.after_body
        for _ in range(max(0, count - done)):
            fire(Event.BATCH_START)
            started = time.perf_counter()
            state.after_body = after_batch
            try:
                yield state.timestamp.batch
            finally:  # also when the caller leaves the loop: the epoch's body again
                state.after_body = after_batches
            state.timestamp = state.timestamp.to_next_batch(
                samples=samples, tokens=tokens, duration=time.perf_counter() - started
            )
            fire(Event.BATCH_END)
