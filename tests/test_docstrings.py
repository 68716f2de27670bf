"""The examples in the package's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from typing import Any

import pytest

import composer_cfg
from conftest import EXTRA_OF


def modules_with_examples() -> list[Any]:
    """The modules with examples; one that needs an extra that is not installed, skipped with its hint."""
    names = ["composer_cfg"] + [info.name for info in pkgutil.walk_packages(composer_cfg.__path__, "composer_cfg.")
                                if info.name != "composer_cfg.__main__"]  # importing that one runs the command
    finder = doctest.DocTestFinder()
    found: list[Any] = []
    for name in sorted(names):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:  # a module of a back end (tensorboard_events: tensorboardX)
            root = (error.name or "").split(".")[0]
            reason = f"needs {root}: pip install 'composer_cfg[{EXTRA_OF.get(root, 'all')}]'"
            found.append(pytest.param(name, marks=pytest.mark.skip(reason=reason)))
            continue
        if any(test.examples for test in finder.find(module)):
            found.append(name)
    return found


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0
