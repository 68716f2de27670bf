"""`Killer`: a destination that sends its own process a signal at a chosen event and batch, so a
test can end a run at an exact point (the real signal, through the real handlers)."""

import os

from composer_cfg import Event, LoggerDestination


class Killer(LoggerDestination):
    def __init__(self, at_batch: int, event: str = "batch_end", signum: int = 9, rank: int | None = None) -> None:
        self.at_batch, self.event, self.signum, self.rank = at_batch, Event(event), signum, rank

    def run_event(self, event, state, logger) -> None:
        if (Event(event) is self.event and int(state.timestamp.batch) == self.at_batch
                and self.rank in (None, state.rank)):
            os.kill(os.getpid(), self.signum)
