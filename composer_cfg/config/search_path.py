"""composer_cfg's config tree on Hydra's search path: for its own entry points, and for apps that ask.

A Hydra app sees composer_cfg's configs only when it opts in, the way Hydra documents for any
config package, in its primary config::

    hydra:
      searchpath:
        - pkg://composer_cfg.conf

Installing composer_cfg changes no other app: no search path plugin is discovered from the
environment. Its own entry points (the ``composer-cfg`` command, `build_logger`,
`compose_config`) compose inside `packaged_configs_last`: a user's config directory comes first
and the packaged tree, primary config included, is the fallback behind it. That works under
every install mode, since it relies on nothing but importing ``composer_cfg.conf``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

PACKAGED_CONFIGS = "pkg://composer_cfg.conf"
_wanted: contextvars.ContextVar[bool] = contextvars.ContextVar("composer_cfg_configs", default=False)
_registered = False


class PackagedConfigsLast(SearchPathPlugin):
    """Appends composer_cfg's configs to the search path, inside `packaged_configs_last` only."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if _wanted.get():
            search_path.append(provider="composer_cfg", path=PACKAGED_CONFIGS)


@contextlib.contextmanager
def packaged_configs_last() -> Iterator[None]:
    """Compose with the packaged configs behind whatever the caller's search path holds."""
    global _registered
    if not _registered:
        Plugins.instance().register(PackagedConfigsLast)  # Hydra's public way to add a plugin
        _registered = True
    token = _wanted.set(True)
    try:
        yield
    finally:
        _wanted.reset(token)
