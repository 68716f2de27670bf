import os
import subprocess
import sys
import textwrap

import pytest

from composer_cfg import ConfigError
from composer_cfg.core import dist
from composer_cfg.core.dist import DistInfo
from conftest import needs


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
        ({"RANK": "4", "WORLD_SIZE": "4"}, "RANK=4 is outside WORLD_SIZE=4: a rank must be 0 to 3"),
        ({"RANK": "5", "WORLD_SIZE": "2"}, "RANK=5 is outside WORLD_SIZE=2: a rank must be 0 to 1"),
        ({"RANK": "1"}, "RANK=1 is outside WORLD_SIZE (unset: 1): a rank must be 0 to 0"),
        ({"RANK": "abc", "WORLD_SIZE": "4"}, "RANK='abc': expected a whole number, 0 or more"),
        ({"RANK": "-1", "WORLD_SIZE": "4"}, "RANK='-1': expected a whole number, 0 or more"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0': expected a whole number, 1 or more"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
         "LOCAL_RANK=2 is outside LOCAL_WORLD_SIZE=2: a rank must be 0 to 1"),
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "2"}, "SLURM_PROCID=3 is outside SLURM_NTASKS=2: a rank must be 0 to 1"),
        ({"SLURM_PROCID": "0", "SLURM_NODEID": "x"}, "SLURM_NODEID='x': expected a whole number, 0 or more"),
    ],
)
def test_bad_rank_variables_are_config_errors_naming_the_variable_and_what_is_allowed(env, message):
    with pytest.raises(ConfigError) as caught:
        dist.current(env)
    assert str(caught.value) == message


@pytest.mark.parametrize("env", [{"RANK": "5", "WORLD_SIZE": "2"}, {"RANK": "abc"}], ids=["outside", "not-a-number"])
def test_the_command_reports_bad_rank_variables_in_one_line_and_creates_nothing(tmp_path, env):
    out = subprocess.run([sys.executable, "-m", "composer_cfg"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env})
    assert out.returncode == 2
    assert out.stderr == f"composer-cfg: error: {str(_error(env))}\n"
    assert list(tmp_path.iterdir()) == []


def _error(env) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        dist.current(env)
    return caught.value


def test_a_dist_info_built_by_hand_is_checked_too():
    with pytest.raises(ValueError, match="^rank 2 is outside world size 2: a rank must be 0 to 1$"):
        DistInfo(rank=2, world_size=2)


def test_environment_is_read_when_asked(monkeypatch):
    assert dist.current().rank == 0
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert dist.current().rank == 1


def in_a_process_group(tmp_path, body: str) -> str:
    """Run `body` in a fresh process that has a one-rank gloo group; return what it printed."""
    script = (
        "import os, torch.distributed as d\n"
        "from composer_cfg.core import dist\n"
        f"d.init_process_group('gloo', init_method='file://{tmp_path / 'store'}', rank=0, world_size=1)\n"
        f"{textwrap.dedent(body)}\n"
        "d.destroy_process_group()\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.slow
def test_initialised_process_group_is_the_first_source(tmp_path):
    needs("torch")
    printed = in_a_process_group(tmp_path, """
        os.environ['SLURM_PROCID'] = '0'
        info = dist.current()
        print(info.rank, info.world_size, info.source)
    """)
    assert printed == "0 1 torch.distributed"


@pytest.mark.slow
def test_a_process_group_contradicting_the_environment_is_an_error(tmp_path):
    needs("torch")
    printed = in_a_process_group(tmp_path, """
        os.environ.update(RANK='1', WORLD_SIZE='2')
        try:
            dist.current()
        except ValueError as error:
            print(error)
    """)
    assert printed == "RANK=1 disagrees with the process group, where it is 0"
