"""composer_cfg inside a user's own Hydra app: invisible until the app opts in, then one line to use.

Real apps in a temporary directory, run as subprocesses: one shaped like
lightning-hydra-template (its own ``logger`` group of Lightning loggers), one minimal.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from composer_cfg import ConfigError
from composer_cfg.config.run_directory import Placement, place_run
from composer_cfg.run.records import read_records
from conftest import needs
from servers import free_port

MlflowClient = needs("mlflow").MlflowClient


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def run(root: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=root, capture_output=True, text=True, timeout=120)


# lightning-hydra-template's shape: configs/train.yaml with '- logger: null', configs/logger/*.yaml.
LHT = {
    "configs/train.yaml": """
        defaults:
          - logger: null
          - _self_
        task_name: train
        """,
    "configs/logger/csv.yaml": """
        csv:
          _target_: lightning.pytorch.loggers.csv_logs.CSVLogger
          save_dir: logs
        """,
    "configs/logger/tensorboard.yaml": """
        tensorboard:
          _target_: lightning.pytorch.loggers.tensorboard.TensorBoardLogger
          save_dir: logs
        """,
    "configs/logger/many_loggers.yaml": """
        defaults:
          - csv
          - tensorboard
        """,
    "train.py": """
        import hydra
        from hydra.core.global_hydra import GlobalHydra
        from omegaconf import OmegaConf

        @hydra.main(version_base="1.3", config_path="configs", config_name="train")
        def main(cfg):
            loader = GlobalHydra.instance().config_loader()
            print("logger options:", sorted(loader.get_group_options("logger")))
            print("config:", OmegaConf.to_container(cfg))

        main()
        """,
}


def test_an_app_with_its_own_logger_group_is_unchanged_by_composer_cfg_being_installed(tmp_path):
    write(tmp_path, LHT)
    out = run(tmp_path, "train.py", "logger=many_loggers", "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "logger options: ['csv', 'many_loggers', 'tensorboard']",
        "config: {'logger': {'csv': {'_target_': 'lightning.pytorch.loggers.csv_logs.CSVLogger', 'save_dir': 'logs'}, "
        "'tensorboard': {'_target_': 'lightning.pytorch.loggers.tensorboard.TensorBoardLogger', 'save_dir': 'logs'}}, "
        "'task_name': 'train'}",
    ]
    refused = run(tmp_path, "train.py", "logger=default", "hydra.run.dir=run")
    assert refused.returncode == 1 and "Could not find 'logger/default'" in refused.stderr


@pytest.mark.slow
def test_once_the_app_opts_in_composer_cfgs_presets_join_its_group(tmp_path):
    write(tmp_path, LHT)
    train = tmp_path / "configs/train.yaml"
    train.write_text(train.read_text() + "hydra:\n  searchpath:\n    - pkg://composer_cfg.conf\n")
    out = run(tmp_path, "train.py", "logger=default", "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr
    config = out.stdout.splitlines()[1]
    assert config.startswith("config: {'logger': {'destinations': {'file': {'_target_': 'composer_cfg.FileLogger'")
    assert "'in_memory': {" in config and "'progress_bar': {" in config
    assert config.endswith("'_target_': 'composer_cfg.Logger', 'allowed_modules': [], 'measure_overhead': False, "
                           "'reduce': None, 'reduce_every': 10, 'reduce_timeout': 300, 'system_metrics': None}, "
                           "'task_name': 'train'}")
    own = run(tmp_path, "train.py", "logger=many_loggers", "hydra.run.dir=run")  # its own options still win
    assert own.returncode == 0 and "'csv': {'_target_': 'lightning.pytorch.loggers.csv_logs.CSVLogger'" in own.stdout


MINIMAL = {
    "conf/config.yaml": """
        defaults:
          - logger: default
          - _self_
        hydra:
          searchpath:
            - pkg://composer_cfg.conf
        run_name: minimal
        epochs: 2
        """,
    "train.py": """
        import hydra
        from composer_cfg import TrainingLoop, instantiate_logger

        @hydra.main(version_base="1.3", config_path="conf", config_name="config")
        def main(cfg):
            logger = instantiate_logger(cfg.get("logger"), run_name=cfg.run_name)
            print("destinations:", ", ".join(logger.destinations.names))
            loop = TrainingLoop(logger)
            with logger:
                for epoch in loop.epochs(cfg.epochs):
                    for batch in loop.batches(4):
                        logger.data_batch({"loss": 1.0 / (batch + 1)})
                    logger.data_epoch({"epoch": epoch})

        main()
        """,
}


def test_a_minimal_app_gets_the_default_logger_from_one_defaults_line(tmp_path):
    write(tmp_path, MINIMAL)
    out = run(tmp_path, "train.py", "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["destinations: file, in_memory, progress_bar"]
    # version_base 1.3 leaves the working directory alone: files land where the app was started;
    # what the app prints once the logger started is in its log too
    assert (tmp_path / "minimal/logs-rank0.txt").read_text().splitlines() == [
        "[stdout]: destinations: file, in_memory, progress_bar",
        '[EPOCH][batch=4]: { "epoch": 0, }', '[EPOCH][batch=8]: { "epoch": 1, }']


@pytest.mark.slow
@pytest.mark.parametrize(("override", "names"), [
    ("logger=all_local", "file, in_memory, progress_bar, jsonl, tensorboard"),
    ("logger/destinations=[jsonl]", "jsonl"),
    ("+logger/destinations=jsonl", "file, in_memory, progress_bar, jsonl"),
    ("logger=none", ""),
    ("~logger", ""),
])
def test_presets_and_selections_from_the_apps_command_line(tmp_path, override, names):
    write(tmp_path, MINIMAL)
    out = run(tmp_path, "train.py", override, "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"destinations: {names}"]
    assert (tmp_path / "minimal").exists() is ("file" in names or "jsonl" in names)


def test_an_empty_selection_warns_that_nothing_will_be_logged(tmp_path):
    write(tmp_path, MINIMAL)
    out = run(tmp_path, "train.py", "logger/destinations=[]", "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr
    assert ("logger.destinations: no destination is selected, so nothing will be logged; choose some with "
            "'logger/destinations=[file,jsonl]', or say logger=none") in out.stdout + out.stderr  # Hydra's log handler


def test_a_typo_in_the_apps_yaml_is_one_line_naming_the_apps_file(tmp_path):
    write(tmp_path, MINIMAL)
    config = tmp_path / "conf/config.yaml"
    config.write_text(config.read_text() + "logger:\n  destinations:\n    file:\n      log_levl: batch\n")
    out = run(tmp_path, "train.py", "hydra.run.dir=run")
    assert out.returncode == 1
    assert (f"composer_cfg.core.errors.ConfigError: logger.destinations.file.log_levl: unknown key for FileLogger; did "
            f"you mean 'log_level'? allowed: filename, artifact_name, capture_stdout, capture_stderr, buffer_size, "
            f"log_level, log_interval, flush_interval, flush_seconds, overwrite (from config.yaml in file://{tmp_path / 'conf'})"
            ) in out.stderr.splitlines()
    assert not (tmp_path / "minimal").exists()


def test_a_destination_of_the_apps_own_next_to_its_script(tmp_path):
    write(tmp_path, {**MINIMAL,
                     "conf/logger/destinations/printer.yaml": """
                         printer:
                           _target_: my_destinations.Printer
                         """,
                     "my_destinations.py": """
                         from composer_cfg import LoggerDestination

                         class Printer(LoggerDestination):
                             log_level = "epoch"

                             def log_data(self, state, log_level, data):
                                 print("printer:", data)
                         """})
    out = run(tmp_path, "train.py", "logger/destinations=[printer]", "logger.allowed_modules=[my_destinations]",
              "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["destinations: printer", "printer: {'epoch': 0}", "printer: {'epoch': 1}"]


def test_an_app_records_its_own_config_with_the_same_helper_as_the_command(tmp_path):
    files = dict(MINIMAL)
    files["train.py"] = MINIMAL["train.py"].replace(
        "from composer_cfg import TrainingLoop, instantiate_logger",
        "from composer_cfg import TrainingLoop, instantiate_logger\n"
        "        from composer_cfg.run.run_config import describe_hydra_job, log_run_config").replace(
        "            with logger:\n",
        "            with logger:\n"
        "                log_run_config(logger, describe_hydra_job(cfg, logger.state.run_name))\n")
    write(tmp_path, files)
    labels = "+labels={0: cat, 1: dog}"  # a mapping keyed by number: valid in Hydra and OmegaConf
    out = run(tmp_path, "train.py", "hydra.run.dir=run", "epochs=1", "logger/destinations=[jsonl]", labels)
    assert out.returncode == 0, out.stderr
    record = yaml.safe_load((tmp_path / "minimal" / "run-config.yaml").read_text())
    assert record["config"]["labels"] == {0: "cat", 1: "dog"}
    assert record["config"]["epochs"] == 1 and record["overrides"] == ["epochs=1", "logger/destinations=[jsonl]", labels]
    assert record["provenance"]["epochs"] == "command line 'epochs=1'"
    assert record["provenance"]["run_name"] == f"config.yaml in file://{tmp_path / 'conf'}"
    assert record["defaults"] == ["logger/destinations/jsonl", "logger/default", "config"]
    (first, *_) = read_records(tmp_path / "minimal" / "metrics-rank0.jsonl")
    assert first["data"]["config"]["epochs"] == 1 and first["data"]["config"]["labels"] == {"0": "cat", "1": "dog"}


@pytest.mark.slow
def test_a_sweep_of_the_app_needs_each_job_in_its_own_directory(tmp_path):
    write(tmp_path, MINIMAL)
    together = run(tmp_path, "train.py", "-m", "epochs=1,2", "hydra.sweep.dir=together")
    assert together.returncode == 1 and "minimal/logs-rank0.txt' already exists" in together.stderr  # job 1 refused
    apart = run(tmp_path, "train.py", "-m", "epochs=1,2", "hydra.sweep.dir=apart", "hydra.job.chdir=true",
                "+logger/destinations=mlflow")
    assert apart.returncode == 0, apart.stderr
    for job, epochs in ((0, 1), (1, 2)):
        lines = (tmp_path / "apart" / str(job) / "minimal" / "logs-rank0.txt").read_text().splitlines()
        assert [line for line in lines if line.startswith("[EPOCH]")] == [
            f'[EPOCH][batch={4 * (e + 1)}]: {{ "epoch": {e}, }}' for e in range(epochs)]
        # the tracker's run knows its sweep, as under the command
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # the project's: the app's directory
        (tracked,) = [run for run in client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
                      if run.data.tags["sweep.overrides"].startswith(f"epochs={epochs} ")]
        assert (tracked.data.tags["sweep"], tracked.data.tags["sweep.overrides"]) == (
            "apart", f"epochs={epochs} +logger/destinations=mlflow")


TIMED = "hydra:\n  run:\n    dir: logs/${now:%H-%M-%S}\n"
TIMED_THROUGH_A_KEY = "paths:\n  runs: logs/${now:%H-%M-%S}\nhydra:\n  run:\n    dir: ${paths.runs}\n"
OWN = "hydra:\n  run:\n    dir: logs/${run_name}\n"


@pytest.mark.parametrize(("config", "overrides", "directory"), [
    ("", ["run_name=exp1", "resume=auto"], ["hydra.run.dir='outputs/exp1'"]),  # Hydra's default: new at every launch
    ("", ["run_name=exp1", "resume=must"], ["hydra.run.dir='outputs/exp1'"]),
    ("", ["run_name=exp1"], []),  # resume=never: a new run each time
    ("", ["resume=auto"], []),  # no name: nothing to find again
    ("", ["run_name=exp1", "resume=auto", "hydra.run.dir=mine"], []),
    (TIMED, ["run_name=exp1", "resume=auto"], ["hydra.run.dir='outputs/exp1'"]),
    (TIMED_THROUGH_A_KEY, ["run_name=exp1", "resume=auto"], ["hydra.run.dir='outputs/exp1'"]),
    (OWN, ["run_name=exp1", "resume=auto"], []),  # the app's own, found again
    ("", ["run_name='lr=0.1,bs=2'", "resume=auto"], ["hydra.run.dir='outputs/lr=0.1,bs=2'"]),  # quoted for Hydra
    ("run_name: ${oc.env:NOT_SET_ANYWHERE}\n", ["resume=auto"], []),  # the check says what is wrong
])
def test_a_run_that_may_be_continued_runs_where_a_second_attempt_finds_it(tmp_path, config, overrides, directory):
    assert placed(tmp_path, config, overrides) == Placement(directory)


@pytest.mark.parametrize(("rank", "config", "overrides", "directory"), [
    (0, "", ["run_name=exp1"], ["hydra.job.name='train-rank0'", "hydra.run.dir='outputs/exp1'"]),
    (1, "", [], ["run_name='torchrun-0a1b2c3d'", "hydra.job.name='train-rank1'", "hydra.output_subdir=null",
                 "hydra.run.dir='outputs/torchrun-0a1b2c3d'"]),  # the launcher's job id names it: the same on every rank
    (1, "", ["hydra.run.dir=mine"], ["run_name='torchrun-0a1b2c3d'", "hydra.job.name='train-rank1'",
                                     "hydra.output_subdir=null"]),
    (1, OWN, ["run_name=k"], ["hydra.job.name='train-rank1'", "hydra.output_subdir=null"]),  # the app's own
    (1, "run_name: ${oc.env:NOT_SET_ANYWHERE}\n", [], []),  # the check says what is wrong, in one line
])
def test_every_rank_of_a_run_runs_in_one_directory(tmp_path, monkeypatch, rank, config, overrides, directory):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "0a1b2c3d4e5f")
    assert placed(tmp_path, config, overrides) == Placement(directory)


def test_ranks_that_agree_on_a_name_only_once_their_process_group_exists_keep_the_run_where_they_start(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert placed(tmp_path, "", [], agree_later=True) == Placement(
        ["hydra.job.name='train-rank1'", "hydra.output_subdir=null"], in_job_directory=False)
    with pytest.raises(ConfigError, match="run_name: not set, and the 2 ranks of this run can not agree"):
        placed(tmp_path, "", [])  # the command starts no process group: nothing could agree later


def placed(tmp_path: Path, config: str, overrides: list[str], agree_later: bool = False) -> Placement:
    from composer_cfg.config.compose import hydra_context

    (tmp_path / "config.yaml").write_text(("" if "run_name:" in config else "run_name: null\n") + "resume: never\n" + config)
    with hydra_context(tmp_path):  # as hydra_main composes an app's config before Hydra runs it
        return place_run(overrides, "config", agree_later=agree_later)


# An app run by hydra_main: the run's files go in the job's directory (docs/hydra-app.md).
OWN_APP = {
    "configs/train.yaml": """
        defaults:
          - logger: default
          - override logger/destinations: [file]
          - _self_
        run_name: null
        resume: never
        epochs: 1
        """,
    "train.py": """
        from composer_cfg import Event, TrainingLoop, hydra_main, instantiate_logger

        def build(cfg):
            return instantiate_logger(cfg.get("logger"), run_name=cfg.run_name, resume=cfg.resume)

        @hydra_main(config_path="configs", config_name="train")
        def main(cfg):
            logger = build(cfg)
            with logger:
                loop = TrainingLoop(logger)
                for epoch in loop.epochs(cfg.epochs):
                    for batch in loop.batches(2):
                        logger.data_batch({"loss": 1.0})
                    logger.run_event(Event.EPOCH_CHECKPOINT)

        if __name__ == "__main__":
            main()
        """,
}


def own_app(root: Path, building: str = "logger = build(cfg)") -> None:
    """OWN_APP in `root`, its logger built by the lines `building`."""
    write(root, {**OWN_APP, "train.py": OWN_APP["train.py"].replace("            logger = build(cfg)", textwrap.indent(
        textwrap.dedent(building), " " * 12))})


def written(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if path.is_file() and path.parts[len(root.parts)] not in ("configs", "train.py"))


@pytest.mark.slow
def test_a_logger_built_on_a_thread_of_the_task_writes_in_the_job_directory(tmp_path):
    own_app(tmp_path, """\
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor() as pool:
            logger = pool.submit(build, cfg).result()
        """)
    out = run(tmp_path, "train.py", "run_name=t1", "hydra.run.dir=job")
    assert out.returncode == 0, out.stderr
    assert [name for name in written(tmp_path) if not name.startswith("job/")] == []
    assert (tmp_path / "job/t1/logs-rank0.txt").exists()


@pytest.mark.slow
def test_a_sweep_is_checked_in_each_jobs_own_directory_and_continued_there(tmp_path):
    own_app(tmp_path)
    sweep = ["-m", "run_name=m", "epochs=1,2", "hydra.sweep.dir=sweep"]
    assert run(tmp_path, "train.py", *sweep, "resume=auto").returncode == 0
    assert (tmp_path / "sweep/0/m/run-rank0.json").exists() and (tmp_path / "sweep/1/m/run-rank0.json").exists()
    before = {name: (tmp_path / name).stat().st_mtime_ns for name in written(tmp_path)}
    refused = run(tmp_path, "train.py", *sweep)  # resume=never: each job's log exists
    assert refused.returncode == 2 and f"{tmp_path / 'sweep/0/m/logs-rank0.txt'}" in refused.stderr
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in written(tmp_path)} == before  # nothing touched
    continued = run(tmp_path, "train.py", *sweep, "resume=must")
    assert continued.returncode == 0, continued.stderr


@pytest.mark.slow
def test_ranks_that_agree_on_a_name_through_their_process_group_keep_the_run_where_they_start(tmp_path):
    needs("torch")
    own_app(tmp_path, """\
        import torch.distributed
        torch.distributed.init_process_group('gloo')  # rank 0 names the run and tells the others
        logger = build(cfg)
        """)
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("TORCHELASTIC", "SLURM_", "COMPOSER_RUN_NAME", "RUN_NAME"))}
    environment.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    ranks = [subprocess.Popen([sys.executable, "train.py"], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**environment, "RANK": str(rank), "LOCAL_RANK": str(rank)})
             for rank in (0, 1)]
    assert [rank.communicate(timeout=120)[1] for rank in ranks] == ["", ""]
    (log0,) = [path for path in tmp_path.glob("*/logs-rank0.txt")]  # in the launch directory, as before Hydra's
    assert (log0.parent / "logs-rank1.txt").exists()


@pytest.mark.slow
def test_a_run_written_where_the_app_was_started_is_continued_with_the_run_directory_given_as_that(tmp_path):
    own_app(tmp_path)  # before the job's directory: the run's files in <run_name>/ where it started
    first = run(tmp_path, "train.py", "run_name=old", "resume=auto", "hydra.run.dir=.")
    assert first.returncode == 0 and (tmp_path / "old/run-rank0.json").exists(), first.stderr
    again = run(tmp_path, "train.py", "run_name=old", "resume=must", "hydra.run.dir=.")
    assert again.returncode == 0, again.stderr
    assert "run 'old' continues from its last checkpoint" in again.stdout  # (Hydra's job log, on the console)


@pytest.mark.slow
def test_lightning_hydra_templates_output_dir_interpolation_is_checked_and_used_as_in_the_job(tmp_path):
    own_app(tmp_path)
    with (tmp_path / "configs/train.yaml").open("a") as config:
        config.write("paths:\n  output_dir: ${hydra:runtime.output_dir}\n"
                     "logger:\n  destinations:\n    file:\n      filename: ${paths.output_dir}/logs/{run_name}.txt\n")
    out = run(tmp_path, "train.py", "run_name=lht", "hydra.run.dir=job")
    assert out.returncode == 0, out.stderr
    assert [name for name in written(tmp_path) if "lht" in name] == ["job/logs/lht.txt"]
    again = run(tmp_path, "train.py", "run_name=lht", "hydra.run.dir=job")  # checked where the job writes
    assert again.returncode == 2 and f"'{tmp_path / 'job/logs/lht.txt'}' already exists" in again.stderr
