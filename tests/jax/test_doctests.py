"""The examples in dirac_jax's and dirac_array_api's docstrings run."""

import doctest
import importlib

import pytest

MODULES = ["dirac_jax", "dirac_jax.backend", "dirac_jax.nn", "dirac_jax.interop",
           "dirac_array_api", "dirac_array_api.backend", "dirac_array_api.jitted"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name.endswith("interop"):
        pytest.importorskip("torch")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
