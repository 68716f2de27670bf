"""The demo experiment: logistic regression in numpy, logged at every level.

Hyperparameters go out at FIT, loss and accuracy every batch at BATCH, epoch means at EPOCH,
and a checkpoint per epoch is written (atomically), published with `Logger.file_artifact` and
marked with `Event.EPOCH_CHECKPOINT`. A run continued with ``resume=auto`` starts where the
Logger says it does (`Logger.resumed_from`), from the checkpoint of the epoch before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from composer_cfg.config.params import PositiveInt, TimedArtifactTemplate
from composer_cfg.core.events import Event
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.logger import Logger
from composer_cfg.core.loop import TrainingLoop
from composer_cfg.core.state import State
from composer_cfg.core.templates import TIME_FIELDS, Template, literal
from composer_cfg.run.files import replacing


def run_demo(
    logger: Logger,
    epochs: PositiveInt = 3,
    batches_per_epoch: PositiveInt = 16,
    batch_size: PositiveInt = 32,
    features: PositiveInt = 8,
    learning_rate: float = 0.5,
    seed: int = 0,
    checkpoint: TimedArtifactTemplate = "{run_name}/checkpoints/ep{epoch}-rank{rank}.npz",
) -> dict[str, float]:
    """Train on synthetic data; return the last epoch's metrics and write `checkpoint` each epoch.

    Each rank trains on its own shard (seed + rank). `checkpoint` is both the artifact name and
    the local path, under the run's directory (`State.path`: in the command, the Hydra job's). A
    state past epoch 0 continues from the checkpoint its run marked last, with the same results as
    a run that was never interrupted (hyperparameters are logged by the attempt that starts at
    epoch 0).
    """
    import numpy as np

    state = logger.state
    rng = np.random.default_rng(seed + state.rank)
    true_weights = np.random.default_rng(seed).normal(size=features)
    samples = batches_per_epoch * batch_size
    inputs = rng.normal(size=(samples, features))
    labels = (inputs @ true_weights + 0.3 * rng.normal(size=samples) > 0).astype(np.float64)
    weights, bias = np.zeros(features), 0.0
    checkpoint_name = Template(checkpoint, TIME_FIELDS, key="demo.checkpoint")
    done = int(state.timestamp.epoch)
    if done:  # a continued run (`Logger.resumed_from`)
        weights, bias = _restore(checkpoint_name, state)
        for _ in range(done):  # the shuffles of the epochs done, so the next ones are the same
            rng.permutation(samples)
    else:
        logger.data_fit({"hparams/epochs": epochs, "hparams/batch_size": batch_size,
                         "hparams/learning_rate": learning_rate, "hparams/features": features, "hparams/seed": seed})
    loop = TrainingLoop(logger, dataloader_len=batches_per_epoch)
    metrics: dict[str, float] = {}
    for epoch in loop.epochs(epochs):
        order = rng.permutation(samples)
        losses, correct = [], 0
        for index in loop.batches(batches_per_epoch, samples=batch_size):
            batch = order[(index % batches_per_epoch) * batch_size:][:batch_size]
            x, y = inputs[batch], labels[batch]
            probability = 1.0 / (1.0 + np.exp(-(x @ weights + bias)))
            loss = float(-np.mean(y * np.log(probability + 1e-12) + (1 - y) * np.log(1 - probability + 1e-12)))
            hits = int(((probability > 0.5) == (y > 0.5)).sum())
            error = probability - y
            weights -= learning_rate * x.T @ error / len(y)
            bias -= learning_rate * float(error.mean())
            losses.append(loss)
            correct += hits
            logger.data_batch({"loss/train": loss, "metrics/train/accuracy": hits / len(y)})
        metrics = {"loss/epoch": float(np.mean(losses)), "metrics/epoch/accuracy": correct / samples}
        logger.data_epoch({"epoch": epoch, **metrics})
        # named by the point a run continues from, as Composer names an epoch's checkpoint (ep1 after epoch 0)
        after = state.timestamp.to_next_epoch()
        name = checkpoint_name.fill({**state.template_fields(), **after.template_fields()})
        path = state.path(name)
        _save_atomically(path, weights=weights, bias=np.array(bias), epoch=np.array(epoch))
        # overwrite: an attempt killed after saving, before its mark, published this epoch's already
        logger.file_artifact(LogLevel.EPOCH, literal(name), literal(str(path)), overwrite=True)
        logger.run_event(Event.EPOCH_CHECKPOINT)
    return metrics


def _restore(checkpoint_name: Template, state: State) -> tuple[Any, float]:
    """The weights and bias of the checkpoint named by the state's timestamp (see `run_demo`)."""
    import numpy as np

    with np.load(state.path(checkpoint_name.fill(state.template_fields()))) as saved:
        return saved["weights"], float(saved["bias"])


def plot_metrics(logger: Logger) -> Path | None:
    """Plot every metric logged over time (two points or more) against batch into
    ``{run_name}/metrics-rank{rank}.png`` under the run's directory (`State.path`), from the run's
    InMemoryLogger or JSONLinesLogger; the file's absolute path, or None when matplotlib is missing
    or neither logged anything."""
    try:
        import matplotlib  # noqa: F401 - only asking whether it is there
    except ImportError:
        return None
    from composer_cfg.destinations import InMemoryLogger, JSONLinesLogger
    from composer_cfg.run.plot import plot_series, series_from_memory, series_from_records
    from composer_cfg.run.records import read_records

    state = logger.state
    series = {}
    for destination in logger.destinations:
        if isinstance(destination, InMemoryLogger):
            series = series_from_memory(destination, state.rank)
            break
        if isinstance(destination, JSONLinesLogger) and (records_file := destination.output_location()):
            series = series_from_records(read_records(records_file))  # (its absolute path: `filename` is relative)
            break
    over_time = [metric for metric, ranks in series.items() if max(len(b) for b, _ in ranks.values()) > 1]
    if not over_time:
        return None
    output = state.path(f"{state.run_name}/metrics-rank{state.rank}.png")
    return plot_series(series, over_time, output, title=state.run_name)


def _save_atomically(path: Path, **arrays: object) -> None:
    """Write an ``.npz`` under an unpredictable temporary name, then rename: a reader never sees
    half a file, and a link planted at either name is never written through."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as file:
        np.savez(file, **arrays)  # type: ignore[arg-type]
