"""The examples in the dirac_torch docstrings run, so they cannot drift from the code."""

import doctest
import importlib

import pytest

MODULES = [
    "dirac_torch",
    "dirac_torch.functional",
    "dirac_torch.backend",
    "dirac_torch.parametrize",
    "dirac_torch.layers",
    "dirac_torch.conv_geometry",
    "dirac_torch.convert",
    "dirac_torch.saving",
    "dirac_torch.optimizer_groups",
    "dirac_torch.recipe",
    "dirac_torch.untrusted",
    "dirac_torch.pretrained",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
