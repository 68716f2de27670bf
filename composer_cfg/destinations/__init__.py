"""The built-in destinations. Each imports its back end (tqdm, tensorboardX, mlflow, wandb,
fsspec's remote file systems) only when it is used."""

from composer_cfg.destinations.file import FileLogger
from composer_cfg.destinations.in_memory import InMemoryLogger
from composer_cfg.destinations.jsonl import JSONLinesLogger
from composer_cfg.destinations.mlflow import MLFlowLogger
from composer_cfg.destinations.object_store import ObjectStoreLogger
from composer_cfg.destinations.progress_bar import ProgressBarLogger
from composer_cfg.destinations.tensorboard import TensorboardLogger
from composer_cfg.destinations.wandb import WandBLogger

__all__ = [
    "FileLogger",
    "InMemoryLogger",
    "JSONLinesLogger",
    "MLFlowLogger",
    "ObjectStoreLogger",
    "ProgressBarLogger",
    "TensorboardLogger",
    "WandBLogger",
]
