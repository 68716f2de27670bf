"""Every code block of docs/ runs as shown, and prints what the page says it prints."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from composer_cfg import compose_config
from composer_cfg.run.records import read_records
from conftest import needs

DOCS = Path(__file__).parents[1] / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# Scripts to run as they are; a block starting "# file: NAME" is a file of an example project, run by its own test.
BLOCKS = [(page, block) for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
          if not block.startswith("# file:")]
#: What a page's Python blocks need beyond the package: skipped, with the install hint, without it.
NEEDS = {"distributed": "torch"}


@pytest.mark.parametrize("page, code", BLOCKS, ids=[f"{page.stem}-{i}" for i, (page, _) in enumerate(BLOCKS)])
def test_every_python_block_runs_and_prints_what_follows_it(tmp_path, page, code):
    if page.stem in NEEDS:
        needs(NEEDS[page.stem])
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    after = text[text.index(code) + len(code):]
    shown = re.match(r"```\s*\n+prints\n+```\n(.*?)```", after, re.S)
    if shown:
        assert out.stdout == shown.group(1)


def test_the_foundry_block_of_the_media_page_composes_into_its_destinations(tmp_path):
    block = re.search(r"```yaml\n(loggers:.*?)```", (DOCS / "media.md").read_text(), re.S).group(1)
    (tmp_path / "train.yaml").write_text("defaults:\n  - config\n  - _self_\n" + block)
    cfg = compose_config(["logger=none"], config_name="train", config_dir=tmp_path)
    assert {name: node._target_ for name, node in cfg.logger.destinations.items()} == {
        "tensorboard": "composer_cfg.TensorboardLogger", "in_memory": "composer_cfg.InMemoryLogger"}


@pytest.mark.slow
def test_the_torchrun_command_of_the_distributed_page_runs_the_example_and_rank_zero_records_every_rank(tmp_path):
    needs("torch")
    (command,) = re.findall(r"```sh\n(torchrun .*?)\n```", (DOCS / "distributed.md").read_text(), re.S)
    shutil.copytree(DOCS.parent / "examples", tmp_path / "examples")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RANK", "WORLD_SIZE", "LOCAL_"))}
    out = subprocess.run([str(Path(sys.executable).parent / "torchrun"), *shlex.split(command)[1:]], cwd=tmp_path,
                         env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [[record for record in read_records(tmp_path / "ddp" / f"metrics-rank{rank}.jsonl")
              if record["level"] == "BATCH"] for rank in range(2)]
    assert [len(records) for records in ranks] == [16, 16]
    for mine, theirs in zip(*ranks):
        assert list(mine["data"]) == ["loss", "tokens", "grad_norm", "step_seconds", "step_seconds/rank"]
        assert list(theirs["data"]) == ["loss", "tokens", "grad_norm", "step_seconds"]  # rank 1 keeps its own
        assert (mine["data"]["tokens"], theirs["data"]["tokens"]) == (128, 64)
        assert mine["data"]["grad_norm"] == pytest.approx(theirs["data"]["grad_norm"], rel=1e-6)  # the same everywhere
        assert mine["data"]["step_seconds"] >= theirs["data"]["step_seconds"]
        assert mine["data"]["step_seconds/rank"] in (0, 1)
