"""The examples in the training package's docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["config", "checkpoint", "safe_pickle", "callbacks", "metrics", "trainer", "rundir",
           "divergence", "atomic", "resume", "training_state", "input_size", "saved", "cli",
           "experiment"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"diracnets.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
