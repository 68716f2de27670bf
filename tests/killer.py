"""`Killer`: a destination that sends its own process a signal at a chosen event and batch, so a
test can end a run at an exact point (the real signal, through the real handlers).

With `inside`, the signal comes later, inside the checkpoint that follows the chosen event:
``"mark"``, just before the run's mark is written (everything is durable, the trackers' data sealed
and not yet sent); ``"delivery"``, once the mark is written, after MLflow was sent half of what
its channel held for that checkpoint (the rest never sent).
"""

import os

from composer_cfg import Event, LoggerDestination
from composer_cfg.destinations.mlflow import MLflowSink
from composer_cfg.run.run_record import RunRecord

INSIDE = (None, "mark", "delivery")


class Killer(LoggerDestination):
    def __init__(self, at_batch: int, event: str = "batch_end", signum: int = 9, rank: int | None = None,
                 inside: str | None = None) -> None:
        if inside not in INSIDE:
            raise ValueError(f"inside: expected one of {INSIDE}, got {inside!r}")
        self.at_batch, self.event, self.signum, self.rank, self.inside = at_batch, Event(event), signum, rank, inside

    def run_event(self, event, state, logger) -> None:
        if (Event(event) is self.event and int(state.timestamp.batch) == self.at_batch
                and self.rank in (None, state.rank)):
            if self.inside is None:
                self._kill()
            else:
                self._kill_inside_the_next_checkpoint()

    def _kill(self) -> None:
        os.kill(os.getpid(), self.signum)

    def _kill_inside_the_next_checkpoint(self) -> None:
        mark, write = RunRecord.checkpoint, MLflowSink.write

        def half_then_kill(sink, records):
            write(sink, records[:max(1, len(records) // 2)])
            self._kill()

        def checkpoint(record, *args, **kwargs):
            if self.inside == "mark":
                self._kill()
            mark(record, *args, **kwargs)
            MLflowSink.write = half_then_kill

        RunRecord.checkpoint = checkpoint
