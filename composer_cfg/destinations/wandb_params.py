"""`WandBLogger`'s parameters checked by W&B's own rules: the fields of `wandb.Settings` (the
modes, project names, tags... the installed W&B accepts) and the keyword arguments of
`wandb.init`. W&B is imported when a config is checked."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from composer_cfg.core.errors import ConfigError, suggest

#: WandBLogger's parameters (``wandb.init``'s arguments), by the `wandb.Settings` field that checks them.
SETTINGS_FIELDS = {"mode": "mode", "project": "project", "entity": "entity", "group": "run_group",
                   "name": "run_name", "tags": "run_tags"}


def check_init_params(params: Mapping[str, Any]) -> None:
    """`ConfigError` (its key relative to the node) for the first value W&B would refuse: an
    unknown key of ``init_kwargs`` (or of ``init_params``, its old name), then each run field,
    taken from those keyword arguments when it is there (they win when the run starts), then a
    ``settings`` mapping among them."""
    import wandb

    name = "init_params" if params.get("init_params") else "init_kwargs"
    extra = params.get(name) or {}
    accepted = inspect.signature(wandb.init).parameters
    for argument in extra:
        if argument not in accepted:
            raise ConfigError(f"{name}.{argument}: not an argument of wandb.init{suggest(argument, accepted)}",
                              key=f"{name}.{argument}")
    for argument, field in SETTINGS_FIELDS.items():
        key = f"{name}.{argument}" if argument in extra else argument
        value = extra[argument] if argument in extra else params.get(argument)
        if value is not None:
            _check_settings(key, {field: value})
    settings = extra.get("settings")
    if isinstance(settings, Mapping) and "_target_" not in settings:  # a node is checked as one
        _check_settings(f"{name}.settings", dict(settings), nested=True)


def _check_settings(key: str, fields: dict[str, Any], nested: bool = False) -> None:
    """Build `wandb.Settings` from `fields`; its refusal as a `ConfigError` at `key` (at the
    refused field below it, if `nested`)."""
    import wandb
    from pydantic import ValidationError

    try:
        wandb.Settings(**fields)
    except ValidationError as error:
        detail = error.errors()[0]
        where = ".".join([key, *map(str, detail["loc"])]) if nested else key
        raise ConfigError(f"{where}: W&B refuses {detail['input']!r}: {detail['msg']}", key=where) from None
    except wandb.errors.UsageError as error:
        raise ConfigError(f"{key}: W&B refuses it: {error}", key=key) from None
