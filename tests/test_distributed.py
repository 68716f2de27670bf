"""Several ranks: torchrun on CPU, plain environment variables, SLURM variables, a gloo group."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from composer_cfg import ConfigError
from composer_cfg.core.dist import DistInfo
from composer_cfg.core.run_name import resolve_run_name
from conftest import needs

BIN = Path(sys.executable).parent
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_", "SLURM_", "TORCHELASTIC", "COMPOSER_RUN_NAME"))}


def check_run(run_dir: Path, run_name: str, world_size: int) -> None:
    """One run directory: per-rank files complete, rank-zero-only destinations written once."""
    files = run_dir / run_name
    assert sorted(p.name for p in files.glob("logs-rank*.txt")) == [f"logs-rank{r}.txt" for r in range(world_size)]
    for rank in range(world_size):
        lines = (files / f"logs-rank{rank}.txt").read_text().splitlines()
        assert [line.split(": {")[0] for line in lines] == [
            "[FIT][batch=0]", "[EPOCH][batch=16]", "[EPOCH][batch=32]", "[EPOCH][batch=48]"]
        records = [json.loads(line) for line in (files / f"metrics-rank{rank}.jsonl").read_text().splitlines()]
        assert len(records) == 53 and {(r["rank"], r["run_name"]) for r in records} == {(rank, run_name)}
        assert records[0]["data"]["config"]["run_name"] == run_name  # every rank records the config
        assert [r["batch"] for r in records if r["level"] == "BATCH"] == list(range(48))
        assert sorted(p.name for p in (files / "checkpoints").iterdir() if f"rank{rank}." in p.name) == [
            f"ep{e + 1}-rank{rank}.npz" for e in range(3)]
    assert [p.name.rsplit(".", 1)[1] for p in (files / "tensorboard").iterdir()] == ["rank0"]
    assert sorted(p.name for p in run_dir.glob("composer_cfg-rank*.log")) == [
        f"composer_cfg-rank{r}.log" for r in range(world_size)]
    assert (run_dir / ".hydra" / "config.yaml").exists()


@pytest.mark.slow
def test_torchrun_four_ranks_share_one_run(tmp_path):
    needs("torch")
    env = {**CLEAN_ENV, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    out = subprocess.run([str(BIN / "torchrun"), "--nproc_per_node=4", "--standalone", "--log-dir", "torchrun_logs",
                          "--redirects", "3", "-m", "composer_cfg", "+logger/destinations=[jsonl,tensorboard]"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "outputs").iterdir()
    run_name = run_dir.name
    assert re.fullmatch(r"torchrun-[0-9a-f]{8}", run_name)
    check_run(run_dir, run_name, 4)
    stdouts = sorted(tmp_path.glob("torchrun_logs/*/attempt_0/*/stdout.log"))
    assert [log.read_text().splitlines()[0].split(" finished")[0] for log in stdouts] == [
        f"run {run_name} (rank {r} of 4)" for r in range(4)]


def launch(tmp_path: Path, env_of_rank, world_size: int = 4, *args: str) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen([sys.executable, "-m", "composer_cfg", "+logger/destinations=[jsonl,tensorboard]", *args],
                              cwd=tmp_path, env={**CLEAN_ENV, **env_of_rank(rank)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in range(world_size)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


@pytest.mark.slow
def test_plain_environment_variables_without_torch(tmp_path):
    results = launch(tmp_path, lambda rank: {"RANK": str(rank), "WORLD_SIZE": "4", "LOCAL_RANK": str(rank),
                                              "LOCAL_WORLD_SIZE": "4", "COMPOSER_RUN_NAME": "env_run"})
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    check_run(tmp_path / "outputs" / "env_run", "env_run", 4)
    assert "torch" not in "".join(r.stdout for r in results)


@pytest.mark.slow
def test_slurm_variables_name_the_run_after_the_job(tmp_path):
    results = launch(tmp_path, lambda rank: {"SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank),
                                              "SLURM_NTASKS_PER_NODE": "2", "SLURM_NODEID": "0", "SLURM_JOB_ID": "4242"},
                     2)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    check_run(tmp_path / "outputs" / "slurm-4242", "slurm-4242", 2)


def test_several_ranks_with_no_way_to_agree_on_a_name_stop_before_anything_is_written(tmp_path):
    results = launch(tmp_path, lambda rank: {"RANK": str(rank), "WORLD_SIZE": "2"}, 2)
    assert [r.returncode for r in results] == [2, 2]
    assert {r.stderr for r in results} == {
        "composer-cfg: error: run_name: not set, and the 2 ranks of this run can not agree on a generated one; "
        "set run_name in the config or COMPOSER_RUN_NAME in every rank's environment\n"}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_file_without_rank_is_refused_when_several_ranks_write(tmp_path):
    results = launch(tmp_path, lambda rank: {"RANK": str(rank), "WORLD_SIZE": "2"}, 2, "run_name=r",
                     'logger.destinations.jsonl.filename="{run_name}/metrics.jsonl"')
    assert [r.returncode for r in results] == [2, 2]
    assert results[0].stderr.startswith(
        "composer-cfg: error: logger.destinations.jsonl.filename: template '{run_name}/metrics.jsonl' has no {rank} field")
    assert list(tmp_path.iterdir()) == []


GLOO = """
import sys, torch.distributed as dist
from composer_cfg import build_logger
rank, store = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
logger = build_logger(overrides=["logger/destinations=[in_memory]"])
print(logger.state.run_name, logger.state.rank, logger.state.world_size, logger.state.dist.source)
logger.close()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_a_process_group_broadcasts_rank_zeros_generated_name(tmp_path):
    needs("torch")
    procs = [subprocess.Popen([sys.executable, "-c", GLOO, str(rank), str(tmp_path / "store")], cwd=tmp_path,
                              env={**CLEAN_ENV, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, text=True)
             for rank in range(2)]
    outputs = [proc.communicate(timeout=120)[0].split() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs[0][0] == outputs[1][0] and re.fullmatch(r"\d{10}-[a-z]+-[a-z]+", outputs[0][0])
    assert [o[1:] for o in outputs] == [["0", "2", "torch.distributed"], ["1", "2", "torch.distributed"]]


def test_run_name_order():
    two = DistInfo(rank=1, local_rank=1, world_size=2, local_world_size=2)
    assert resolve_run_name("cfg", two, {"COMPOSER_RUN_NAME": "env"}) == "cfg"
    assert resolve_run_name(None, two, {"COMPOSER_RUN_NAME": "env", "RUN_NAME": "other"}) == "env"
    assert resolve_run_name(None, two, {"RUN_NAME": "other", "SLURM_JOB_ID": "7"}) == "other"
    assert resolve_run_name(None, two, {"SLURM_JOB_ID": "7", "TORCHELASTIC_RUN_ID": "abc"}) == "slurm-7"
    assert resolve_run_name(None, two, {"TORCHELASTIC_RUN_ID": "0123456789abcdef"}) == "torchrun-01234567"
    with pytest.raises(ConfigError, match="the 2 ranks of this run can not agree"):
        resolve_run_name(None, two, {})
    with pytest.raises(ConfigError, match="COMPOSER_RUN_NAME: 'a/b' must not contain"):
        resolve_run_name(None, two, {"COMPOSER_RUN_NAME": "a/b"})


STRESS = """
import sys
from composer_cfg import FileLogger, JSONLinesLogger, Logger, State
with Logger(State("stress"), [FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False),
                              JSONLinesLogger()]) as logger:
    rank = logger.state.rank
    for i in range(10_000):
        logger.data_batch({"rank": rank, "i": i, "loss": i * 0.001})
        logger.state.timestamp = logger.state.timestamp.to_next_batch()
"""


@pytest.mark.slow
def test_stress_eight_processes_ten_thousand_calls_each(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", STRESS], cwd=tmp_path,
                              env={**CLEAN_ENV, "RANK": str(rank), "WORLD_SIZE": "8"}) for rank in range(8)]
    assert [proc.wait(timeout=180) for proc in procs] == [0] * 8
    for rank in range(8):
        lines = (tmp_path / "stress" / f"logs-rank{rank}.txt").read_text().splitlines()
        assert lines == [f'[BATCH][batch={i}]: {{ "rank": {rank}, "i": {i}, "loss": {i * 0.001:.4f}, }}'
                         for i in range(10_000)]
        records = (tmp_path / "stress" / f"metrics-rank{rank}.jsonl").read_text().splitlines()
        assert [json.loads(line)["data"]["i"] for line in records] == list(range(10_000))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"configured": "r" * 300},
         f"run_name: {'r' * 50!r}… is 300 bytes long, more than a file name may have (255 bytes)"),
        ({"env": {"COMPOSER_RUN_NAME": "é" * 128}},
         f"COMPOSER_RUN_NAME: {'é' * 50!r}… is 256 bytes long, more than a file name may have (255 bytes)"),
        ({"env": {"RUN_NAME": ".."}},
         "RUN_NAME: '..' must not contain '/' or '\\\\' or be '.' or '..': it names a directory"),
        ({"env": {"SLURM_JOB_ID": "7/../x"}},
         "SLURM_JOB_ID: 'slurm-7/../x' must not contain '/' or '\\\\' or be '.' or '..': it names a directory"),
        ({"configured": "a\x1b[2Jb"}, "run_name: 'a\\x1b[2Jb' contains a control character"),
        ({"configured": "a\x9bb"}, "run_name: 'a\\x9bb' contains a control character"),  # C1: a terminal's CSI
        ({"env": {"COMPOSER_RUN_NAME": "a\u2028b"}}, "COMPOSER_RUN_NAME: 'a\\u2028b' contains a control character"),
    ],
    ids=["config-too-long", "env-too-long-in-bytes", "dot-dot", "job-id", "control-character", "c1-control",
         "line-separator"],
)
def test_a_run_name_from_any_source_is_checked_the_same_way(source, message):
    with pytest.raises(ConfigError) as caught:
        resolve_run_name(source.get("configured"), DistInfo(), source.get("env", {}))
    assert str(caught.value) == message


def test_a_run_name_of_255_bytes_is_fine():
    assert resolve_run_name("r" * 255, DistInfo(), {}) == "r" * 255
