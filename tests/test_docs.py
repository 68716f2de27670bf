"""Every code block of docs/ runs as shown, and prints what the page says it prints."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from composer_cfg import compose_config

DOCS = Path(__file__).parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))
BLOCKS = [(page, block) for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)]


@pytest.mark.parametrize("page, code", BLOCKS, ids=[f"{page.stem}-{i}" for i, (page, _) in enumerate(BLOCKS)])
def test_every_python_block_runs_and_prints_what_follows_it(tmp_path, page, code):
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
