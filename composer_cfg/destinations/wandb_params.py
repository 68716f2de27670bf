"""`WandBLogger`'s parameters checked by W&B's own rules: the fields of `wandb.Settings` (the
modes, project names, tags... the installed W&B accepts) and the keyword arguments of
`wandb.init`. W&B is imported when a config is checked."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from composer_cfg.errors import ConfigError, suggest

#: WandBLogger's parameters (``wandb.init``'s arguments), by the `wandb.Settings` field that checks them.
SETTINGS_FIELDS = {"mode": "mode", "project": "project", "entity": "entity", "group": "run_group",
                   "name": "run_name", "tags": "run_tags"}


def check_init_params(params: Mapping[str, Any]) -> None:
    """`ConfigError` (its key relative to the node) for the first value W&B would refuse: an
    unknown ``init_params`` key, then each run field, taken from ``init_params`` when it is there
    (it wins when the run starts), then an ``init_params.settings`` mapping."""
    import wandb

    init_params = params.get("init_params") or {}
    accepted = inspect.signature(wandb.init).parameters
    for name in init_params:
        if name not in accepted:
            raise ConfigError(f"init_params.{name}: not an argument of wandb.init{suggest(name, accepted)}",
                              key=f"init_params.{name}")
    for name, field in SETTINGS_FIELDS.items():
        key = f"init_params.{name}" if name in init_params else name
        value = init_params[name] if name in init_params else params.get(name)
        if value is not None:
            _check_settings(key, {field: value})
    settings = init_params.get("settings")
    if isinstance(settings, Mapping) and "_target_" not in settings:  # a node is checked as one
        _check_settings("init_params.settings", dict(settings), nested=True)


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
