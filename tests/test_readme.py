"""The README's examples run as shown."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_examples_run(tmp_path, code):
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_script_example_writes_what_it_says(tmp_path):
    subprocess.run([sys.executable, "-c", PYTHON_BLOCKS[0]], cwd=tmp_path, check=True, timeout=120)
    lines = (tmp_path / "my_run" / "logs-rank0.txt").read_text().splitlines()
    assert lines[0] == '[FIT][batch=0]: { "lr": 0.1000, }'
    assert len(lines) == 1 + 300 + 3


def test_error_transcript_is_what_the_command_prints(tmp_path):
    transcript = re.search(r"## Validation and errors.*?```\n(.*?)```", README, re.S).group(1)
    commands = re.findall(r"^\$ composer-cfg (.*)$", transcript, re.M)
    printed = [line for line in transcript.splitlines() if line.startswith("composer-cfg: error:")]
    produced = []
    for command in commands:
        args = [arg.strip("'") for arg in command.split()]
        out = subprocess.run([sys.executable, "-m", "composer_cfg", *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2
        produced += out.stderr.splitlines()
    assert produced == printed


def test_every_test_named_in_the_reliability_table_exists():
    table = re.search(r"\| what was tried .*?\n\n", README, re.S).group(0)
    named = re.findall(r"`(?:test_(\w+)::|…::)?(test_\w+)(?:\[\w+\])?`", table)
    assert len(named) >= 15
    module = None
    for file, test in named:
        module = f"test_{file}" if file else module
        source = (Path(__file__).parent / f"{module}.py").read_text()
        assert f"def {test}(" in source, f"{module}::{test}"
