"""build_logger / compose_config: the script API."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from composer_cfg import (
    ConfigError,
    FileLogger,
    InMemoryLogger,
    ProgressBarLogger,
    State,
    build_logger,
    compose_config,
    instantiate_logger,
)


def test_builds_the_default_logger_in_the_working_directory(tmp_path):
    with build_logger(overrides=["run_name=script"]) as logger:
        assert [type(d) for d in logger.destinations] == [FileLogger, InMemoryLogger, ProgressBarLogger]
        assert Path("script/logs-rank0.txt").exists()  # INIT was fired: the file is open
        logger.data_epoch({"acc": 0.5})
    assert (tmp_path / "script/logs-rank0.txt").read_text() == '[EPOCH][batch=0]: { "acc": 0.5000, }\n'


def test_a_given_state_wins_over_the_configs_run_name():
    with build_logger(State("from_state"), overrides=["run_name=from_config"]) as logger:
        assert logger.state.run_name == "from_state"
    assert Path("from_state/logs-rank0.txt").exists() and not Path("from_config").exists()


def test_a_states_directory_holds_every_file_of_the_run_and_is_where_the_config_is_checked(tmp_path):
    cfg = compose_config(["logger/destinations=[file,jsonl,tensorboard]", "resume=auto"])
    state = State("job", directory=tmp_path / "jobs/1")
    with instantiate_logger(cfg.logger, state, resume="auto") as logger:
        logger.data_batch({"loss": 0.5})
    assert not Path("job").exists()  # the working directory is left alone
    run = tmp_path / "jobs/1/job"
    assert sorted(path.name for path in run.iterdir()) == [
        "logs-rank0.txt", "metrics-rank0.jsonl", "run-rank0.json", "run-rank0.json.lock", "run-rank0.lock",
        "tensorboard"]
    with pytest.raises(ConfigError) as refused:  # checked there, by the state's run name, before anything is opened
        instantiate_logger(compose_config(["logger/destinations=[file]"]).logger, State("job", directory=run.parent))
    assert str(refused.value) == (
        f"logger.destinations.file.filename: '{run / 'logs-rank0.txt'}' already exists (a run named 'job' wrote it): "
        f"continue that run with resume=auto, choose another run_name, or set overwrite=true to replace it")


@pytest.mark.parametrize("variable", ["COMPOSER_RUN_NAME", "RUN_NAME"])
def test_run_name_from_the_environment(monkeypatch, variable):
    monkeypatch.setenv(variable, "env_run")
    with build_logger(overrides=["logger/destinations=[in_memory]"]) as logger:
        assert logger.state.run_name == "env_run"


def test_generated_run_name():
    with build_logger(overrides=["logger/destinations=[in_memory]"]) as logger:
        assert re.fullmatch(r"\d{10}-[a-z]+-[a-z]+", logger.state.run_name)


def test_generated_name_with_several_ranks_is_an_error(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="run_name: not set, and the 2 ranks of this run can not agree"):
        build_logger(overrides=["logger/destinations=[in_memory]"])


def test_usable_many_times_in_one_process_and_leaves_hydra_uninitialised():
    for index in range(5):
        with build_logger(overrides=[f"run_name=r{index}", "logger/destinations=[in_memory]"]) as logger:
            logger.data_batch({"i": index})
    assert not GlobalHydra.instance().is_initialized()


def test_destinations_can_be_switched_off_with_null():
    with build_logger(overrides=["run_name=n", "logger.destinations.file=null"]) as logger:
        assert [type(d) for d in logger.destinations] == [InMemoryLogger, ProgressBarLogger]


@pytest.mark.slow
def test_works_inside_a_running_hydra_app(tmp_path):
    (tmp_path / "app_conf").mkdir()
    (tmp_path / "app_conf" / "app.yaml").write_text("greeting: hello\n")
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import hydra
        from hydra import compose
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig
        from composer_cfg import build_logger

        @hydra.main(version_base="1.3", config_path="app_conf", config_name="app")
        def app(cfg):
            before = GlobalHydra.instance().hydra
            for name in ("a", "b"):
                with build_logger(overrides=[f"run_name={name}", "logger/destinations=[in_memory]"]) as logger:
                    logger.data_fit({"greeting": cfg.greeting})
            assert GlobalHydra.instance().hydra is before
            print("job", HydraConfig.get().job.name, "composes", compose("app").greeting)

        app()
    """))
    out = subprocess.run([sys.executable, "app.py", "hydra.run.dir=run"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "job app composes hello"


def write_user_config(tmp_path: Path, module_body: str) -> tuple[Path, str]:
    """A user config dir with logger/destinations/printer.yaml, and the module it targets."""
    module = f"dest_{tmp_path.name}"  # one module per test: sys.modules caches by name
    conf = tmp_path / "my_conf"
    (conf / "logger" / "destinations").mkdir(parents=True)
    (conf / "logger" / "destinations" / "printer.yaml").write_text(
        f"printer:\n  _target_: {module}.Printer\n  prefix: '>>'\n"
    )
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(module_body))
    return conf, module


PRINTER = """
    from composer_cfg import LoggerDestination

    class Printer(LoggerDestination):
        def __init__(self, prefix: str = "", log_level: str | None = None):
            self.prefix = prefix
            self.lines = []

        def log_data(self, state, log_level, data):
            self.lines.append(f"{self.prefix} {log_level.name} {data}")
"""


def test_user_config_dir_adds_a_destination_and_keeps_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    conf, module = write_user_config(tmp_path, PRINTER)
    overrides = ["run_name=user", f"logger.allowed_modules=[{module}]", "+logger/destinations=printer",
                 "logger.destinations.printer.prefix=P"]
    with build_logger(overrides=overrides, config_dir=conf) as logger:
        assert [logger.name_of(d) for d in logger.destinations] == ["file", "in_memory", "progress_bar", "printer"]
        logger.data_fit({"a": 1})
        assert logger.destinations[3].lines == ["P FIT {'a': 1}"]


def test_user_config_dir_wins_over_the_packaged_one(tmp_path):
    conf = tmp_path / "override_conf"
    (conf / "logger" / "destinations").mkdir(parents=True)
    (conf / "logger" / "destinations" / "in_memory.yaml").write_text(
        "in_memory:\n  _target_: composer_cfg.InMemoryLogger\n  log_level: fit\n"
    )
    cfg = compose_config(config_dir=conf)
    assert cfg.logger.destinations.in_memory.log_level == "fit"


def test_user_config_errors_name_the_users_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    conf, module = write_user_config(tmp_path, PRINTER)
    (conf / "logger" / "destinations" / "printer.yaml").write_text(
        f"printer:\n  _target_: {module}.Printer\n  prefx: x\n"
    )
    with pytest.raises(ConfigError) as caught:
        compose_config([f"logger.allowed_modules=[{module}]", "+logger/destinations=printer"], config_dir=conf)
    assert caught.value.problems == [
        "logger.destinations.printer.prefx: unknown key for Printer; did you mean 'prefix'? allowed: prefix, "
        f"log_level (from logger/destinations/printer.yaml in file://{conf})"
    ]


def test_a_failing_import_inside_a_destination_module_is_shown(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    conf, module = write_user_config(tmp_path, "import not_installed_dependency\n" + textwrap.dedent(PRINTER))
    with pytest.raises(ConfigError) as caught:
        compose_config([f"logger.allowed_modules=[{module}]", "+logger/destinations=printer"], config_dir=conf)
    assert caught.value.problems == [
        f"logger.destinations.printer._target_: cannot import '{module}.Printer': importing {module} "
        "failed: ModuleNotFoundError(\"No module named 'not_installed_dependency'\") "
        f"(from logger/destinations/printer.yaml in file://{conf})"
    ]


def test_a_destination_failing_to_build_closes_those_built_before_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    conf, module = write_user_config(tmp_path, PRINTER.replace("self.prefix = prefix", "raise OSError('no device')"))
    stdout = sys.stdout
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=broken", f"logger.allowed_modules=[{module}]", "+logger/destinations=printer"],
                     config_dir=conf)
    assert str(caught.value) == f"logger.destinations.printer: cannot build {module}.Printer: OSError: no device"
    assert sys.stdout is stdout  # the FileLogger built first released its capture


def test_config_dir_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="config_dir: .* is not a directory"):
        compose_config(config_dir=tmp_path / "nope")


def test_instantiate_logger_names_a_bad_run_name_from_the_environment_by_its_variable(monkeypatch):
    monkeypatch.setenv("COMPOSER_RUN_NAME", "../x")
    with pytest.raises(ConfigError) as caught:
        instantiate_logger({"_target_": "composer_cfg.Logger", "destinations": {}})
    assert str(caught.value) == ("COMPOSER_RUN_NAME: '../x' must not contain '/' or '\\\\' or be '.' or '..': "
                                 "it names a directory")
