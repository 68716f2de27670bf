"""The built-in destinations."""

from composer_cfg.destinations.file import FileLogger
from composer_cfg.destinations.in_memory import InMemoryLogger

__all__ = ["FileLogger", "InMemoryLogger"]
