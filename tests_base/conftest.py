"""Tests run in .venv-base: the package alone (no extras), in setuptools' strict editable mode.

They check what depends on how composer_cfg is installed: its configs found by Hydra, and clear
install hints for the extras that are missing.
"""

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "SLURM_PROCID",
                 "COMPOSER_RUN_NAME", "RUN_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    assert "VIRTUAL_ENV" not in os.environ or os.environ["VIRTUAL_ENV"].endswith(".venv-base")
