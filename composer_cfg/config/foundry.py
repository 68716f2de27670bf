"""An llm-foundry ``loggers:`` block: a mapping of destination names to their keyword arguments,
taken as it is and built as the same destinations.

llm-foundry's YAML says ``loggers: {wandb: {project: p}, tensorboard: {log_dir: tb}}``; each name
picks a class from its registry and the mapping is its keyword arguments. In a composed config
(the command, `build_logger`, `compose_config`) such a block becomes entries of
``logger.destinations`` of the same names, each ``{_target_: <the built-in class>, **arguments}``
(the class's defaults for what is not given, as foundry builds them), replacing a destination of
the same name the presets chose. Names: composer_cfg's own (``file``, ``jsonl``, ``tensorboard``,
``mlflow``, ``wandb``...) and foundry's ``inmemory`` / ``in_memory_logger``. A problem in it is
reported at its own key path (``loggers.wandb.projct``).

>>> from omegaconf import OmegaConf
>>> cfg = OmegaConf.create({"logger": {"destinations": {}}, "loggers": {"inmemory": {}}})
>>> move_foundry_loggers(cfg)
([], ('inmemory',))
>>> OmegaConf.to_container(cfg)
{'logger': {'destinations': {'inmemory': {'_target_': 'composer_cfg.InMemoryLogger'}}}}
"""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf, open_dict

from composer_cfg.config.problems import Problem
from composer_cfg.core.errors import suggest
from composer_cfg.destinations.registry import BUILT_IN

KEY = "loggers"
#: llm-foundry's names for composer_cfg's destinations, where they differ.
ALIASES = {"inmemory": "in_memory", "in_memory_logger": "in_memory"}


def move_foundry_loggers(cfg: DictConfig) -> tuple[list[Problem], tuple[str, ...]]:
    """Move `cfg`'s ``loggers:`` block (if any) into ``logger.destinations``: the problems of the
    block itself (a name that is no destination, a value that is not a mapping), and the names moved."""
    if KEY not in cfg:
        return [], ()
    block = cfg.get(KEY)
    problems: list[Problem] = []
    nodes = {}
    if block is not None and not isinstance(block, Mapping):
        problems.append(Problem(KEY, f"expected a mapping of destination names to their arguments, got "
                                     f"{OmegaConf.to_container(block) if OmegaConf.is_config(block) else block!r}"))
        block = None
    for name, arguments in (block or {}).items():
        target = BUILT_IN.get(ALIASES.get(str(name), str(name)))
        if target is None:
            problems.append(Problem(f"{KEY}.{name}", f"not a composer_cfg destination"
                                                     f"{suggest(str(name), [*BUILT_IN, *ALIASES])}"))
        elif arguments is not None and not isinstance(arguments, Mapping):
            problems.append(Problem(f"{KEY}.{name}", f"expected a mapping of {target.__name__}'s arguments, "
                                                     f"got {arguments!r}"))
        else:
            node = OmegaConf.create({"_target_": f"composer_cfg.{target.__name__}"})
            nodes[str(name)] = OmegaConf.merge(node, arguments or {})
    with open_dict(cfg):
        del cfg[KEY]
        if nodes:
            if cfg.get("logger") is None:  # logger=none: the block alone
                cfg.logger = {"_target_": "composer_cfg.Logger", "destinations": {}}
            for name, node in nodes.items():
                cfg.logger.destinations[name] = node
    return problems, tuple(nodes)


def foundry_key(key: str, names: tuple[str, ...]) -> str:
    """A problem's key path back in the ``loggers:`` block, for a destination that came from it."""
    for name in names:
        prefix = f"logger.destinations.{name}"
        if key == prefix or key.startswith(prefix + "."):
            return f"{KEY}.{name}" + key[len(prefix):]
    return key
