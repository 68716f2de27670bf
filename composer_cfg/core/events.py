"""`Event`: the points of a training loop at which destinations are called."""

from __future__ import annotations

from enum import Enum


class Event(str, Enum):
    """Training events; each value is the name of the `LoggerDestination` hook it runs.

    >>> Event.BATCH_START.is_before_event, Event.BATCH_END.is_after_event, Event.EVAL_BEFORE_FORWARD.canonical_name
    (True, True, 'eval_forward')
    """

    INIT = "init"
    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    AFTER_DATALOADER = "after_dataloader"
    BATCH_START = "batch_start"
    BEFORE_TRAIN_BATCH = "before_train_batch"
    BEFORE_FORWARD = "before_forward"
    AFTER_FORWARD = "after_forward"
    BEFORE_LOSS = "before_loss"
    AFTER_LOSS = "after_loss"
    BEFORE_BACKWARD = "before_backward"
    AFTER_BACKWARD = "after_backward"
    AFTER_TRAIN_BATCH = "after_train_batch"
    BATCH_END = "batch_end"
    BATCH_CHECKPOINT = "batch_checkpoint"
    EPOCH_END = "epoch_end"
    EPOCH_CHECKPOINT = "epoch_checkpoint"
    FIT_END = "fit_end"
    EVAL_START = "eval_start"
    EVAL_BATCH_START = "eval_batch_start"
    EVAL_BEFORE_FORWARD = "eval_before_forward"
    EVAL_AFTER_FORWARD = "eval_after_forward"
    EVAL_BATCH_END = "eval_batch_end"
    EVAL_END = "eval_end"
    PREDICT_START = "predict_start"
    PREDICT_BATCH_START = "predict_batch_start"
    PREDICT_BEFORE_FORWARD = "predict_before_forward"
    PREDICT_AFTER_FORWARD = "predict_after_forward"
    PREDICT_BATCH_END = "predict_batch_end"
    PREDICT_END = "predict_end"

    def __str__(self) -> str:
        return self.value

    @property
    def is_before_event(self) -> bool:
        """Whether it opens a pair (``batch_start``, ``before_loss``...) closed by an "after" event."""
        return self in _BEFORE_EVENTS

    @property
    def is_after_event(self) -> bool:
        """Whether it closes a pair (``batch_end``, ``after_loss``...) opened by a "before" event."""
        return self in _AFTER_EVENTS

    @property
    def canonical_name(self) -> str:
        """The name without its before/after marker: ``epoch_start`` and ``epoch_end`` are ``epoch``."""
        name = self.value
        for marker in ("before_", "after_", "_start", "_end"):
            name = name.replace(marker, "")
        return name

    @property
    def is_eval(self) -> bool:
        """Whether it belongs to the evaluation loop."""
        return self.value.startswith("eval")

    @property
    def is_predict(self) -> bool:
        """Whether it belongs to the prediction loop."""
        return self.value.startswith("predict")


# The pairs, as Composer 0.8 declares them.
_BEFORE_EVENTS = frozenset({
    Event.FIT_START, Event.EPOCH_START, Event.BATCH_START, Event.BEFORE_TRAIN_BATCH, Event.BEFORE_FORWARD,
    Event.BEFORE_LOSS, Event.BEFORE_BACKWARD, Event.EVAL_START, Event.EVAL_BATCH_START, Event.EVAL_BEFORE_FORWARD,
    Event.PREDICT_START, Event.PREDICT_BATCH_START, Event.PREDICT_BEFORE_FORWARD,
})
_AFTER_EVENTS = frozenset({
    Event.EPOCH_END, Event.BATCH_END, Event.AFTER_DATALOADER, Event.AFTER_TRAIN_BATCH, Event.AFTER_FORWARD,
    Event.AFTER_LOSS, Event.AFTER_BACKWARD, Event.EVAL_END, Event.EVAL_BATCH_END, Event.EVAL_AFTER_FORWARD,
    Event.FIT_END, Event.PREDICT_END, Event.PREDICT_BATCH_END, Event.PREDICT_AFTER_FORWARD,
})
