"""Shared fixtures: a destination that records every call, and an isolated working directory."""

from __future__ import annotations

from typing import Any

import pytest

from composer_cfg import LoggerDestination, LogLevel
from composer_cfg.dist import DistInfo


class Recorder(LoggerDestination):
    """Records each call as a tuple, in order."""

    def __init__(self, log_level: LogLevel | None = None) -> None:
        self.log_level = log_level
        self.calls: list[tuple[Any, ...]] = []

    def log_data(self, state, log_level, data):
        self.calls.append(("data", log_level, data))

    def log_file_artifact(self, state, log_level, artifact_name, file_path, *, overwrite):
        self.calls.append(("artifact", log_level, artifact_name, file_path, overwrite))

    def run_event(self, event, state, logger):
        self.calls.append(("event", str(event)))
        super().run_event(event, state, logger)

    def close(self, state, logger):
        self.calls.append(("close",))

    def post_close(self):
        self.calls.append(("post_close",))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test runs in its own directory with no rank variables from the outside."""
    monkeypatch.chdir(tmp_path)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "SLURM_PROCID",
                 "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_NODEID",
                 "COMPOSER_RUN_NAME", "RUN_NAME"):
        monkeypatch.delenv(name, raising=False)


def ranks(world_size: int, rank: int = 0) -> DistInfo:
    return DistInfo(rank=rank, local_rank=rank, world_size=world_size, local_world_size=world_size)


def destination_options() -> list[str]:
    """The options of the packaged logger/destinations group, read from the config tree."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_module("composer_cfg.conf", version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options("logger/destinations"))
