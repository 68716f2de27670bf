"""The built-in destinations, by the name their config file has under ``logger/destinations/``."""

from __future__ import annotations

from composer_cfg.compat.destination import LoggerDestination
from composer_cfg.destinations.file import FileLogger
from composer_cfg.destinations.in_memory import InMemoryLogger
from composer_cfg.destinations.jsonl import JSONLinesLogger
from composer_cfg.destinations.mlflow import MLFlowLogger
from composer_cfg.destinations.object_store import ObjectStoreLogger
from composer_cfg.destinations.progress_bar import ProgressBarLogger
from composer_cfg.destinations.tensorboard import TensorboardLogger
from composer_cfg.destinations.wandb import WandBLogger

BUILT_IN: dict[str, type[LoggerDestination]] = {
    "file": FileLogger,
    "in_memory": InMemoryLogger,
    "progress_bar": ProgressBarLogger,
    "jsonl": JSONLinesLogger,
    "tensorboard": TensorboardLogger,
    "mlflow": MLFlowLogger,
    "wandb": WandBLogger,
    "object_store": ObjectStoreLogger,
}
