"""composer_cfg: the 2022 Composer logger API, with destinations declared in Hydra configs.

>>> from composer_cfg import FileLogger, InMemoryLogger, Logger, State
>>> logger = Logger(State("my_run"), {"memory": InMemoryLogger()})
>>> logger.data_batch({"loss/train": 0.25})

`build_logger`, `compose_config`, `instantiate_logger` and `hydra_main` (the Hydra layer) are
imported on first use, so ``import composer_cfg`` stays light.
"""

from __future__ import annotations

from typing import Any

from composer_cfg.compat.destination import LoggerDestination
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.events import Event
from composer_cfg.core.flush_schedule import FlushSchedule
from composer_cfg.core.formatting import format_log_data_value
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.logger import Logger
from composer_cfg.core.loop import TrainingLoop
from composer_cfg.core.media import MediaError
from composer_cfg.core.record import Kind, Record
from composer_cfg.core.sink import DeliveryPolicy, KeyedSink, Sink, SinkContext
from composer_cfg.core.state import State
from composer_cfg.core.status import Killed, RunStatus
from composer_cfg.core.templates import (
    FORMAT_NAME_WITH_DIST_AND_TIME_TABLE,
    FORMAT_NAME_WITH_DIST_TABLE,
    format_name_with_dist,
    format_name_with_dist_and_time,
)
from composer_cfg.core.time_value import Time, TimeUnit
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.destinations import (
    FileLogger,
    InMemoryLogger,
    JSONLinesLogger,
    MLFlowLogger,
    ObjectStoreLogger,
    ProgressBarLogger,
    TensorboardLogger,
    WandBLogger,
)
from composer_cfg.runtime.exit_hooks import close_at_exit

__version__ = "0.1.0"

_LAZY = {
    "build_logger": "composer_cfg.config.build",
    "compose_config": "composer_cfg.config.build",
    "hydra_main": "composer_cfg.config.app_main",
    "instantiate_logger": "composer_cfg.config.build",
}

__all__ = [
    "FORMAT_NAME_WITH_DIST_AND_TIME_TABLE",
    "FORMAT_NAME_WITH_DIST_TABLE",
    "ConfigError",
    "DeliveryPolicy",
    "Event",
    "MediaError",
    "FileLogger",
    "FlushSchedule",
    "InMemoryLogger",
    "JSONLinesLogger",
    "KeyedSink",
    "Kind",
    "Killed",
    "LogLevel",
    "Logger",
    "LoggerDestination",
    "MLFlowLogger",
    "ObjectStoreLogger",
    "ProgressBarLogger",
    "Record",
    "RunStatus",
    "Sink",
    "SinkContext",
    "State",
    "TensorboardLogger",
    "Time",
    "TimeUnit",
    "Timestamp",
    "TrainingLoop",
    "WandBLogger",
    "build_logger",
    "close_at_exit",
    "compose_config",
    "format_log_data_value",
    "format_name_with_dist",
    "format_name_with_dist_and_time",
    "hydra_main",
    "instantiate_logger",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'composer_cfg' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
