"""The examples in the package's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import composer_cfg


def modules_with_examples() -> list[str]:
    names = ["composer_cfg"] + [info.name for info in pkgutil.walk_packages(composer_cfg.__path__, "composer_cfg.")
                                if info.name != "composer_cfg.__main__"]  # importing that one runs the command
    finder = doctest.DocTestFinder()
    return sorted(name for name in names if any(test.examples for test in finder.find(importlib.import_module(name))))


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0
