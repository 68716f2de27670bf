"""Where a config key got its value: a command-line override or a config file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import OmegaConf

from composer_cfg.secrets import redact_override
from composer_cfg.templates import PREVIEW, preview


def source_of(key: str, overrides: Sequence[str], config_name: str) -> str:
    """``command line 'k=v'`` or ``logger/destinations/file.yaml in pkg://composer_cfg.conf``, or "".

    A key no file sets (a missing parameter, say) is attributed to its nearest enclosing node.
    """
    override = _override_for(key, overrides)
    if override:
        return f"command line {preview(redact_override(override), limit=4 * PREVIEW)}"  # the key path too
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        found = _file_for(".".join(parts[:end]), overrides, config_name)
        if found:
            return found
    return ""


def _override_for(key: str, overrides: Sequence[str]) -> str | None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    best: tuple[int, str] | None = None
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - an unparsable override has been reported already
        return None
    for override in parsed:
        target = override.key_or_group
        if key == target or key.startswith(target + "."):
            if best is None or len(target) >= best[0]:
                best = (len(target), override.input_line)
    return best[1] if best else None


def _file_for(key: str, overrides: Sequence[str], config_name: str) -> str:
    """The last config file in the defaults list that sets `key` (the one whose value won)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    try:
        loader = GlobalHydra.instance().config_loader()
        defaults = loader.compute_defaults_list(config_name, list(overrides), RunMode.RUN).defaults
        found = ""
        for default in defaults:
            if default.config_path is None or default.config_path.startswith("hydra/"):
                continue
            result = loader.repository.load_config(default.config_path)
            if result is None:
                continue
            relative = _relative(key, default.package or "")
            if relative is not None and _has_key(result.config, relative):
                found = f"{default.config_path}.yaml in {result.path}"
        return found
    except Exception:  # noqa: BLE001 - provenance is a courtesy; Hydra internals may change
        return ""


def _relative(key: str, package: str) -> str | None:
    if not package:
        return key
    if key == package:
        return ""
    if key.startswith(package + "."):
        return key[len(package) + 1 :]
    return None


def _has_key(config: Any, relative: str) -> bool:
    if relative == "":
        return True
    return OmegaConf.select(config, relative, default=_ABSENT) is not _ABSENT


_ABSENT = object()
