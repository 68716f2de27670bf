"""A destination written against Composer 0.8's `LoggerDestination` runs unchanged on composer_cfg.

`Checkpointer` below is Composer 0.8 code: only its import lines name composer_cfg instead of
``composer.core``, ``composer.loggers`` and ``composer.utils``. It reads ``Time`` values
(``.value``, ``Timestamp.get``), uses the `Event` helpers, overrides ``run_event`` as Composer
callbacks may, and names its files with ``format_name_with_dist_and_time``.
"""

from pathlib import Path
from typing import Any, Dict

from composer_cfg import (
    Event,
    InMemoryLogger,
    Logger,
    LoggerDestination,
    LogLevel,
    ObjectStoreLogger,
    State,
    TimeUnit,
    TrainingLoop,
    format_name_with_dist_and_time,
)


class Checkpointer(LoggerDestination):
    """Every `interval` batches, save a file named from the timestamp and publish it."""

    def __init__(self, folder: str, interval: int = 2) -> None:
        self.folder = folder
        self.interval = interval
        self.pairs: Dict[str, int] = {}
        self.losses: list = []

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event.is_before_event or event.is_after_event:
            self.pairs[event.canonical_name] = self.pairs.get(event.canonical_name, 0) + (
                1 if event.is_before_event else -1)
        super().run_event(event, state, logger)

    def log_data(self, state: State, log_level: LogLevel, data: Dict[str, Any]) -> None:
        if "loss/train" in data:
            self.losses.append((state.timestamp.batch.value, data["loss/train"]))

    def batch_end(self, state: State, logger: Logger) -> None:
        if state.timestamp.batch.value % self.interval != 0:
            return
        name = format_name_with_dist_and_time("{run_name}/ep{epoch}-ba{batch}-rank{rank}.txt", state.run_name,
                                              state.timestamp)
        path = Path(self.folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"weights at {state.timestamp.get(TimeUnit.BATCH).to_timestring()}")
        logger.file_artifact(LogLevel.BATCH, artifact_name=name, file_path=path, overwrite=True)
        logger.data_batch({"checkpoint/epoch": int(state.timestamp.epoch), "checkpoint/batch": state.timestamp.batch})


def test_a_destination_written_for_composer_0_8_runs_unchanged(tmp_path):
    checkpointer, memory = Checkpointer(str(tmp_path / "local")), InMemoryLogger()
    store = ObjectStoreLogger(str(tmp_path / "store"))
    with Logger(State("run"), {"checkpointer": checkpointer, "memory": memory, "store": store}) as logger:
        loop = TrainingLoop(logger)
        logger.run_event(Event.INIT)
        for _ in loop.epochs(2):
            for batch in loop.batches(3):
                logger.data_batch({"loss/train": 1.0 / (batch + 1)})
    assert sorted(p.name for p in (tmp_path / "store/run").iterdir()) == [
        "ep0-ba2-rank0.txt", "ep1-ba4-rank0.txt", "ep1-ba6-rank0.txt"]
    assert (tmp_path / "store/run/ep1-ba6-rank0.txt").read_text() == "weights at 6ba"
    assert [value for _, _, value in memory.data["checkpoint/batch"]] == [2, 4, 6]
    assert checkpointer.losses == [(b, 1.0 / (b + 1)) for b in range(6)]
    # every "before" event the loop fired was closed by its "after" event
    assert checkpointer.pairs == {"fit": 0, "epoch": 0, "batch": 0}
