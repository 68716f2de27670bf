"""An llm-foundry ``loggers:`` block: a mapping of destination names to their keyword arguments,
taken as it is and built as the same destinations.

llm-foundry's YAML says ``loggers: {wandb: {project: p}, tensorboard: {log_dir: tb}}``; each name
picks a class from its registry and the mapping is its keyword arguments. In a config the command,
`build_logger` or `compose_config` composes, each entry becomes ``logger.destinations.<name>``,
``{_target_: <the built-in class>, **arguments}`` (the class's defaults for what is not given,
as foundry builds them), replacing a destination of that name the presets chose. Names:
composer_cfg's own (``file``, ``jsonl``, ``tensorboard``, ``mlflow``, ``wandb``...), and
foundry's ``inmemory`` and ``in_memory_logger`` for ``in_memory``. A problem in it is reported at
its own key path (``loggers.wandb.projct``); change an entry on the command line through the
block (``loggers.wandb.project=p``). A Hydra app of your own calls ``move_foundry_loggers(cfg)``
before ``instantiate_logger(cfg.logger)``.

>>> from omegaconf import OmegaConf
>>> cfg = OmegaConf.create({"logger": {"destinations": {}}, "loggers": {"inmemory": {}}})
>>> move_foundry_loggers(cfg)
([], {'in_memory': 'inmemory'})
>>> OmegaConf.to_container(cfg.logger)
{'destinations': {'in_memory': {'_target_': 'composer_cfg.InMemoryLogger'}}}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from composer_cfg.config.problems import Problem
from composer_cfg.core.errors import suggest
from composer_cfg.destinations.registry import BUILT_IN

KEY = "loggers"
#: llm-foundry's names for composer_cfg's destinations, where they differ.
ALIASES = {"inmemory": "in_memory", "in_memory_logger": "in_memory"}


def move_foundry_loggers(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[list[Problem], dict[str, str]]:
    """Copy `cfg`'s ``loggers:`` block (if any) into ``logger.destinations``: the problems of the
    block itself (a name that is no destination, a value that is not a mapping, a destination the
    command line also changes), and the destinations made from it (name -> its name in the block).
    The block stays where it is (other values may refer to it); its values are read as written,
    their interpolations resolved where they land."""
    if KEY not in cfg:
        return [], {}
    block = OmegaConf.to_container(cfg, resolve=False)[KEY]
    problems: list[Problem] = []
    nodes, given = {}, {}
    if isinstance(block, str) and "${" in block:
        block = None  # an interpolation: the validator says whether it resolves
    elif block is not None and not isinstance(block, dict):
        problems.append(Problem(KEY, f"expected a mapping of destination names to their arguments, got {block!r}"))
        block = None
    for name, arguments in (block or {}).items():
        canonical = ALIASES.get(str(name), str(name))
        target = BUILT_IN.get(canonical)
        changed = [override for override in overrides
                   if re.match(rf"[+~]*logger\.destinations\.{re.escape(canonical)}(\.|=|$)", override)]
        if target is None:
            problems.append(Problem(f"{KEY}.{name}", f"not a composer_cfg destination"
                                                     f"{suggest(str(name), [*BUILT_IN, *ALIASES])}"))
        elif arguments is not None and not isinstance(arguments, dict):
            problems.append(Problem(f"{KEY}.{name}", f"expected a mapping of {target.__name__}'s arguments, "
                                                     f"got {arguments!r}"))
        elif changed:
            problems.append(Problem(f"{KEY}.{name}", f"also changed on the command line ({changed[0]!r}): the "
                                                     f"destination is the block's; override {KEY}.{name}.<key> instead"))
        else:
            nodes[canonical] = {"_target_": f"composer_cfg.{target.__name__}", **(arguments or {})}
            given[canonical] = str(name)
    if nodes:
        with open_dict(cfg):
            if cfg.get("logger") is None:  # logger=none: the block alone
                cfg.logger = {"_target_": "composer_cfg.Logger", "destinations": {}}
            for name, node in nodes.items():
                cfg.logger.destinations[name] = node
    return problems, given


def foundry_key(key: str, given: Mapping[str, str]) -> str:
    """A problem's key path back in the ``loggers:`` block, for a destination made from it."""
    for name, original in given.items():
        prefix = f"logger.destinations.{name}"
        if key == prefix or key.startswith(prefix + "."):
            return f"{KEY}.{original}" + key[len(prefix):]
    return key
