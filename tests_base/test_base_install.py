"""composer_cfg installed alone (no extras), in setuptools' strict editable mode, and as a wheel."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
COMMAND = Path(sys.executable).parent / "composer-cfg"


def test_this_environment_has_no_extras():
    assert [m for m in ("tensorboardX", "mlflow", "wandb", "s3fs", "torch", "matplotlib",
                        "hydra_plugins.hydra_joblib_launcher") if importlib.util.find_spec(m.split(".")[0])] == []


@pytest.mark.parametrize(("args", "line"), [
    (["+logger/destinations=tensorboard"], "logger.destinations.tensorboard: TensorboardLogger needs tensorboardX "
                                           "and PIL, which are not installed: pip install 'composer_cfg[tensorboard]'"),
    (["+logger/destinations=mlflow"], "logger.destinations.mlflow: MLFlowLogger needs mlflow, sqlalchemy, alembic, "
                                      "PIL and pandas, which are not installed: pip install 'composer_cfg[mlflow]'"),
    (["+logger/destinations=wandb"], "logger.destinations.wandb: WandBLogger needs wandb and PIL, which are not "
                                     "installed: pip install 'composer_cfg[wandb]'"),
    (["+logger/destinations=object_store", "logger.destinations.object_store.url=s3://bucket/runs"],
     "logger.destinations.object_store.url: s3:// needs s3fs, which is not installed: pip install 'composer_cfg[s3]' "
     "(from command line 'logger.destinations.object_store.url=s3://bucket/runs')"),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_missing_extra_is_one_line_with_the_pip_command_and_nothing_is_created(tmp_path, args, line, dry_run):
    out = subprocess.run([str(COMMAND), *args, *(["dry_run=true"] if dry_run else [])], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines()[0].startswith(f"composer-cfg: error: {line}")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_launcher_names_the_extra(tmp_path):
    out = subprocess.run([str(COMMAND), "-m", "hydra/launcher=joblib", "demo.seed=0,1"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "composer-cfg: error: hydra/launcher: unknown option 'joblib'; available: basic; the joblib launcher is not "
        "installed: pip install 'composer_cfg[launchers]'"]
    assert list(tmp_path.iterdir()) == []


USER_DIR = {"my_conf/logger/destinations/second.yaml": """
    second:
      _target_: composer_cfg.JSONLinesLogger
      filename: "{run_name}/second-{rank}.jsonl"
    """}

APP = {
    "conf/config.yaml": """
        defaults:
          - logger: default
          - _self_
        hydra:
          searchpath:
            - pkg://composer_cfg.conf
        """,
    "app.py": """
        import hydra
        from composer_cfg import instantiate_logger

        @hydra.main(version_base="1.3", config_path="conf", config_name="config")
        def main(cfg):
            with instantiate_logger(cfg.logger, run_name="app") as logger:
                logger.data_epoch({"epoch": 0})
            print("destinations:", ", ".join(logger.destinations.names))

        main()
        """,
}


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))


def check_configs_are_found(tmp_path: Path, env: dict[str, str] | None = None) -> None:
    """A user config dir with only an option file, the command and build_logger; an app that opts in."""
    write(tmp_path, {**USER_DIR, **APP})
    command = [sys.executable, "-m", "composer_cfg"]
    out = subprocess.run([*command, "-cd", "my_conf", "run_name=u", "hydra.run.dir=run", "demo.epochs=1",
                          "logger/destinations=[second]"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert len((tmp_path / "run/u/second-0.jsonl").read_text().splitlines()) == 2 + 16 + 1  # FIT: config, hparams
    script = ("from composer_cfg import build_logger\n"
              "with build_logger(overrides=['run_name=s', '+logger/destinations=second'], config_dir='my_conf') as l:\n"
              "    print(', '.join(l.destinations.names))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0 and out.stdout == "file, in_memory, progress_bar, second\n", out.stderr
    out = subprocess.run([sys.executable, "app.py", "hydra.run.dir=app_run"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0 and out.stdout.endswith("destinations: file, in_memory, progress_bar\n"), out.stderr


def test_configs_are_found_in_a_strict_editable_install(tmp_path):
    origin = subprocess.run([sys.executable, "-c", "import composer_cfg; print(composer_cfg.__file__)"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert origin.startswith(str(ROOT / "build" / "__editable__"))  # the linked copy, not the source tree
    check_configs_are_found(tmp_path)


def test_configs_are_found_when_installed_from_a_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    target = tmp_path / "site"
    (wheel,) = wheels.glob("composer_cfg-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "HYDRA_FULL_ERROR": "0"}
    origin = subprocess.run([sys.executable, "-c", "import composer_cfg; print(composer_cfg.__file__)"],
                            capture_output=True, text=True, env=env, check=True).stdout
    assert origin.startswith(str(target))  # the wheel's copy, not the editable one
    project = tmp_path / "project"
    project.mkdir()
    check_configs_are_found(project, env)
