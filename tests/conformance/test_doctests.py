"""The examples in the conformance suite's docstrings run."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

MODULES = ["dirac_conformance.runner", "dirac_conformance.reproduce",
           "dirac_conformance.tolerance", "dirac_conformance.target", "dirac_conformance.meta",
           "dirac_conformance.dtypes", "dirac_conformance.layouts", "dirac_core.normalize",
           "dirac_core.registry"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
