"""The examples in dirac_cupy's docstrings run (on any machine: none needs a GPU)."""

import doctest
import importlib

import pytest

MODULES = [
    "dirac_cupy",
    "dirac_cupy.availability",
    "dirac_cupy.backend",
    "dirac_cupy.fused_math",
    "dirac_cupy.interop",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
