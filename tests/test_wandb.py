"""WandBLogger against the real wandb library, offline; the run file is read back."""

import subprocess
import sys
from pathlib import Path

import pytest

from composer_cfg import ConfigError, Logger, State, TrainingLoop, WandBLogger, build_logger, compose_config
from conftest import needs, ranks
from wandb_records import offline_run, offline_runs

needs("wandb")


def train(logger: Logger, artifact: bool = False) -> None:
    Path("ckpt.txt").write_text("weights")
    loop = TrainingLoop(logger)
    logger.data_fit({"lr": 0.1, "optimizer": {"name": "sgd", "momentum": 0.9}})
    for _ in loop.epochs(2):
        for batch in loop.batches(3):
            logger.data_batch({"loss/train": 1.0 / (batch + 1)})
        logger.data_epoch({"accuracy": 0.5})
        if artifact:
            logger.file_artifact("epoch", "{run_name}/checkpoints/ep{epoch}.txt", "ckpt.txt")


def test_offline_run_records_history_config_and_name():
    with Logger(State("wb_run"), WandBLogger(project="tests")) as logger:
        train(logger)
    run = offline_run(Path("wandb"))
    assert run["name"] == "wb_run" and run["exit_code"] == 0
    assert run["config"] == {"lr": 0.1, "optimizer": {"name": "sgd", "momentum": 0.9}}
    assert run["history"] == {0: {"loss/train": 1.0}, 1: {"loss/train": 0.5}, 2: {"loss/train": 1 / 3},
                              3: {"loss/train": 0.25, "accuracy": 0.5}, 4: {"loss/train": 0.2},
                              5: {"loss/train": 1 / 6}, 6: {"accuracy": 0.5}}
    assert run["summary"] == {"loss/train": 1 / 6, "accuracy": 0.5}


def test_artifacts_are_single_files_with_sanitized_names_and_aliases():
    with Logger(State("wb_run"), WandBLogger(log_artifacts=True)) as logger:
        train(logger, artifact=True)
    assert offline_run(Path("wandb"))["artifacts"] == [
        {"name": "wb_run.checkpoints.ep0.txt", "type": "txt", "aliases": ["ep0-ba3", "latest"], "files": ["ep0.txt"]},
        {"name": "wb_run.checkpoints.ep1.txt", "type": "txt", "aliases": ["ep1-ba6", "latest"], "files": ["ep1.txt"]},
    ]


def test_a_run_ending_in_an_exception_finishes_with_exit_code_1():
    with pytest.raises(RuntimeError, match="diverged"):
        with Logger(State("wb_fail"), WandBLogger()) as logger:
            logger.data_batch({"loss": float("inf")})
            raise RuntimeError("diverged")
    assert offline_run(Path("wandb"))["exit_code"] == 1


def test_wandb_s_patches_of_sys_exit_and_excepthook_are_undone_when_its_run_finishes():
    before = sys.exit, sys.excepthook
    with Logger(State("wb_hooks"), WandBLogger()) as logger:
        logger.data_batch({"loss": 1.0})  # starts the run, on W&B's background thread
        assert logger.destinations[0].wait(30) == 0
        assert (sys.exit, sys.excepthook) != before  # wandb installed its own while the run is live
    assert (sys.exit, sys.excepthook) == before


def test_a_hook_installed_after_wandb_s_is_left_alone():
    def user_hook(*exc_info):
        pass

    excepthook = sys.excepthook
    try:
        with Logger(State("wb_user_hook"), WandBLogger()) as logger:
            logger.data_batch({"loss": 1.0})
            sys.excepthook = user_hook
        assert sys.excepthook is user_hook
    finally:
        sys.excepthook = excepthook


def test_rank_zero_only_and_per_rank_runs():
    with Logger(State("quiet", dist_info=ranks(2, rank=1)), WandBLogger()) as logger:
        train(logger)
    assert not Path("wandb").exists()
    with Logger(State("every", dist_info=ranks(2, rank=1)), WandBLogger(rank_zero_only=False)) as logger:
        logger.data_batch({"x": 1.0})
    run = offline_run(Path("wandb"))
    assert (run["name"], run["group"]) == ("every [RANK_1]", "every")


def test_selected_from_the_config_runs_offline():
    with build_logger(overrides=["run_name=cfg_run", "logger/destinations=[wandb]"]) as logger:
        logger.data_batch({"x": 2.0})
    run = offline_run(Path("wandb"))
    assert run["name"] == "cfg_run" and run["history"] == {0: {"x": 2.0}}


@pytest.mark.slow
def test_the_run_file_is_whole_when_the_process_has_exited(tmp_path):
    script = ("from composer_cfg import Logger, State, WandBLogger\n"
              "with Logger(State('exiting'), WandBLogger()) as logger:\n"
              "    logger.data_batch({'x': 3.0})\n")
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, timeout=120)
    run = offline_run(tmp_path / "wandb")
    assert (run["name"], run["history"], run["exit_code"]) == ("exiting", {0: {"x": 3.0}}, 0)


def test_composer_positional_order_and_init_kwargs_or_its_old_name_init_params():
    # Composer 0.8: WandBLogger(project, group, name, entity, tags, log_artifacts, rank_zero_only, init_kwargs)
    destination = WandBLogger("proj", "grp", "nm", None, ["a"], False, True, {"config": {"seed": 1}})
    with Logger(State("ignored"), destination) as logger:
        logger.data_batch({"x": 1.0})
    run = offline_run(Path("wandb"))
    assert (run["name"], run["group"], run["config"]) == ("nm", "grp", {"seed": 1})
    assert WandBLogger(init_params={"notes": "n"}).init_kwargs["notes"] == "n"
    with pytest.raises(ConfigError, match="init_params: give init_kwargs or init_params .*, not both"):
        WandBLogger(init_kwargs={"notes": "a"}, init_params={"notes": "b"})
    with pytest.raises(ConfigError, match="not both"):
        compose_config(["logger/destinations=[wandb]", "logger.destinations.wandb.init_kwargs={notes: a}",
                        "+logger.destinations.wandb.init_params={notes: b}"])


@pytest.mark.slow
def test_secrets_in_argv_and_init_config_stay_out_of_the_run_directory(tmp_path):
    script = ("import sys\nfrom composer_cfg import Logger, State, WandBLogger\n"
              "with Logger(State('meta'), WandBLogger(init_kwargs={'config': {'api_key': 'config-secret-91', "
              "'seed': 1}})) as logger:\n    logger.data_fit({'password': 'fit-secret-77', 'lr': 0.5})\n")
    (tmp_path / "script.py").write_text(script)

    def run(*argv: str) -> bytes:
        subprocess.run([sys.executable, "script.py", *argv], cwd=tmp_path, check=True, timeout=120)
        written = b"".join(path.read_bytes() for path in (tmp_path / "wandb").rglob("*") if path.is_file())
        assert b"config-secret-91" not in written and b"fit-secret-77" not in written
        return written

    assert b"plain-argument-5" in run("plain-argument-5")  # W&B records the command line...
    assert b"argv-secret-33" not in run("x.api_key=argv-secret-33")  # ...unless it holds a secret
    assert offline_runs(tmp_path / "wandb")[-1]["config"] == {"api_key": "***", "seed": 1, "password": "***", "lr": 0.5}


def test_a_sweep_job_joins_the_sweeps_group_unless_one_is_set_and_tags_are_cut_to_64_characters():
    long_override = "demo.checkpoint=" + "x" * 80
    joined = WandBLogger(tags=["mine"])
    joined.join_sweep("multirun/2026-11-26/10-00-00", ["demo.seed=1", long_override])
    assert joined.init_kwargs["group"] == "multirun/2026-11-26/10-00-00"
    assert joined.init_kwargs["tags"] == ["mine", "demo.seed=1", long_override[:64]]
    grouped = WandBLogger(group="ablation")
    grouped.join_sweep("multirun/2026-11-26/10-00-00", ["demo.seed=1"])
    assert grouped.init_kwargs["group"] == "ablation"
