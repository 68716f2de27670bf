"""The built-in destinations. Each imports its back end (tqdm, tensorboardX) only when used."""

from composer_cfg.destinations.file import FileLogger
from composer_cfg.destinations.in_memory import InMemoryLogger
from composer_cfg.destinations.jsonl import JSONLinesLogger
from composer_cfg.destinations.progress_bar import ProgressBarLogger
from composer_cfg.destinations.tensorboard import TensorboardLogger

__all__ = ["FileLogger", "InMemoryLogger", "JSONLinesLogger", "ProgressBarLogger", "TensorboardLogger"]
