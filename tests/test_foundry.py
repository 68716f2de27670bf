"""An llm-foundry ``loggers:`` block builds the same destinations, and its problems name its keys."""

import pytest

from composer_cfg import ConfigError, InMemoryLogger, JSONLinesLogger, TensorboardLogger, build_logger, compose_config

FOUNDRY_YAML = """\
defaults:
  - config   # composer_cfg's own primary config
  - _self_
run_name: foundry-run
loggers:
  inmemory: {}
  jsonl:
    flush_interval: 1
  tensorboard:
    log_dir: tb/{run_name}
"""


def test_a_foundry_yaml_moves_over_unchanged_and_builds_its_destinations(tmp_path):
    (tmp_path / "train.yaml").write_text(FOUNDRY_YAML)
    logger = build_logger(config_name="train", config_dir=tmp_path, overrides=["logger=none"])
    try:
        built = dict(logger.destinations.items())
        assert [(name, type(d)) for name, d in built.items()] == [
            ("in_memory", InMemoryLogger), ("jsonl", JSONLinesLogger), ("tensorboard", TensorboardLogger)]
        assert built["jsonl"].flush_interval == 1
        logger.log_metrics({"loss": 0.5}, step=3)
        assert built["in_memory"].most_recent_values == {"loss": 0.5}
    finally:
        logger.close()
    assert len(list((tmp_path / "tb" / "foundry-run").glob("events.out.tfevents.*"))) == 1


def test_the_block_replaces_a_preset_destination_of_the_same_name_and_keeps_the_others():
    cfg = compose_config(["+loggers={file: {log_level: batch}, inmemory: {}, in_memory_logger: {}}",
                          "run_name=${loggers.file.log_level}"])
    assert list(cfg.logger.destinations) == ["file", "in_memory", "progress_bar"]  # foundry's names: one in_memory
    assert dict(cfg.logger.destinations.file) == {"_target_": "composer_cfg.FileLogger", "log_level": "batch"}
    assert cfg.run_name == "batch"  # the block stays where it is: what refers to it still resolves


@pytest.mark.parametrize("override, message", [
    ("+loggers={wandb: {projct: p}}",
     "loggers.wandb.projct: unknown key for WandBLogger; did you mean 'project'? allowed: project, group, name, "
     "entity, tags, log_artifacts, rank_zero_only, init_kwargs, mode, dir, log_level, init_params, timeout, "
     "queue_size, when_full, undelivered (from command line '+loggers={wandb: {projct: p}}')"),
    ("+loggers={mosaicml: {}}",
     "loggers.mosaicml: not a composer_cfg destination; allowed: file, in_memory, progress_bar, jsonl, tensorboard, "
     "mlflow, wandb, object_store, inmemory, in_memory_logger (from command line '+loggers={mosaicml: {}}')"),
    ("+loggers=[wandb]",
     "loggers: expected a mapping of destination names to their arguments, got ['wandb'] "
     "(from command line '+loggers=[wandb]')"),
    ("+loggers={file: [1]}",
     "loggers.file: expected a mapping of FileLogger's arguments, got [1] (from command line '+loggers={file: [1]}')"),
    ("+loggers=${oc.env:COMPOSER_CFG_NOT_SET}",
     "loggers: cannot resolve '${oc.env:COMPOSER_CFG_NOT_SET}': KeyError raised while resolving interpolation: "
     "\"Environment variable 'COMPOSER_CFG_NOT_SET' not found\" (from command line "
     "'+loggers=${oc.env:COMPOSER_CFG_NOT_SET}')"),
    ("+loggers={tensorboard: {log_dir: '${nothere}'}}",
     "loggers.tensorboard.log_dir: cannot resolve '${nothere}': Interpolation key 'nothere' not found (from command "
     "line \"+loggers={tensorboard: {log_dir: '${nothere}'}}\")"),
])
def test_a_problem_in_the_block_is_one_line_naming_its_key_and_where_it_came_from(override, message):
    with pytest.raises(ConfigError) as raised:
        compose_config([override])
    assert str(raised.value) == message


def test_a_destination_of_the_block_changed_on_the_command_line_too_is_an_error_saying_how_to_change_it():
    with pytest.raises(ConfigError) as raised:
        compose_config(["+loggers={file: {log_level: batch}}", "logger.destinations.file.log_level=fit"])
    assert str(raised.value) == (
        "loggers.file: also changed on the command line ('logger.destinations.file.log_level=fit'): the destination "
        "is the block's; override loggers.file.<key> instead (from command line '+loggers={file: {log_level: batch}}')")
    cfg = compose_config(["+loggers={file: {log_level: batch}}", "loggers.file.log_level=fit"])
    assert cfg.logger.destinations.file.log_level == "fit"


def test_the_command_builds_the_destinations_of_a_loggers_block(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "composer_cfg", "+loggers={jsonl: {}, tensorboard: {log_dir: tb}}",
                          "run_name=f", "demo.epochs=1", "demo.batches_per_epoch=2", "hydra.run.dir=."],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "f" / "metrics-rank0.jsonl").stat().st_size > 0
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
