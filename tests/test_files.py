"""No file is written through a symbolic link the run did not create."""

import os
from pathlib import Path

import numpy as np
import pytest

from composer_cfg import FileLogger, JSONLinesLogger, Logger, State
from composer_cfg.cli.demo import plot_metrics, run_demo
from composer_cfg.destinations import InMemoryLogger
from composer_cfg.run.files import replacing
from conftest import needs

VICTIM_TEXT = "precious\n"


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside the run that a planted link points at."""
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


def plant(link: str, target: Path) -> Path:
    path = Path(link)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no-overwrite"])
@pytest.mark.parametrize(
    ("make", "path", "kind"),
    [
        (lambda overwrite: FileLogger(overwrite=overwrite, capture_stdout=False, capture_stderr=False),
         "run/logs-rank0.txt", "log file"),
        (lambda overwrite: JSONLinesLogger(overwrite=overwrite, flush_interval=1), "run/metrics-rank0.jsonl",
         "metrics file"),
    ],
    ids=["file", "jsonl"],
)
def test_a_log_file_is_never_opened_through_a_planted_symbolic_link(victim, make, path, kind, overwrite):
    link = plant(path, victim)
    logger = Logger(State("run"), make(overwrite))
    with pytest.raises(FileExistsError) as caught:
        logger.data_fit({"a": 1})
    assert str(caught.value) == (
        f"{kind} '{link.absolute()}' is a symbolic link, which composer_cfg never writes through "
        "(it could point at any file): remove it, or use another run_name or filename"
    )
    logger.close()
    assert victim.read_text() == VICTIM_TEXT
    assert link.is_symlink()


def test_demo_checkpoints_and_plots_replace_a_planted_link_and_never_write_through_it(victim):
    needs("matplotlib")
    links = [plant(name, victim) for name in ("run/checkpoints/ep1-rank0.npz",
                                               "run/checkpoints/.ep1-rank0.npz.partial",  # the name it used to write
                                               "run/metrics-rank0.png")]
    with Logger(State("run"), InMemoryLogger()) as logger:
        run_demo(logger, epochs=1, batches_per_epoch=2, checkpoint="{run_name}/checkpoints/ep{epoch}-rank{rank}.npz")
        assert plot_metrics(logger) == Path("run/metrics-rank0.png").absolute()
    assert victim.read_text() == VICTIM_TEXT
    assert not links[0].is_symlink() and int(np.load(links[0])["epoch"]) == 0
    assert not links[2].is_symlink() and links[2].read_bytes().startswith(b"\x89PNG")
    assert sorted(os.listdir("run/checkpoints")) == [".ep1-rank0.npz.partial", "ep1-rank0.npz"]  # no leftovers


def test_a_file_replaced_whole_appears_at_once_and_a_failure_leaves_the_old_one(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with replacing(target) as file:
            file.write(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    with replacing(target) as file:
        file.write(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]
