"""A catalogue of bad configs: each names the exact key path, and nothing is built or written."""

import os
import subprocess
import sys

import pytest

from composer_cfg import ConfigError, build_logger, compose_config
from conftest import needs_destinations

F = "logger.destinations.file"
M = "logger.destinations.in_memory"
J = "logger.destinations.jsonl"
P = "logger.destinations.progress_bar"
T = "logger.destinations.tensorboard"
ML = "logger.destinations.mlflow"
W = "logger.destinations.wandb"
O = "logger.destinations.object_store"
JSONL, TB, MLFLOW, WANDB = ("logger/destinations=[jsonl]", "logger/destinations=[tensorboard]",
                            "logger/destinations=[mlflow]", "logger/destinations=[wandb]")
STORE = ("logger/destinations=[object_store]", f"{O}.url=store")

# (overrides, expected key path of each problem, a fragment of the first message)
CATALOGUE = [
    ([f"{F}.log_level=verbose"], [f"{F}.log_level"], "invalid log level 'verbose': expected one of FIT, EPOCH, BATCH"),
    ([f"{F}.log_levl=batch"], [f"{F}.log_levl"], "unknown key for FileLogger; did you mean 'log_level'?"),
    ([f"++{F}.log_levl=batch"], [f"{F}.log_levl"], "unknown key for FileLogger; did you mean 'log_level'?"),
    ([f"{M}.log_level=0"], [f"{M}.log_level"], "invalid log level 0"),
    ([f"{F}.log_interval=0"], [f"{F}.log_interval"], "expected a positive integer, got 0"),
    ([f"{F}.flush_interval=-5"], [f"{F}.flush_interval"], "expected a positive integer, got -5"),
    ([f"{F}.flush_seconds=0"], [f"{F}.flush_seconds"], "expected a positive number, got 0"),
    ([f"{F}.flush_seconds=-1.5"], [f"{F}.flush_seconds"], "expected a positive number, got -1.5"),
    ([f"{F}.flush_seconds=soon"], [f"{F}.flush_seconds"], "expected a positive number, got 'soon'"),
    ([f"{F}.buffer_size=big"], [f"{F}.buffer_size"], "expected -1 (the system default), 1 (line buffered) or a size in bytes, got 'big' (str)"),
    ([f"{F}.capture_stdout=maybe"], [f"{F}.capture_stdout"], "expected a boolean (true/false), got 'maybe'"),
    ([f"{F}.overwrite=3"], [f"{F}.overwrite"], "expected a boolean (true/false), got 3 (int)"),
    ([f"{F}.filename=123"], [f"{F}.filename"], "expected a string, got 123 (int)"),
    ([f'{F}.filename="{{rnak}}.txt"'], [f"{F}.filename"], "unknown field {rnak} in template '{rnak}.txt': did you mean {rank}?"),
    ([f'{F}.filename="{{epoch}}-{{rank}}.txt"'], [f"{F}.filename"], "unknown field {epoch}"),
    ([f'{F}.filename="{{}}.txt"'], [f"{F}.filename"], "positional field {}"),
    ([f'{F}.filename="{{rank.__class__}}"'], [f"{F}.filename"], "uses attribute or index access"),
    ([f'{F}.filename="{{run_name[0]}}"'], [f"{F}.filename"], "uses attribute or index access"),
    ([f'{F}.artifact_name="C:/{{rank}}.txt"'], [f"{F}.artifact_name"], "is absolute"),
    ([f'{F}.artifact_name="../{{rank}}.txt"'], [f"{F}.artifact_name"], "climbs out of the artifact root"),
    ([f"{F}.filename={{run_name}}.txt"], [f"{F}.filename"], "a {field} template must be quoted for Hydra too"),
    (["run_name=a/b"], ["run_name"], "must not contain '/'"),
    (["run_name=???"], ["run_name"], "missing value (???)"),
    ([f"{F}.filename=???", f"{M}.log_level=???"], [f"{F}.filename", f"{M}.log_level"], "missing value (???)"),
    (["run_name=${oc.env:COMPOSER_CFG_TEST_UNSET}"], ["run_name"],
     "Environment variable 'COMPOSER_CFG_TEST_UNSET' not found"),
    (["logger/destinations=[file,nope]"], ["logger/destinations"],
     "unknown option 'nope'; available: file, in_memory, jsonl, mlflow, object_store, progress_bar, tensorboard, wandb"),
    (["+logger/destinations=fil"], ["logger/destinations"], "unknown option 'fil'; did you mean 'file'?"),
    (["logger=nope"], ["logger"], "unknown option 'nope'; did you mean 'none'? available: all_local, default, none, "
                                  "trackers"),
    (["~logger/destinations=file"], ["logger/destinations"],
     "Hydra 1.3 cannot remove one option of a multi-select (~logger/destinations=file, hydra#2843); "
     "use ~logger.destinations.file or logger.destinations.file=null"),
    ([f"{F}._target_=composer_cfg.FileLoger"], [f"{F}._target_"], "composer_cfg has no attribute 'FileLoger'; did you mean 'FileLogger'?"),
    ([f"{F}._target_=composer_cfg.Logger"], [f"{F}._target_"], "'composer_cfg.Logger' is not a LoggerDestination or Sink subclass"),
    (["++logger.destinations.file._args_=[a.txt]"], ["logger.destinations.file._args_"],
     "positional argument 0 of FileLogger is 'filename', which is also given by name: give it once"),
    ([f"{F}._target_=no_such_package.Thing"], [f"{F}._target_"],
     "'no_such_package.Thing' is outside the modules this config may import from (composer_cfg); if you trust it, "
     "add its module to logger.allowed_modules, e.g. 'logger.allowed_modules=[no_such_package]'"),
    (["logger.allowed_modules=[no_such_package]", f"{F}._target_=no_such_package.Thing"], [f"{F}._target_"],
     "no module named 'no_such_package'"),
    (["++logger.destinations.mine={log_level: batch}"], ["logger.destinations.mine._target_"], "missing; expected the import path"),
    (["logger._target_=composer_cfg.FileLogger"], ["logger._target_"], "is not a Logger subclass"),
    (["++logger.extra=1"], ["logger.extra"], "unknown key; allowed: destinations, allowed_modules, measure_overhead"),
    (["++logger.measure_overhaed=true"], ["logger.measure_overhaed"], "unknown key; did you mean 'measure_overhead'? allowed: destinations, allowed_modules, measure_overhead"),
    (["logger.measure_overhead=sometimes"], ["logger.measure_overhead"], "expected a boolean (true/false), got 'sometimes' (str)"),
    # a typo under a preset chosen on the same command line names the typo, not the preset
    (["logger=all_local", "logger.measure_overhed=true"], ["logger.measure_overhed"], "unknown key; did you mean 'measure_overhead'?"),
    (["logger.reduce={loss:median}"], ["logger.reduce.loss"], "expected one of mean, sum, min, max, got 'median'"),
    # switches of the last release that are now what always happens
    (["++logger.offload_writers=true"], ["logger.offload_writers"], "unknown key; allowed: destinations, allowed_modules, measure_overhead"),
    (["demo.epochs=0"], ["demo.epochs"], "expected a positive integer, got 0"),
    (["demo.learning_rate=fast"], ["demo.learning_rate"], "expected a number, got 'fast' (str)"),
    (['demo.checkpoint="/ckpt/{epoch}.npz"'], ["demo.checkpoint"], "is absolute"),
    (['demo.checkpoint="{step}.npz"'], ["demo.checkpoint"], "unknown field {step}"),
    (["demo.epoch=3"], ["demo.epoch"], "unknown key for run_demo; did you mean 'epochs'?"),
    (["+run_nmae=foo"], ["run_nmae"], "unknown top-level key; did you mean 'run_name'?"),
    (["+logers={wandb: {}}"], ["logers"], "unknown top-level key; did you mean 'loggers'?"),
    (["dry_run=maybe"], ["dry_run"], "expected a boolean (true/false), got 'maybe'"),
    (["resume=sometimes"], ["resume"], "expected one of never, auto, must, got 'sometimes'"),
    (["resume=must"], ["resume"], "'must', but there is no run 'bad' to continue"),
    ([f'{F}.filename="${{run_name}}/log-{{rank}}.txt"'], [f"{F}.filename"],
     "'${run_name}/log-{rank}.txt' uses ${run_name}, an interpolation resolved when the config is composed (to null "
     "here); the run-time template field is written {run_name}: '{run_name}/log-{rank}.txt'"),
    ([f'{F}.filename="log-${{rank}}.txt"'], [f"{F}.filename"],
     "the run-time template field is written {rank} (one brace, no $)"),
    ([f"{F}.log_level=verbose", f"{F}.log_interval=0", "demo.epochs=0"],
     [f"{F}.log_level", f"{F}.log_interval", "demo.epochs"], "invalid log level"),
    # -- file: ranges, emptiness, names --------------------------------------------------------
    ([f"{F}.buffer_size=0"], [f"{F}.buffer_size"], "expected -1 (the system default), 1 (line buffered) or a size in "
                                                   "bytes, got 0"),
    ([f"{F}.buffer_size=-2"], [f"{F}.buffer_size"], "got -2"),
    ([f"{F}.filename=''"], [f"{F}.filename"], "expected a file path, got ''"),
    ([f"{F}.filename='  '"], [f"{F}.filename"], "expected a file path, got '  '"),
    ([f"{F}.filename='logs/'"], [f"{F}.filename"], "'logs/' names a directory, not a file"),
    ([f"{F}.filename='a/../b-{{rank}}.txt'"], [f"{F}.filename"],
     "'a/../b-{rank}.txt' is also the artifact's name, where '..' may only lead the path"),
    ([f"{F}.filename='{{rank:>99999999}}.txt'"], [f"{F}.filename"], "format width or precision 99999999"),
    ([f"{F}.filename='{{run_name}}/{'x' * 300}-{{rank}}.txt'"], [f"{F}.filename"],
     "more than a file name may have (255 bytes)"),
    ([f"{F}.log_interval=true"], [f"{F}.log_interval"], "expected a positive integer, got True (bool)"),
    ([f"{F}.capture_stderr=1"], [f"{F}.capture_stderr"], "expected a boolean (true/false), got 1 (int)"),
    ([f"{F}.artifact_name=''"], [f"{F}.artifact_name"], "artifact name is empty"),
    ([f"{F}.artifact_name='{{epoch}}.txt'"], [f"{F}.artifact_name"], "unknown field {epoch}"),
    # -- in_memory, progress_bar ------------------------------------------------------------------
    ([f"{M}.bogus=1"], [f"{M}.bogus"], "unknown key for InMemoryLogger; allowed: log_level"),
    ([f"{M}.log_level=[batch]"], [f"{M}.log_level"], "expected a log level: one of FIT, EPOCH, BATCH"),
    ([f"{P}.stream=stdlog"], [f"{P}.stream"], "expected 'stdout' or 'stderr' (or a text stream), got 'stdlog'"),
    ([f"{P}.log_level=batch"], [f"{P}.log_level"], "unknown key for ProgressBarLogger; did you mean "
                                                   "'console_log_level'?"),
    ([f"{P}.console_log_level=loud"], [f"{P}.console_log_level"], "invalid log level 'loud'"),
    ([f"{P}.progress_bar=yes"], [f"{P}.progress_bar"], "expected a boolean (true/false), got 'yes'"),
    # -- jsonl --------------------------------------------------------------------------------------
    ([JSONL, f"{J}.filename=''"], [f"{J}.filename"], "expected a file path, got ''"),
    ([JSONL, f"{J}.filename='{{rnak}}.jsonl'"], [f"{J}.filename"], "unknown field {rnak}"),
    ([JSONL, f"{J}.filename='x/../y-{{rank}}.jsonl'"], [f"{J}.filename"], "where '..' may only lead the path"),
    ([JSONL, f"{J}.filename='jsonl/'"], [f"{J}.filename"], "'jsonl/' names a directory, not a file"),
    ([JSONL, f"{J}.flush_interval=0"], [f"{J}.flush_interval"], "expected a positive integer, got 0"),
    ([JSONL, f"{J}.flush_seconds=0"], [f"{J}.flush_seconds"], "expected a positive number, got 0"),
    ([JSONL, f"{J}.flush_seconds=-5"], [f"{J}.flush_seconds"], "expected a positive number, got -5"),
    ([JSONL, f"{J}.flush_seconds=often"], [f"{J}.flush_seconds"], "expected a positive number, got 'often'"),
    ([JSONL, f"{J}.flush_seconds=.inf"], [f"{J}.flush_seconds"], "expected a positive number"),
    ([JSONL, f"{J}.overwrite=yes"], [f"{J}.overwrite"], "expected a boolean (true/false), got 'yes'"),
    ([JSONL, f"{J}.log_level=sometimes"], [f"{J}.log_level"], "invalid log level 'sometimes'"),
    ([JSONL, f"{J}.artifact_name='../x.jsonl'"], [f"{J}.artifact_name"], "climbs out of the artifact root"),
    ([JSONL, f"++{J}.filenme=x"], [f"{J}.filenme"], "did you mean 'filename'?"),
    # -- tensorboard --------------------------------------------------------------------------------
    ([TB, f"{T}.log_dir=''"], [f"{T}.log_dir"], "expected a directory path, got ''"),
    ([TB, f"{T}.log_dir='{{x}}'"], [f"{T}.log_dir"], "unknown field {x} in template '{x}'"),
    ([TB, f"{T}.log_dir='a/../../b'"], [f"{T}.log_dir"], "'a/../../b' is also the artifact's name"),
    ([TB, f"{T}.log_dir='{{epoch}}'"], [f"{T}.log_dir"], "unknown field {epoch}"),
    ([TB, f"{T}.log_dir='${{run_name}}/tb'"], [f"{T}.log_dir"],
     "'${run_name}/tb' uses ${run_name}, an interpolation resolved when the config is composed (to null here); "
     "the run-time template field is written {run_name}: '{run_name}/tb'"),
    ([TB, f"{T}.log_dir='${{rank}}/tb'"], [f"{T}.log_dir"], "the run-time template field is written {rank}"),
    ([TB, f"{T}.flush_interval=0"], [f"{T}.flush_interval"], "expected a positive integer, got 0"),
    ([TB, f"{T}.flush_seconds=0"], [f"{T}.flush_seconds"], "expected a positive number, got 0"),
    ([TB, f"{T}.flush_seconds=x"], [f"{T}.flush_seconds"], "expected a positive number, got 'x'"),
    ([TB, f"{T}.rank_zero_only=maybe"], [f"{T}.rank_zero_only"], "expected a boolean (true/false), got 'maybe'"),
    ([TB, f"++{T}.logdir=x"], [f"{T}.logdir"], "did you mean 'log_dir'?"),
    # -- mlflow -------------------------------------------------------------------------------------
    ([MLFLOW, f"{ML}.tracking_uri=''"], [f"{ML}.tracking_uri"], "expected a tracking URI"),
    ([MLFLOW, f"{ML}.tracking_uri='foo://x'"], [f"{ML}.tracking_uri"],
     "MLflow has no tracking store for 'foo://x'; it knows "),
    ([MLFLOW, f"{ML}.tracking_uri='sqlite:///{{rnak}}.db'"], [f"{ML}.tracking_uri"], "unknown field {rnak}"),
    ([MLFLOW, f"{ML}.tracking_uri='sqlite:///${{run_name}}/m.db'"], [f"{ML}.tracking_uri"],
     "the run-time template field is written {run_name}: 'sqlite:///{run_name}/m.db'"),
    ([MLFLOW, f"{ML}.tracking_uri='sqlite:///{'d' * 300}.db'"], [f"{ML}.tracking_uri"],
     "more than a file name may have (255 bytes)"),
    ([MLFLOW, f"{ML}.experiment_name=''"], [f"{ML}.experiment_name"], "expected the name of an MLflow experiment"),
    ([MLFLOW, f"{ML}.experiment_name={'e' * 600}"], [f"{ML}.experiment_name"],
     "exceeds the maximum length of 500 characters"),
    ([MLFLOW, f"{ML}.experiment_name=7"], [f"{ML}.experiment_name"], "expected a string, got 7 (int)"),
    ([MLFLOW, f"{ML}.run_name='{{rnak}}'"], [f"{ML}.run_name"], "unknown field {rnak}"),
    ([MLFLOW, f"{ML}.run_name='${{run_name}}'"], [f"{ML}.run_name"], "uses ${run_name}, an interpolation"),
    ([MLFLOW, f"+{ML}.tags={{a: 1}}"], [f"{ML}.tags.a"], "expected a string, got 1 (int)"),
    ([MLFLOW, f"+{ML}.tags={{a: [x]}}"], [f"{ML}.tags.a"], "expected a string, got ['x'] (list)"),
    ([MLFLOW, f"+{ML}.tags={{{'k' * 300}: x}}"], [f"{ML}.tags.{'k' * 300}"], "MLflow refuses this tag"),
    ([MLFLOW, f"{ML}.tags=[a]"], [f"{ML}.tags"], "can not be set from the command line: Cannot merge DictConfig "
                                                 "with ListConfig"),
    ([MLFLOW, f"{ML}.flush_interval=0"], [f"{ML}.flush_interval"], "expected a positive integer, got 0"),
    ([MLFLOW, f"{ML}.flush_seconds=-1"], [f"{ML}.flush_seconds"], "expected a positive number, got -1"),
    ([MLFLOW, f"{ML}.flush_seconds=[5]"], [f"{ML}.flush_seconds"], "expected a positive number"),
    ([MLFLOW, f"{ML}.timeout=0"], [f"{ML}.timeout"], "expected a positive number, got 0"),
    ([MLFLOW, f"{ML}.timeout=.inf"], [f"{ML}.timeout"], "expected a positive number"),
    ([MLFLOW, f"{ML}.log_level=4"], [f"{ML}.log_level"], "invalid log level 4"),
    ([MLFLOW, f"++{ML}.experiment=x"], [f"{ML}.experiment"], "did you mean 'experiment_name'?"),
    # -- wandb --------------------------------------------------------------------------------------
    ([WANDB, f"{W}.mode=sideways"], [f"{W}.mode"],
     "W&B refuses 'sideways': Input should be 'online', 'offline', 'shared', 'disabled', 'dryrun' or 'run'"),
    ([WANDB, f"{W}.project='a/b'"], [f"{W}.project"], "Invalid project name 'a/b'"),
    ([WANDB, f"{W}.project={'p' * 200}"], [f"{W}.project"], "exceeded 128 characters"),
    ([WANDB, f"{W}.tags=[1,2]"], [f"{W}.tags.0"], "expected a string, got 1 (int)"),
    ([WANDB, f"{W}.tags=[{'t' * 100}]"], [f"{W}.tags"], "Tags must be between 1 and 64 characters"),
    ([WANDB, f"{W}.dir=''"], [f"{W}.dir"], "expected a directory path, got ''"),
    ([WANDB, f"{W}.timeout=0"], [f"{W}.timeout"], "expected a positive number, got 0"),
    ([WANDB, f"{W}.when_full=wait"], [f"{W}.when_full"], "expected one of block, drop, got 'wait'"),
    ([WANDB, f"{W}.undelivered=keep"], [f"{W}.undelivered"], "expected one of spool, drop, got 'keep'"),
    ([MLFLOW, f"{ML}.queue_size=0"], [f"{ML}.queue_size"], "expected a positive integer, got 0"),
    ([MLFLOW, f"{ML}.when_full=Drop"], [f"{ML}.when_full"], "expected one of block, drop, got 'Drop'"),
    ([*STORE, f"{O}.when_full=spool"], [f"{O}.when_full"], "expected one of block, drop, got 'spool'"),
    ([WANDB, f"{W}.log_artifacts=maybe"], [f"{W}.log_artifacts"], "expected a boolean (true/false), got 'maybe'"),
    ([WANDB, f"+{W}.init_kwargs.bogus=1"], [f"{W}.init_kwargs.bogus"], "not an argument of wandb.init"),
    ([WANDB, f"+{W}.init_kwargs.mode=x"], [f"{W}.init_kwargs.mode"], "W&B refuses 'x'"),
    ([WANDB, f"+{W}.init_kwargs.settings={{mode: sideways}}"], [f"{W}.init_kwargs.settings.mode"],
     "W&B refuses 'sideways'"),
    ([WANDB, f"++{W}.init_params={{bogus: 1}}"], [f"{W}.init_params.bogus"], "not an argument of wandb.init"),
    ([WANDB, f"+{W}.init_kwargs.mode=online", f"++{W}.init_params={{mode: offline}}"], [f"{W}.init_params"],
     "give init_kwargs or init_params (its Composer 0.7 name), not both"),
    ([WANDB, f"{W}.init_kwargs=3"], [f"{W}.init_kwargs"], "expected a mapping, got 3 (int)"),
    ([WANDB, f"++{W}.projet=x"], [f"{W}.projet"], "did you mean 'project'?"),
    # -- object_store -------------------------------------------------------------------------------
    (["logger/destinations=[object_store]", f"{O}.url=''"], [f"{O}.url"], "expected a URL or a directory, got ''"),
    (["logger/destinations=[object_store]", f"{O}.url=nope://b"], [f"{O}.url"],
     "unknown protocol 'nope' in 'nope://b'; fsspec knows "),
    (["logger/destinations=[object_store]", f"{O}.url=."], [f"{O}.url"], "'.' is the run's directory ("),
    (["logger/destinations=[object_store,file]", f"{O}.url=logs", f"{F}.filename='logs/x-{{rank}}.txt'"], [f"{O}.url"],
     f"'logs' holds the file {F}.filename writes"),
    ([*STORE, f"{O}.should_log_artifact=composer_cfg.nothing"], [f"{O}.should_log_artifact"],
     "cannot import 'composer_cfg.nothing': composer_cfg has no attribute 'nothing'"),
    ([*STORE, f"{O}.should_log_artifact=os.system"], [f"{O}.should_log_artifact"],
     "'os.system' is outside the modules this config may import from (composer_cfg)"),
    ([*STORE, f"{O}.should_log_artifact=composer_cfg.core.templates.DIST_FIELDS"], [f"{O}.should_log_artifact"],
     "'composer_cfg.core.templates.DIST_FIELDS' is not callable"),
    ([*STORE, f"{O}.should_log_artifact=composer_cfg.core.dist.current"], [f"{O}.should_log_artifact"],
     "'composer_cfg.core.dist.current' can not be called as f(state, log_level, artifact_name)"),
    ([*STORE, f"{O}.should_log_artifact=3"], [f"{O}.should_log_artifact"], "expected a function"),
    ([*STORE, f"{O}.object_name='../x'"], [f"{O}.object_name"], "climbs out of the artifact root"),
    ([*STORE, f"{O}.object_name='{{nope}}'"], [f"{O}.object_name"], "unknown field {nope}"),
    ([*STORE, f"{O}.object_name=''"], [f"{O}.object_name"], "artifact name is empty"),
    ([*STORE, f"{O}.num_concurrent_uploads=0"], [f"{O}.num_concurrent_uploads"], "expected a positive integer, got 0"),
    ([*STORE, f"{O}.max_retries=-1"], [f"{O}.max_retries"], "expected a non-negative integer, got -1"),
    ([*STORE, f"{O}.retry_backoff=-1", f"{O}.close_timeout=0"], [f"{O}.retry_backoff", f"{O}.close_timeout"],
     "expected a non-negative number, got -1"),
    ([*STORE, f"{O}.storage_options=3"], [f"{O}.storage_options"], "expected a mapping, got 3 (int)"),
    # nested _target_s: the same import policy and signature checks as a destination's own
    ([*STORE, f"+{O}.storage_options={{x: {{_target_: shutil.copyfile, src: a, dst: b}}}}"],
     [f"{O}.storage_options.x._target_"], "'shutil.copyfile' is outside the modules this config may import from"),
    ([*STORE, f"+{O}.storage_options={{x: [{{_target_: os.system, command: ls}}]}}"],
     [f"{O}.storage_options.x.0._target_"], "'os.system' is outside the modules"),
    ([*STORE, f"+{O}.storage_options={{x: {{_target_: composer_cfg.FileLogger, bogus: 1}}}}"],
     [f"{O}.storage_options.x.bogus"], "unknown key for FileLogger"),
    ([*STORE, f"+{O}.storage_options={{x: {{_target_: composer_cfg.FileLogger, buffer_size: 0}}}}"],
     [f"{O}.storage_options.x.buffer_size"], "got 0"),
    ([*STORE, f"+{O}.storage_options={{x: {{y: {{_target_: composer_cfg.config.params.local_root}}}}}}"],
     [f"{O}.storage_options.x.y.url"], "missing: local_root requires url"),
    ([*STORE, f"+{O}.storage_options={{x: {{_target_: composer_cfg.nothing}}}}"],
     [f"{O}.storage_options.x._target_"], "composer_cfg has no attribute 'nothing'"),
    # -- composer_cfg's own keys, at every level ------------------------------------------------------
    (["+run_nmae=foo", "+logers={wandb: {}}"], ["run_nmae", "logers"], "unknown top-level key"),
    (["run_name=.."], ["run_name"], "'..' must not contain '/' or '\\\\' or be '.' or '..'"),
    (["run_name=''"], ["run_name"], "expected a non-empty string, got ''"),
    ([f"run_name={'r' * 300}"], ["run_name"], "more than a file name may have (255 bytes)"),
    (["run_name=[a]"], ["run_name"], "expected a non-empty string"),
    (["logger.allowed_modules=notalist"], ["logger.allowed_modules"], "expected a list of module names"),
    (["logger.allowed_modules=['a b']"], ["logger.allowed_modules"], "'a b' is not a module name"),
    (["++logger.destinatons={}"], ["logger.destinatons"], "unknown key; did you mean 'destinations'?"),
    (["++logger.allowed_module=[x]"], ["logger.allowed_module"], "did you mean 'allowed_modules'?"),
    (["logger.destinations=[file]"], ["logger.destinations"], "can not be set from the command line"),
    (["demo.batch_size=0"], ["demo.batch_size"], "expected a positive integer, got 0"),
    (["demo._target_=os.system"], ["demo._target_"], "'os.system' is outside the modules"),
]

# (environment, the variable named, a fragment of the message): the run's facts from the environment
ENVIRONMENT = [
    ({"RANK": "5", "WORLD_SIZE": "2"}, "RANK", "RANK=5 is outside WORLD_SIZE=2: a rank must be 0 to 1"),
    ({"RANK": "abc"}, "RANK", "RANK='abc': expected a whole number, 0 or more"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE", "WORLD_SIZE='0': expected a whole number, 1 or more"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK",
     "LOCAL_RANK=3 is outside LOCAL_WORLD_SIZE=2"),
    ({"COMPOSER_RUN_NAME": ".."}, "COMPOSER_RUN_NAME", "'..' must not contain '/'"),
    ({"COMPOSER_RUN_NAME": "r" * 300}, "COMPOSER_RUN_NAME", "more than a file name may have (255 bytes)"),
]

# (a user's config.yaml, the key of its one problem, a fragment of the message): files that are
# not plain YAML, and values only a file can hold (keys Hydra's override grammar can not write)
USER_CONFIG_HEAD = "defaults:\n  - logger: default\n  - _self_\nrun_name: bad\n"
FILES = [
    (USER_CONFIG_HEAD + "dry_run: [true\n", "config.yaml:6:1", "not valid YAML: expected ',' or ']'"),
    (USER_CONFIG_HEAD + "dry_run:\ttrue\n", "config.yaml:5:9", "found character '\\t' that cannot start any token"),
    (USER_CONFIG_HEAD + "run_name: other\n", "config.yaml:5:1", "not valid YAML: found duplicate key run_name"),
    (USER_CONFIG_HEAD + "dry_run: !!python/object/apply:os.system [ls]\n", "config.yaml:5:10",
     "the tag !!python/object/apply:os.system is not allowed"),
    (USER_CONFIG_HEAD + "logger:\n  destinations:\n    mlflow:\n      _target_: composer_cfg.MLFlowLogger\n"
                        "      tags: {'bad?name': x}\n", f"{ML}.tags.bad?name", "MLflow refuses this tag"),
    (USER_CONFIG_HEAD + "logger:\n  destinations:\n    mlflow:\n      _target_: composer_cfg.MLFlowLogger\n"
                        "      tags: {ok: 3.5}\n", f"{ML}.tags.ok", "expected a string, got 3.5 (float)"),
    (USER_CONFIG_HEAD + "logger:\n  destinations:\n    file:\n      filename: \"a\\nb-{rank}.txt\"\n",
     f"{F}.filename", "contains a control character"),
    (USER_CONFIG_HEAD + "logger:\n  destinations:\n    tensorboard:\n      _target_: composer_cfg.TensorboardLogger\n"
                        "      log_dir: [a]\n", f"{T}.log_dir", "expected a string, got ['a'] (list)"),
]


def test_the_catalogue_is_large_enough():
    assert len(CATALOGUE) + len(ENVIRONMENT) + len(FILES) >= 100


@pytest.mark.parametrize(("overrides", "keys", "fragment"), CATALOGUE, ids=[" ".join(c[0]) for c in CATALOGUE])
def test_bad_config_names_the_key_and_creates_nothing(tmp_path, overrides, keys, fragment):
    needs_destinations(" ".join(overrides))
    with pytest.raises(ConfigError) as caught:
        # (a run name of its own, unless the case is about the config's null run_name)
        build_logger(overrides=overrides if any("${run_name}" in o for o in overrides) else ["run_name=bad", *overrides])
    problems = caught.value.problems
    assert [problem.split(": ", 1)[0] for problem in problems] == keys
    assert fragment in problems[0]
    assert all("\n" not in problem for problem in problems)
    assert list(tmp_path.iterdir()) == []


def test_a_per_rank_file_without_rank_with_several_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=bad", f'{F}.filename="{{run_name}}/log.txt"'])
    assert caught.value.problems == [
        f"{F}.filename: template '{{run_name}}/log.txt' has no {{rank}} field, so the 2 ranks of this run would "
        f"write the same file; add {{rank}}, e.g. 'logs-rank{{rank}}.txt' "
        f"(from command line '{F}.filename=\"{{run_name}}/log.txt\"')"
    ]
    assert list(tmp_path.iterdir()) == []


def test_problems_name_the_yaml_file_when_the_value_comes_from_one(tmp_path):
    conf = tmp_path / "conf" / "logger" / "destinations"
    conf.mkdir(parents=True)
    (conf / "file.yaml").write_text("file:\n  _target_: composer_cfg.FileLogger\n  log_level: sometimes\n")
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=bad"], config_dir=tmp_path / "conf")
    assert caught.value.problems == [
        f"{F}.log_level: invalid log level 'sometimes': expected one of FIT, EPOCH, BATCH (any case) or their "
        f"values 1, 2, 3 (from logger/destinations/file.yaml in file://{tmp_path / 'conf'})"
    ]


def test_packaged_file_is_named_for_values_it_sets():
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=bad", "demo.epochs=${oc.decode:'0'}"])
    assert caught.value.problems == [
        "demo.epochs: expected a positive integer, got 0 (from command line \"demo.epochs=${oc.decode:'0'}\")"
    ]


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        ([f"{F}.log_level=verbose", "demo.epochs=0"], [
            f"composer-cfg: error: {F}.log_level: invalid log level 'verbose': expected one of FIT, EPOCH, BATCH "
            f"(any case) or their values 1, 2, 3 (from command line '{F}.log_level=verbose')",
            "composer-cfg: error: demo.epochs: expected a positive integer, got 0 (from command line 'demo.epochs=0')",
        ]),
        (["logger/destinations=[file,jsonl_typo]"], [
            "composer-cfg: error: logger/destinations: unknown option 'jsonl_typo'; did you mean 'jsonl'? available: file, "
            "in_memory, jsonl, mlflow, object_store, progress_bar, tensorboard, wandb",
        ]),
        (["-m", "demo.epochs=1,0"], [
            "composer-cfg: error: job demo.epochs=0: demo.epochs: expected a positive integer, got 0 "
            "(from command line 'demo.epochs=0')",
        ]),
    ],
)
def test_cli_prints_one_line_per_error_exits_2_and_creates_nothing(tmp_path, args, stderr):
    out = subprocess.run([sys.executable, "-m", "composer_cfg", *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert out.returncode == 2
    assert out.stderr.splitlines() == stderr
    assert out.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "env", "stderr"),
    [
        ([], {"COMPOSER_RUN_NAME": "a/b"},
         "composer-cfg: error: COMPOSER_RUN_NAME: 'a/b' must not contain '/' or '\\\\' or be '.' or '..': "
         "it names a directory"),
        ([f"run_name={'r' * 300}"], {},
         f"composer-cfg: error: run_name: {'r' * 50!r}… is 300 bytes long, more than a file name may have "
         f"(255 bytes) (from command line {'run_name=' + 'r' * 191!r}…)"),
    ],
    ids=["bad-environment-name", "name-too-long"],
)
def test_a_bad_run_name_from_any_source_is_one_line_before_anything_exists(tmp_path, args, env, stderr):
    out = subprocess.run([sys.executable, "-m", "composer_cfg", *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "HYDRA_FULL_ERROR": "0", **env})
    assert (out.returncode, out.stderr.splitlines(), out.stdout) == (2, [stderr], "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("env", "variable", "fragment"), ENVIRONMENT, ids=[str(c[0]) for c in ENVIRONMENT])
def test_bad_run_facts_from_the_environment_name_the_variable(tmp_path, monkeypatch, env, variable, fragment):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        build_logger()
    assert caught.value.key == variable and fragment in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("text", "key", "fragment"), FILES, ids=[c[1] for c in FILES])
def test_bad_user_config_files_are_one_line_naming_the_place(tmp_path, text, key, fragment):
    needs_destinations(text)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        build_logger(config_dir=conf)
    (problem,) = caught.value.problems
    assert problem.split(": ", 1)[0].removeprefix(f"{conf}/") == key
    assert fragment in problem
    assert [path.name for path in tmp_path.iterdir()] == ["conf"] and os.listdir(conf) == ["config.yaml"]


def test_a_file_in_the_way_of_a_path_the_run_creates(tmp_path):
    (tmp_path / "blocker").write_text("")
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=bad", f"{F}.filename='blocker/log-{{rank}}.txt'"])
    assert caught.value.problems == [
        f"{F}.filename: '{tmp_path}/blocker/log-0.txt' can not be created: '{tmp_path}/blocker' is a file "
        f"(from command line \"{F}.filename='blocker/log-{{rank}}.txt'\")"
    ]
    assert os.listdir(tmp_path) == ["blocker"]


def test_nested_targets_from_an_allowed_module_are_built_and_checked(tmp_path, monkeypatch):
    """A nested node passes the policy once its module is listed, and its parameters are still
    checked against its signature; Hydra builds it into the destination's parameter."""
    (tmp_path / "my_options.py").write_text("def options(region: int = 1) -> dict:\n    return {'region': region}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    node = f"+{O}.storage_options={{auto_mkdir: {{_target_: my_options.options, region: east}}}}"
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=n", *STORE, "logger.allowed_modules=[my_options]", node])
    assert caught.value.problems == [f"{O}.storage_options.auto_mkdir.region: expected an integer, got 'east' (str) "
                                     f"(from command line '{node}')"]
    good = node.replace("east", "2")
    with build_logger(overrides=["run_name=n", *STORE, "logger.allowed_modules=[my_options]", good]) as logger:
        (store,) = logger.destinations
        assert store.storage_options == {"auto_mkdir": {"region": 2}}


# A representative subset, as the command meets them: exit 2, one line each, nothing created.
CLI = [
    ([f"{F}.buffer_size=0"], None, f"composer-cfg: error: {F}.buffer_size: expected -1 (the system default), 1 (line "
                                   f"buffered) or a size in bytes, got 0 (from command line '{F}.buffer_size=0')"),
    ([WANDB, f"{W}.mode=sideways"], None, f"composer-cfg: error: {W}.mode: W&B refuses 'sideways'"),
    ([MLFLOW, f"{ML}.tracking_uri=foo://x"], None, f"composer-cfg: error: {ML}.tracking_uri: MLflow has no tracking "
                                                   f"store for 'foo://x'"),
    ([*STORE, f"+{O}.storage_options={{x: {{_target_: shutil.copyfile, src: a, dst: b}}}}"], None,
     f"composer-cfg: error: {O}.storage_options.x._target_: 'shutil.copyfile' is outside the modules"),
    (["+run_nmae=foo"], None, "composer-cfg: error: run_nmae: unknown top-level key; did you mean 'run_name'?"),
    ([TB, f"{T}.log_dir='${{rank}}/tb'"], None, f"composer-cfg: error: {T}.log_dir: cannot resolve '${{rank}}/tb'"),
    (["-cd", "missing"], None, "composer-cfg: error: config_dir: "),
    (["-cd", "conf"], "dry_run: [true\n", "composer-cfg: error: "),
    (["-cd", "conf"], "run_name: a\nrun_name: b\n", "composer-cfg: error: "),
    (["-cd", "conf"], "run_name: !!python/name:os.system\n", "composer-cfg: error: "),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "config", "start"), CLI, ids=[" ".join(c[0]) for c in CLI])
def test_the_command_says_one_line_exits_2_and_creates_nothing(tmp_path, args, config, start):
    if config is not None:
        (tmp_path / "conf").mkdir()
        (tmp_path / "conf" / "config.yaml").write_text(config)
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    out = subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=bad", *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    (line,) = out.stderr.splitlines()
    assert (out.returncode, out.stdout) == (2, "") and line.startswith(start)
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before


def test_the_command_refuses_a_run_directory_it_could_not_create(tmp_path):
    (tmp_path / "outputs").write_text("")
    out = subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=bad"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    (line,) = out.stderr.splitlines()
    assert out.returncode == 2
    assert line.startswith(f"composer-cfg: error: hydra.run.dir: '{tmp_path}/outputs/")
    assert f"can not be created: '{tmp_path}/outputs' is a file" in line
    assert os.listdir(tmp_path) == ["outputs"]


@pytest.mark.parametrize("chosen", ["on the command line", "in the primary config"])
def test_a_bad_key_in_a_logger_choice_of_ones_own_names_its_file_however_the_choice_was_made(tmp_path, chosen):
    (tmp_path / "logger").mkdir()
    (tmp_path / "logger" / "mine.yaml").write_text(
        "defaults:\n  - default\n  - override destinations: [file, jsonl]\n  - _self_\n\n"
        "destinations:\n  jsonl:\n    flush_intervl: 1\n")
    if chosen == "in the primary config":
        (tmp_path / "train.yaml").write_text("defaults:\n  - config\n  - override logger: mine\n  - _self_\n")
    with pytest.raises(ConfigError) as caught:
        if chosen == "on the command line":
            compose_config(["logger=mine"], config_dir=tmp_path)
        else:
            compose_config([], config_name="train", config_dir=tmp_path)
    assert str(caught.value) == (
        "logger.destinations.jsonl.flush_intervl: unknown key for JSONLinesLogger; did you mean 'flush_interval'? "
        "allowed: filename, artifact_name, log_level, flush_interval, flush_seconds, overwrite "
        f"(from logger/mine.yaml in file://{tmp_path})")


def test_a_typo_of_an_apps_own_key_on_the_command_line_suggests_the_key_it_is_close_to(tmp_path):
    (tmp_path / "train.yaml").write_text("defaults:\n  - config\n  - _self_\n\nepochs: 3\nmodel:\n  width: 8\n")
    for override, message in [
        ("epochz=3", "epochz: not in the config as given; did you mean 'epochs'? to add it, write '++epochz=3'"),
        ("model.widht=4", "model.widht: not in the config as given; did you mean 'width'? to add it, write "
                          "'++model.widht=4'"),
        ("seed=1", "seed: not in the config as given; to add it, write '++seed=1'"),  # nothing close: no guess
    ]:
        with pytest.raises(ConfigError) as caught:
            compose_config([override], config_name="train", config_dir=tmp_path)
        assert str(caught.value) == f"{message} (from command line '{override}')"
