"""Rank facts of the current process, read when asked (never at import).

Order: an initialised ``torch.distributed`` group; torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``LOCAL_WORLD_SIZE``/``NODE_RANK``; SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``/
``SLURM_NODEID`` (local world size from ``SLURM_NTASKS_PER_NODE``); else a single process.
torch is never imported here: if a process group is initialised, the program imported it already.
A variable that is not a whole number, or a rank outside its world size, is a `ConfigError` naming
the variable, its value and what is allowed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Mapping

from composer_cfg.core.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    source: str = "single process"

    def __post_init__(self) -> None:
        _require_within("rank", f"rank {self.rank}", self.rank, f"world size {self.world_size}", self.world_size)
        _require_within("local_rank", f"local rank {self.local_rank}", self.local_rank,
                        f"local world size {self.local_world_size}", self.local_world_size)

    def template_fields(self) -> dict[str, int]:
        return {
            "rank": self.rank,
            "local_rank": self.local_rank,
            "world_size": self.world_size,
            "local_world_size": self.local_world_size,
            "node_rank": self.node_rank,
        }


_TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK")
_SLURM = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_NODEID")


def current(environ: Mapping[str, str] | None = None) -> DistInfo:
    """The rank facts of this process, from the first source that has them."""
    env = os.environ if environ is None else environ
    group = _process_group()
    if group is not None:
        rank, world_size = group
        for variable, value in (("RANK", rank), ("WORLD_SIZE", world_size)):
            if env.get(variable) and _int(env, variable, 0) != value:
                raise ConfigError(f"{variable}={env[variable]} disagrees with the process group, where it is {value}")
        return _from_env(env, _TORCHRUN, "torch.distributed", rank=rank, world_size=world_size)
    if "RANK" in env or "WORLD_SIZE" in env:
        return _from_env(env, _TORCHRUN, "RANK/WORLD_SIZE environment")
    if "SLURM_PROCID" in env:
        return _from_env(env, _SLURM, "SLURM environment")
    return DistInfo()


def _process_group() -> tuple[int, int] | None:
    torch_dist = sys.modules.get("torch.distributed")
    if torch_dist is None or not torch_dist.is_available() or not torch_dist.is_initialized():
        return None
    return torch_dist.get_rank(), torch_dist.get_world_size()


def _from_env(env: Mapping[str, str], names: tuple[str, ...], source: str, **known: int) -> DistInfo:
    rank_var, world_var, local_var, local_world_var, node_var = names
    rank = known.get("rank", _int(env, rank_var, 0))
    world_size = known.get("world_size", _int(env, world_var, 1, minimum=1))
    local_rank = _int(env, local_var, rank)
    local_world_size = _int(env, local_world_var, world_size, minimum=1)
    node_rank = _int(env, node_var, 0)
    _require_within(rank_var, _shown(env, rank_var, rank), rank, _shown(env, world_var, world_size), world_size)
    _require_within(local_var, _shown(env, local_var, local_rank), local_rank,
                    _shown(env, local_world_var, local_world_size), local_world_size)
    return DistInfo(rank, local_rank, world_size, local_world_size, node_rank, source)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{name}={text!r}: expected a whole number, {minimum} or more", key=name)
    return value


def _shown(env: Mapping[str, str], name: str, value: int) -> str:
    return f"{name}={env[name]}" if env.get(name) else f"{name} (unset: {value})"


def _require_within(name: str, rank: str, value: int, world: str, size: int) -> None:
    """`ConfigError` (its key the variable `name`) unless ``0 <= value < size``; `rank` and
    `world` say where each came from."""
    if not 0 <= value < size:
        raise ConfigError(f"{rank} is outside {world}: a rank must be 0 to {size - 1}", key=name)
