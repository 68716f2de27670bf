"""Hydra search path plugin: makes composer_cfg's config tree available to every Hydra app.

Appended last, so an app's own configs (a user's ``config_dir``) always win; the packaged tree,
primary config included, is the fallback.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class ComposerCfgSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="composer_cfg", path="pkg://composer_cfg.conf")
