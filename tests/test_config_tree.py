"""The packaged config tree: every destination option composes, validates and builds."""

from pathlib import Path

import pytest
import yaml

import composer_cfg
from composer_cfg import LoggerDestination, build_logger, compose_config
from conftest import destination_options

OPTIONS = destination_options()
CONF = Path(composer_cfg.__file__).parent / "conf"


def test_options_are_discovered_from_the_tree():
    assert OPTIONS == sorted(p.stem for p in (CONF / "logger" / "destinations").glob("*.yaml"))
    assert {"file", "in_memory", "progress_bar", "jsonl", "tensorboard"} <= set(OPTIONS)


@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_file_nests_under_its_own_name_with_a_composer_cfg_target(option):
    content = yaml.safe_load((CONF / "logger" / "destinations" / f"{option}.yaml").read_text())
    assert list(content) == [option]
    assert content[option]["_target_"].startswith("composer_cfg.")


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_alone_composes_and_builds(option):
    overrides = [f"logger/destinations=[{option}]", "run_name=alone"]
    cfg = compose_config(overrides)
    assert list(cfg.logger.destinations) == [option]
    logger = build_logger(overrides=overrides)
    try:
        (destination,) = logger.destinations
        assert isinstance(destination, LoggerDestination)
        assert logger.name_of(destination) == option
        logger.data_fit({"hello": 1})
    finally:
        logger.close()


@pytest.mark.slow
def test_all_options_together():
    overrides = [f"logger/destinations=[{','.join(OPTIONS)}]", "run_name=together"]
    with build_logger(overrides=overrides) as logger:
        assert [logger.name_of(d) for d in logger.destinations] == OPTIONS
        logger.data_batch({"loss": 0.5})


def test_default_selection_and_layout():
    cfg = compose_config()
    assert list(cfg) == ["logger", "run_name", "resume", "dry_run", "log_config", "demo"]
    assert cfg.logger._target_ == "composer_cfg.Logger"
    assert list(cfg.logger.destinations) == ["file", "in_memory", "progress_bar"]
    assert cfg.logger.destinations.file.filename == "{run_name}/logs-rank{rank}.txt"
    assert cfg.demo.checkpoint == "{run_name}/checkpoints/ep{epoch}-rank{rank}.npz"


def test_selecting_none_still_leaves_the_key():
    cfg = compose_config(["logger/destinations=[]"])
    assert dict(cfg.logger.destinations) == {}
    with build_logger(overrides=["logger/destinations=[]", "run_name=none"]) as logger:
        assert logger.destinations == ()


def test_every_shipped_target_is_under_composer_cfg():
    for path in CONF.rglob("*.yaml"):
        text = path.read_text()
        for line in text.splitlines():
            if "_target_:" in line:
                assert line.split("_target_:")[1].strip().startswith("composer_cfg."), (path, line)


def test_the_registry_names_every_option_file():
    from composer_cfg.destinations.registry import BUILT_IN

    assert sorted(BUILT_IN) == OPTIONS


@pytest.mark.parametrize("option", OPTIONS)
def test_each_yaml_lists_every_parameter_with_the_constructor_default(option):
    """One source of truth: the YAML a user reads says exactly what the class does by default."""
    import inspect

    from composer_cfg import LogLevel
    from composer_cfg.destinations.registry import BUILT_IN

    cls = BUILT_IN[option]
    (node,) = yaml.safe_load((CONF / "logger" / "destinations" / f"{option}.yaml").read_text()).values()
    assert node.pop("_target_") == f"composer_cfg.{cls.__name__}"
    parameters = inspect.signature(cls).parameters
    assert sorted(node) == sorted(set(parameters) - set(cls.aliases)), "every parameter (old names aside), nothing else"
    for key, value in node.items():
        default = parameters[key].default
        if default is inspect.Parameter.empty:  # required by the class: the YAML supplies a value
            assert value is not None, key
        elif isinstance(default, LogLevel):
            assert LogLevel.parse(value) is default, key
        else:
            assert value == ({} if default is None and isinstance(value, dict) else default), key
