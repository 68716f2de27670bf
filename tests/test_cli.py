"""The composer-cfg command, end to end through its real entry point."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from composer_cfg import build_logger, compose_config
from composer_cfg.cli.demo import run_demo
from conftest import needs

COMMAND = Path(sys.executable).parent / "composer-cfg"
# a record of Hydra's job logging on the console, such as matplotlib's first-run font cache note
HYDRA_LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]\[[\w.]+\]\[[A-Z]+\] - ")


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "composer_cfg", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    if check:
        assert out.returncode == 0, out.stderr
    return out


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.slow
def test_demo_with_the_default_config(tmp_path):
    needs("matplotlib")  # the demo's plot
    out = cli("run_name=demo", "hydra.run.dir=run", cwd=tmp_path)
    run = tmp_path / "run"
    lines = log_lines(run / "demo" / "logs-rank0.txt")
    assert lines[0] == ('[FIT][batch=0]: { "hparams/epochs": 3, "hparams/batch_size": 32, "hparams/learning_rate": '
                        '0.5000, "hparams/features": 8, "hparams/seed": 0, }')
    assert [line.split(": {")[0] for line in lines[1:]] == ["[EPOCH][batch=16]", "[EPOCH][batch=32]", "[EPOCH][batch=48]"]
    assert all('"loss/epoch": ' in line and '"metrics/epoch/accuracy": ' in line for line in lines[1:])
    for epoch in range(3):  # named as Composer names them: ep1 is where a run continues after epoch 0
        checkpoint = np.load(run / "demo" / "checkpoints" / f"ep{epoch + 1}-rank0.npz")
        assert checkpoint["weights"].shape == (8,) and int(checkpoint["epoch"]) == epoch
    assert not list(run.rglob("*.partial"))
    summary = [line for line in out.stdout.splitlines() if not HYDRA_LOG_RECORD.match(line)]
    assert summary[0].startswith("run demo (rank 0 of 1) finished: loss/epoch=")
    assert summary[1:] == [
        f"  file: {run / 'demo' / 'logs-rank0.txt'}",
        "  in_memory: in memory (10 keys)",
        "  progress_bar: the console (stderr)",
        f"  plot: {run / 'demo' / 'metrics-rank0.png'}",
        "logging, per destination:",
        f"  file: {(run / 'demo' / 'logs-rank0.txt').stat().st_size:,} bytes written",
    ]
    bars = out.stderr.splitlines()
    assert [bar.split(":")[0] for bar in bars] == ["Epoch     0 train", "Epoch     1 train", "Epoch     2 train"]
    assert all("100%|#########################| 16/16 [" in bar and "loss/train=0." in bar for bar in bars)
    assert (run / ".hydra" / "config.yaml").exists() and (run / "composer_cfg.log").exists()


@pytest.mark.slow
def test_default_run_directory_is_under_outputs(tmp_path):
    cli("run_name=dated", cwd=tmp_path)
    (log,) = tmp_path.glob("outputs/*/*/dated/logs-rank0.txt")
    assert len(log_lines(log)) == 4


@pytest.mark.slow
def test_console_script_and_module_are_the_same_command(tmp_path):
    direct = subprocess.run([str(COMMAND), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert direct.returncode == 0 and direct.stdout == cli("--help", cwd=tmp_path).stdout


@pytest.mark.slow
def test_override_a_key(tmp_path):
    cli("run_name=o", "hydra.run.dir=run", "logger.destinations.file.log_level=batch", cwd=tmp_path)
    lines = log_lines(tmp_path / "run" / "o" / "logs-rank0.txt")
    assert [line.split("]")[0] for line in lines].count("[BATCH") == 48
    assert lines[1].startswith('[BATCH][batch=0]: { "loss/train": ')


def destination_names(out: subprocess.CompletedProcess) -> list[str]:
    """The destinations the run's summary lists (before its logging report)."""
    lines = out.stdout.split("\nlogging, per destination")[0].splitlines()[1:]
    return [line.split(":")[0].strip() for line in lines if not line.startswith("  plot:")]


@pytest.mark.slow
def test_select_several(tmp_path):
    out = cli("run_name=s", "hydra.run.dir=run", "logger/destinations=[in_memory,file]", cwd=tmp_path)
    assert destination_names(out) == ["in_memory", "file"]
    out = cli("run_name=s1", "hydra.run.dir=run1", "logger/destinations=[in_memory]", cwd=tmp_path)
    assert destination_names(out) == ["in_memory"]


@pytest.mark.slow
def test_add_one_from_a_user_config_dir(tmp_path):
    conf = tmp_path / "my_conf" / "logger" / "destinations"
    conf.mkdir(parents=True)
    (conf / "second_file.yaml").write_text(
        "second_file:\n  _target_: composer_cfg.FileLogger\n  filename: '{run_name}/second-{rank}.txt'\n"
        "  capture_stdout: false\n  capture_stderr: false\n"
    )
    out = cli("-cd", str(tmp_path / "my_conf"), "run_name=a", "hydra.run.dir=run", "+logger/destinations=second_file",
              cwd=tmp_path)
    assert destination_names(out) == ["file", "in_memory", "progress_bar", "second_file"]
    assert len(log_lines(tmp_path / "run" / "a" / "second-0.txt")) == 4


@pytest.mark.slow
@pytest.mark.parametrize("override", ["logger.destinations.file=null", "~logger.destinations.file"])
def test_disable_one(tmp_path, override):
    out = cli("run_name=d", "hydra.run.dir=run", override, cwd=tmp_path)
    assert destination_names(out) == ["in_memory", "progress_bar"]
    assert not (tmp_path / "run" / "d" / "logs-rank0.txt").exists()


@pytest.mark.slow
def test_change_a_template_with_the_documented_quoting(tmp_path):
    cli("run_name=t", "hydra.run.dir=run", 'logger.destinations.file.filename="logs/{run_name}-r{rank}.txt"',
        'demo.checkpoint="ckpt/{run_name}-ep{epoch:03d}.npz"', cwd=tmp_path)
    assert (tmp_path / "run" / "logs" / "t-r0.txt").exists()
    assert sorted(p.name for p in (tmp_path / "run" / "ckpt").iterdir()) == ["t-ep001.npz", "t-ep002.npz", "t-ep003.npz"]


def test_cfg_job_prints_the_same_config_build_logger_composes(tmp_path):
    overrides = ["run_name=same", "logger.destinations.file.log_level=BATCH", "logger/destinations=[file]",
                 "demo.epochs=5"]
    printed = yaml.safe_load(cli("--cfg", "job", *overrides, cwd=tmp_path).stdout)
    assert printed == OmegaConf.to_container(compose_config(overrides))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_and_build_logger_write_the_same_lines(tmp_path):
    overrides = ["run_name=agree", "logger.destinations.file.log_level=batch", "demo.epochs=2",
                 "logger.destinations.file.capture_stdout=false"]
    cli(*overrides, "hydra.run.dir=cli", cwd=tmp_path)
    script = tmp_path / "script"
    script.mkdir()
    os.chdir(script)
    with build_logger(overrides=overrides) as logger:
        run_demo(logger, epochs=2)
    assert log_lines(script / "agree" / "logs-rank0.txt") == log_lines(tmp_path / "cli" / "agree" / "logs-rank0.txt")


def test_info_defaults_shows_each_destination_file(tmp_path):
    out = cli("--info", "defaults", cwd=tmp_path)
    rows = [[cell.strip() for cell in line.split("|")[1:3]] for line in out.stdout.splitlines() if line.startswith("|")]
    assert ["logger/destinations/file", "logger.destinations"] in rows
    assert ["logger/destinations/in_memory", "logger.destinations"] in rows


def test_help_lists_the_destination_options(tmp_path):
    out = cli("--help", cwd=tmp_path)
    assert "logger/destinations: file, in_memory, jsonl, mlflow, object_store, progress_bar, tensorboard, wandb" in out.stdout.splitlines()
    assert "composer-cfg 'logger.destinations.file.filename=\"logs/{run_name}-{rank}.txt\"'" in out.stdout


@pytest.mark.slow
def test_multirun_jobs_are_complete_and_separate(tmp_path):
    cli("-m", "run_name=sweep", "demo.epochs=1,2", "demo.seed=0,1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    for job, epochs in enumerate([1, 1, 2, 2]):
        lines = log_lines(tmp_path / "sweep" / str(job) / "sweep" / "logs-rank0.txt")
        assert len(lines) == 1 + epochs
        assert len(list((tmp_path / "sweep" / str(job) / "sweep" / "checkpoints").iterdir())) == epochs


def test_dry_run_validates_and_creates_nothing(tmp_path):
    out = cli("dry_run=true", "run_name=dry", cwd=tmp_path)
    assert out.stdout.splitlines() == [
        "config OK, nothing built or written. run_name: dry",
        "  file: composer_cfg.FileLogger(filename='{run_name}/logs-rank{rank}.txt', artifact_name=None, "
        "log_level='epoch', log_interval=1, flush_interval=100, flush_seconds=None, buffer_size=1, capture_stdout=True, "
        "capture_stderr=True, overwrite=False)",
        "  in_memory: composer_cfg.InMemoryLogger(log_level='batch')",
        "  progress_bar: composer_cfg.ProgressBarLogger(progress_bar=True, log_to_console=None, "
        "console_log_level='epoch', stream='stderr')",
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["dry_run=true"]])
def test_introspection_does_not_create_the_run_directory(tmp_path, args):
    cli(*args, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_jsonl_and_tensorboard_from_the_command_line_then_plot(tmp_path):
    cli("run_name=viz", "hydra.run.dir=run", "+logger/destinations=[jsonl,tensorboard]", cwd=tmp_path)
    from tensorboard.backend.event_processing import event_accumulator as ea

    from composer_cfg.run.records import read_records

    records = list(read_records(tmp_path / "run" / "viz" / "metrics-rank0.jsonl"))
    assert [r["level"] for r in records].count("BATCH") == 48 and len(records) == 2 + 48 + 3  # FIT: config, hparams
    events = ea.EventAccumulator(str(tmp_path / "run" / "viz" / "tensorboard"), size_guidance={ea.SCALARS: 0})
    events.Reload()
    assert [e.step for e in events.Scalars("loss/train")] == list(range(48))
    assert [e.value for e in events.Scalars("loss/train")] == pytest.approx([r["data"]["loss/train"] for r in records
                                                                            if r["level"] == "BATCH"])
    plot = subprocess.run([sys.executable, "-m", "composer_cfg.run.plot", "run", "--metrics", "loss/train"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0 and (tmp_path / "run" / "metrics.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("override", ["logger=null", "logger=none", "~logger"])
def test_no_logging_runs_the_demo_with_no_destination(tmp_path, override):
    out = cli("run_name=quiet", "hydra.run.dir=run", override, cwd=tmp_path)
    assert out.stdout.splitlines()[0].startswith("run quiet (rank 0 of 1) finished: loss/epoch=")
    assert destination_names(out) == []
    assert not list((tmp_path / "run" / "quiet").glob("*-rank0.*"))  # only the demo's own checkpoints


@pytest.mark.slow
def test_a_refused_second_run_into_the_same_directory_changes_nothing(tmp_path):
    cli("run_name=twice", "hydra.run.dir=run", cwd=tmp_path)
    saved = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (tmp_path / "run").rglob("*")
             if path.is_file()}
    out = cli("run_name=twice", "hydra.run.dir=run", cwd=tmp_path, check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"composer-cfg: error: logger.destinations.file.filename: '{tmp_path / 'run/twice/logs-rank0.txt'}' already "
        f"exists (a run named 'twice' wrote it): continue that run with resume=auto, choose another run_name, or set "
        f"overwrite=true to replace it (from logger/destinations/file.yaml in pkg://composer_cfg.conf)"]
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (tmp_path / "run").rglob("*")
            if path.is_file()} == saved


@pytest.mark.slow
def test_the_users_primary_config_and_option_files_are_the_ones_checked_and_run(tmp_path):
    """With -cd, the user's config.yaml and a user file shadowing a packaged option are what the
    dry run shows and what runs (they used to be checked, then not used)."""
    conf = tmp_path / "my_conf"
    (conf / "logger" / "destinations").mkdir(parents=True)
    packaged = (Path(__file__).parents[1] / "conf" / "config.yaml").read_text()
    (conf / "config.yaml").write_text(packaged.replace("  epochs: 3\n", "  epochs: 1\n"))
    (conf / "logger" / "destinations" / "file.yaml").write_text(
        "file:\n  _target_: composer_cfg.FileLogger\n  log_level: batch\n")
    dry = cli("-cd", str(conf), "dry_run=true", "run_name=mine", cwd=tmp_path)
    assert "  file: composer_cfg.FileLogger(log_level='batch')" in dry.stdout.splitlines()
    cli("-cd", str(conf), "run_name=mine", "hydra.run.dir=run", cwd=tmp_path)
    lines = log_lines(tmp_path / "run" / "mine" / "logs-rank0.txt")
    assert [line.split("]")[0] for line in lines].count("[BATCH") == 16  # one epoch, every batch


@pytest.mark.slow
def test_a_destination_module_next_to_the_user_imports_under_the_console_script(tmp_path):
    conf = tmp_path / "my_conf" / "logger" / "destinations"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("mine:\n  _target_: my_module.Mine\n")
    (tmp_path / "my_module.py").write_text(
        "from composer_cfg import LoggerDestination\nclass Mine(LoggerDestination):\n    pass\n")
    out = subprocess.run([str(COMMAND), "-cd", "my_conf", "run_name=m", "hydra.run.dir=run",
                          "logger/destinations=[mine]", "logger.allowed_modules=[my_module]"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert destination_names(out) == ["mine"]


@pytest.mark.slow
def test_without_chdir_every_file_of_the_run_is_in_the_job_directory(tmp_path):
    """Checkpoints, run-config.yaml and the plot (of the records file, read back) resolve through the
    run's state, as the logs do: none lands in the working directory, so a second run of that name
    there finds nothing of it."""
    needs("matplotlib")  # the demo's plot
    out = cli("run_name=c2", "hydra.job.chdir=false", "hydra.run.dir=job", "logger/destinations=[file,jsonl]",
              cwd=tmp_path)
    files = {path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file()}
    assert {"job/c2/logs-rank0.txt", "job/c2/metrics-rank0.jsonl", "job/c2/run-config.yaml", "job/c2/metrics-rank0.png",
            *(f"job/c2/checkpoints/ep{epoch}-rank0.npz" for epoch in (1, 2, 3))} <= files
    assert all(file.startswith("job/") for file in files), files
    assert f"  plot: {tmp_path / 'job' / 'c2' / 'metrics-rank0.png'}" in out.stdout.splitlines()


@pytest.mark.slow
def test_without_chdir_a_continued_run_restores_its_checkpoint_from_the_job_directory(tmp_path):
    """Started again from another working directory, a run continues from the checkpoint in its
    job directory, with the results of a run that was never interrupted."""
    job = tmp_path / "job"
    for attempt, epochs in (("a", 1), ("b", 2)):
        (tmp_path / attempt).mkdir()
        out = cli("run_name=c3", "resume=auto", "hydra.job.chdir=false", f"hydra.run.dir={job}", f"demo.epochs={epochs}",
                  "logger/destinations=[file]", cwd=tmp_path / attempt)
        assert list((tmp_path / attempt).iterdir()) == []
    assert sorted(path.name for path in (job / "c3" / "checkpoints").iterdir()) == ["ep1-rank0.npz", "ep2-rank0.npz"]
    whole = cli("run_name=c4", "hydra.run.dir=whole", "demo.epochs=2", "logger/destinations=[file]", cwd=tmp_path)
    assert finished(out) == finished(whole)


def finished(out: subprocess.CompletedProcess) -> str:
    """The metrics the command's run finished with."""
    (line,) = [line for line in out.stdout.splitlines() if " finished: " in line and not HYDRA_LOG_RECORD.match(line)]
    return line.split(" finished: ")[1]


def test_version_names_composer_cfg_and_hydra(tmp_path):
    import hydra

    import composer_cfg

    assert cli("--version", cwd=tmp_path).stdout == f"composer-cfg {composer_cfg.__version__} (Hydra {hydra.__version__})\n"
    assert list(tmp_path.iterdir()) == []


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    out = subprocess.run(f"'{COMMAND}' dry_run=true run_name=p | head -1", shell=True, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout == "config OK, nothing built or written. run_name: p\n" and out.stderr == ""


@pytest.mark.slow
def test_the_saved_config_records_the_generated_run_name(tmp_path):
    out = cli("hydra.run.dir=run", "logger/destinations=[in_memory]", cwd=tmp_path)
    run_name = out.stdout.split()[1]
    saved = yaml.safe_load((tmp_path / "run" / ".hydra" / "config.yaml").read_text())
    assert saved["run_name"] == run_name and run_name.count("-") == 2


def test_overrides_after_the_multirun_flag_are_checked_for_every_job_before_any_runs(tmp_path):
    out = cli("demo.epochs=1", "-m", "logger.destinations.file.log_level=batch,bogus", "hydra.sweep.dir=sweep",
              cwd=tmp_path, check=False)
    assert out.returncode == 2
    assert out.stderr.splitlines()[0].startswith(
        "composer-cfg: error: job demo.epochs=1 logger.destinations.file.log_level=bogus hydra.sweep.dir=sweep: ")
    assert not (tmp_path / "sweep").exists()  # job 0 did not run either
