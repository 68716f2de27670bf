"""Where a config key got its value: a command-line override or a config file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from composer_cfg.core.secrets import redact_override
from composer_cfg.core.templates import PREVIEW, preview


class Provenance:
    """Answers `source_of` for many keys of one composition, reading the defaults list once.

    Needs Hydra's global state initialised for the composition (inside a Hydra app, or in a
    ``hydra.initialize`` context); without it every file source is "".
    """

    def __init__(self, overrides: Sequence[str], config_name: str) -> None:
        self._files = _config_files(overrides, config_name)
        groups = {path.rpartition("/")[0] for path in self.defaults}
        # an override that chooses a group's option (logger=mine) sets no key: the option's file does
        self._overrides = [(target, line) for target, line in _parsed(overrides) if target not in groups]

    @property
    def defaults(self) -> list[str]:
        """The config files of the defaults list, in order (``logger/destinations/file``, ...)."""
        return [path for path, _, _, _ in self._files]

    def source_of(self, key: str) -> str:
        """``command line 'k=v'`` or ``logger/destinations/file.yaml in pkg://composer_cfg.conf``, or "".

        A key no file sets (a missing parameter, say) is attributed to its nearest enclosing node.
        """
        override = self._override_for(key)
        if override:
            return f"command line {preview(redact_override(override), limit=4 * PREVIEW)}"  # the key path too
        parts = key.split(".")
        for end in range(len(parts), 0, -1):
            found = self._file_for(".".join(parts[:end]))
            if found:
                return found
        return ""

    def _override_for(self, key: str) -> str | None:
        best: tuple[int, str] | None = None
        for target, line in self._overrides:
            if (key == target or key.startswith(target + ".")) and (best is None or len(target) >= best[0]):
                best = (len(target), line)
        return best[1] if best else None

    def _file_for(self, key: str) -> str:
        """The last config file in the defaults list that sets `key` (the one whose value won)."""
        found = ""
        for _, name, package, config in self._files:
            relative = _relative(key, package)
            if relative is not None and _has_key(config, relative):
                found = name
        return found


def source_of(key: str, overrides: Sequence[str], config_name: str) -> str:
    """`Provenance.source_of` for one key."""
    return Provenance(overrides, config_name).source_of(key)


def _parsed(overrides: Sequence[str]) -> list[tuple[str, str]]:
    """(key or group, the override as given) of each override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - an unparsable override has been reported already
        return []
    return [(override.key_or_group, override.input_line) for override in parsed]


def _config_files(overrides: Sequence[str], config_name: str) -> list[tuple[str, str, str, Any]]:
    """(config path, ``path.yaml in source``, package, config) of each file of the defaults list, in order."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    files = []
    try:
        loader = GlobalHydra.instance().config_loader()
        defaults = loader.compute_defaults_list(config_name, list(overrides), RunMode.RUN).defaults
        sources = _search_path(loader)
        for default in defaults:
            if default.config_path is None or default.config_path.startswith("hydra/"):
                continue
            found = _load(sources, default.config_path)
            if found is not None:
                source, config = found
                files.append((default.config_path, f"{default.config_path}.yaml in {source}", default.package or "",
                              config))
    except Exception:  # noqa: BLE001 - provenance is a courtesy; Hydra internals may change
        return []
    return files


def _search_path(loader: Any) -> list[tuple[str, str]]:
    """(scheme, path) of each config source, in Hydra's order: the running app's (its
    ``hydra.searchpath`` included), else those of the composition in progress."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return [(source.schema, source.path) for source in HydraConfig.get().runtime.config_sources]
    return [(source.scheme(), source.path) for source in loader.get_sources()]


def _load(sources: list[tuple[str, str]], config_path: str) -> tuple[str, Any] | None:
    """(``scheme://path``, config) of the first source holding ``config_path.yaml``, as Hydra finds it."""
    from importlib.resources import files

    for scheme, root in sources:
        try:
            if scheme == "file":
                candidate: Any = Path(root) / f"{config_path}.yaml"
            elif scheme == "pkg":
                candidate = files(root.replace("/", ".")) / f"{config_path}.yaml"
            else:  # structured configs: no file
                continue
            if candidate.is_file():
                return f"{scheme}://{root}", OmegaConf.create(candidate.read_text())
        except (ModuleNotFoundError, OSError):
            continue
    return None


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
    found = OmegaConf.select(config, relative, default=_ABSENT, throw_on_resolution_failure=False)
    return found is not _ABSENT


_ABSENT = object()
