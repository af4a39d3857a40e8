"""The examples in the docstrings and in the README are run, so they cannot drift."""

import doctest
import importlib
import re
from pathlib import Path

import numpy as np
import pytest

MODULES = ["dirac_core", "dirac_core.api", "dirac_core.padding", "dirac_core.nets",
           "dirac_core.untrusted", "dirac_core.validation", "dirac_core.initial",
           "dirac_core.lazy"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=flags)
    assert result.attempted > 0 and result.failed == 0


def test_readme_examples():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        if "import torch" in block:
            pytest.importorskip("torch")
        exec(compile(block, "README.md", "exec"), {})
