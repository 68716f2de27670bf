"""A catalogue of bad configs: each names the exact key path, and nothing is built or written."""

import os
import subprocess
import sys

import pytest

from composer_cfg import ConfigError, build_logger

F = "logger.destinations.file"
M = "logger.destinations.in_memory"

# (overrides, expected key path of each problem, a fragment of the first message)
CATALOGUE = [
    ([f"{F}.log_level=verbose"], [f"{F}.log_level"], "invalid log level 'verbose': expected one of FIT, EPOCH, BATCH"),
    ([f"{F}.log_levl=batch"], [f"{F}.log_levl"], "unknown key for FileLogger; did you mean 'log_level'?"),
    ([f"++{F}.log_levl=batch"], [f"{F}.log_levl"], "unknown key for FileLogger; did you mean 'log_level'?"),
    ([f"{M}.log_level=0"], [f"{M}.log_level"], "invalid log level 0"),
    ([f"{F}.log_interval=0"], [f"{F}.log_interval"], "expected a positive integer, got 0"),
    ([f"{F}.flush_interval=-5"], [f"{F}.flush_interval"], "expected a positive integer, got -5"),
    ([f"{F}.buffer_size=big"], [f"{F}.buffer_size"], "expected an integer, got 'big' (str)"),
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
    ([f"{F}._target_=composer_cfg.Logger"], [f"{F}._target_"], "'composer_cfg.Logger' is not a LoggerDestination subclass"),
    ([f"{F}._target_=no_such_package.Thing"], [f"{F}._target_"], "no module named 'no_such_package'"),
    (["++logger.destinations.mine={log_level: batch}"], ["logger.destinations.mine._target_"], "missing; expected the import path"),
    (["logger._target_=composer_cfg.FileLogger"], ["logger._target_"], "is not a Logger subclass"),
    (["++logger.extra=1"], ["logger.extra"], "unknown key; allowed: _target_, destinations, defer_tensors, measure_overhead"),
    (["++logger.defer_tensor=true"], ["logger.defer_tensor"], "unknown key; did you mean 'defer_tensors'? allowed: _target_, destinations, defer_tensors, measure_overhead"),
    (["logger.defer_tensors=sometimes"], ["logger.defer_tensors"], "expected a boolean (true/false), got 'sometimes' (str)"),
    (["demo.epochs=0"], ["demo.epochs"], "expected a positive integer, got 0"),
    (["demo.learning_rate=fast"], ["demo.learning_rate"], "expected a number, got 'fast' (str)"),
    (['demo.checkpoint="/ckpt/{epoch}.npz"'], ["demo.checkpoint"], "is absolute"),
    (['demo.checkpoint="{step}.npz"'], ["demo.checkpoint"], "unknown field {step}"),
    (["demo.epoch=3"], ["demo.epoch"], "unknown key for run_demo; did you mean 'epochs'?"),
    (["+run_nmae=foo"], ["run_nmae"], "unknown top-level key; did you mean 'run_name'?"),
    (["+loggers={wandb: {}}"], ["loggers"], "unknown top-level key; did you mean 'logger'?"),
    (["dry_run=maybe"], ["dry_run"], "expected a boolean (true/false), got 'maybe'"),
    ([f'{F}.filename="${{run_name}}/log-{{rank}}.txt"'], [f"{F}.filename"],
     "'${run_name}/log-{rank}.txt' uses ${run_name}, an interpolation resolved when the config is composed (to null "
     "here); the run-time template field is written {run_name}: '{run_name}/log-{rank}.txt'"),
    ([f'{F}.filename="log-${{rank}}.txt"'], [f"{F}.filename"],
     "the run-time template field is written {rank} (one brace, no $)"),
    ([f"{F}.log_level=verbose", f"{F}.log_interval=0", "demo.epochs=0"],
     [f"{F}.log_level", f"{F}.log_interval", "demo.epochs"], "invalid log level"),
]


def test_the_catalogue_is_large_enough():
    assert len(CATALOGUE) >= 25


@pytest.mark.parametrize(("overrides", "keys", "fragment"), CATALOGUE, ids=[" ".join(c[0]) for c in CATALOGUE])
def test_bad_config_names_the_key_and_creates_nothing(tmp_path, overrides, keys, fragment):
    with pytest.raises(ConfigError) as caught:
        # (a run name of its own, unless the case is about the config's null run_name)
        build_logger(overrides=overrides if any("${run_name}" in o for o in overrides) else ["run_name=bad", *overrides])
    problems = caught.value.problems
    assert [problem.split(": ", 1)[0] for problem in problems] == keys
    assert fragment in problems[0]
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
