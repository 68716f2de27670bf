import subprocess
import sys
import textwrap

import pytest

from composer_cfg import dist
from composer_cfg.dist import DistInfo


def test_single_process_by_default():
    assert dist.current({}) == DistInfo()


def test_torchrun_variables():
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "NODE_RANK": "1"}
    info = dist.current(env)
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size, info.node_rank) == (5, 8, 1, 4, 1)


def test_slurm_variables_when_no_torchrun_ones():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "2",
           "SLURM_NODEID": "1"}
    info = dist.current(env)
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size, info.node_rank) == (3, 4, 1, 2, 1)
    assert info.source == "SLURM environment"


def test_torchrun_variables_win_over_slurm():
    env = {"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
    assert dist.current(env).rank == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "4", "WORLD_SIZE": "4"}, "rank 4 is outside world size 4 (RANK/WORLD_SIZE environment)"),
        ({"RANK": "x", "WORLD_SIZE": "4"}, "RANK='x' is not an integer"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
         "local rank 2 is outside local world size 2 (RANK/WORLD_SIZE environment)"),
    ],
)
def test_contradictions_are_errors(env, message):
    with pytest.raises(ValueError) as caught:
        dist.current(env)
    assert str(caught.value) == message


def test_environment_is_read_when_asked(monkeypatch):
    assert dist.current().rank == 0
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert dist.current().rank == 1


def in_a_process_group(tmp_path, body: str) -> str:
    """Run `body` in a fresh process that has a one-rank gloo group; return what it printed."""
    script = (
        "import os, torch.distributed as d\n"
        "from composer_cfg import dist\n"
        f"d.init_process_group('gloo', init_method='file://{tmp_path / 'store'}', rank=0, world_size=1)\n"
        f"{textwrap.dedent(body)}\n"
        "d.destroy_process_group()\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def test_initialised_process_group_is_the_first_source(tmp_path):
    printed = in_a_process_group(tmp_path, """
        os.environ['SLURM_PROCID'] = '0'
        info = dist.current()
        print(info.rank, info.world_size, info.source)
    """)
    assert printed == "0 1 torch.distributed"


def test_a_process_group_contradicting_the_environment_is_an_error(tmp_path):
    printed = in_a_process_group(tmp_path, """
        os.environ.update(RANK='1', WORLD_SIZE='2')
        try:
            dist.current()
        except ValueError as error:
            print(error)
    """)
    assert printed == "RANK=1 disagrees with the process group, where it is 0"
