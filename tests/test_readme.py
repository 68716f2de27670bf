"""The README's examples run as shown, and the README stays a page a newcomer reads through.

What moved from the README to docs/ is tested in tests/test_docs.py."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()
# Scripts to run as they are; a block starting "# file: NAME" is a file of an example project.
PYTHON_BLOCKS = [block for block in re.findall(r"```python\n(.*?)```", README, re.S) if not block.startswith("# file:")]


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_examples_run(tmp_path, code):
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_script_example_writes_what_it_says(tmp_path):
    subprocess.run([sys.executable, "-c", PYTHON_BLOCKS[0]], cwd=tmp_path, check=True, timeout=120)
    lines = (tmp_path / "my_run" / "logs-rank0.txt").read_text().splitlines()
    assert lines[0] == '[FIT][batch=0]: { "lr": 0.1000, }'
    assert len(lines) == 1 + 300 + 3


def test_the_readme_is_at_most_300_lines():
    assert len(README.splitlines()) <= 300


@pytest.mark.slow
def test_the_error_of_the_command_line_quick_start_is_what_the_command_prints(tmp_path):
    section = README.split("### 2. Override on the command line")[1].split("\n### ")[0]
    transcript = re.search(r"```\n(\$ composer-cfg .*?)```", section, re.S).group(1)
    produced = []
    for command in re.findall(r"^\$ composer-cfg (.*)$", transcript, re.M):
        out = subprocess.run([sys.executable, "-m", "composer_cfg", *command.split()], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2
        produced += out.stderr.splitlines()
    assert produced == [line for line in transcript.splitlines() if line.startswith("composer-cfg: error:")]


def test_the_destinations_table_is_the_reference_pages():
    table = re.search(r"\| config name .*?\n\n", README, re.S).group(0)
    assert table.count("\n| `") == 8
    assert table in (Path(__file__).parents[1] / "docs" / "reference" / "destinations.md").read_text()
