"""The one import policy (`composer_cfg.config.imports`): code a config names is imported only from
composer_cfg and the modules it lists, whichever path names it."""

import sys

import pytest

from composer_cfg import ConfigError
from composer_cfg.config.imports import allowing, import_object


@pytest.fixture
def package(tmp_path, monkeypatch):
    """``my_package.filters.keep`` and a sibling package whose name starts the same."""
    (tmp_path / "my_package").mkdir()
    (tmp_path / "my_package" / "__init__.py").write_text("")
    (tmp_path / "my_package" / "filters.py").write_text("from shutil import copyfile\ndef keep(s, l, n):\n    return True\n")
    (tmp_path / "my_package_evil.py").write_text("def keep(s, l, n):\n    return True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("my_package", "my_package.filters", "my_package_evil"):
        sys.modules.pop(name, None)


def test_a_listed_module_allows_its_submodules_and_nothing_that_merely_starts_alike(package):
    with allowing(["my_package"]):
        assert import_object("my_package.filters.keep", key="k").__name__ == "keep"
        with pytest.raises(ConfigError, match="'my_package_evil.keep' is outside the modules this config may import "
                                              r"from \(composer_cfg, my_package\)"):
            import_object("my_package_evil.keep", key="k")
    assert "my_package_evil" not in sys.modules  # refused before anything was imported


def test_an_object_reached_through_an_allowed_module_is_judged_by_where_it_is_defined(package):
    with allowing(["my_package"]), pytest.raises(ConfigError) as caught:
        import_object("my_package.filters.copyfile", key="k")
    assert caught.value.key == "k"
    assert str(caught.value).startswith("k: 'my_package.filters.copyfile' (defined in shutil) is outside the modules")


def test_outside_a_config_only_composer_cfg_is_allowed(package):
    assert import_object("composer_cfg.FileLogger", key="k").__name__ == "FileLogger"
    with pytest.raises(ConfigError, match="add its module to logger.allowed_modules"):
        import_object("my_package.filters.keep", key="k")
