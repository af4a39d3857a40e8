"""The code blocks of docs/jax.md run, in order, in one namespace: the docs cannot rot."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "jax.md"


def test_docs_code_blocks_run():
    pytest.importorskip("torch")
    pytest.importorskip("array_api_strict")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    pytest.importorskip("optax")
    pytest.importorskip("sklearn")
    # gradients, torch -> Flax and folding, a Flax training loop beside PyTorch, the Array API
    assert len(blocks) == 4
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name}, block {number}", "exec"), namespace)
    assert namespace["error"] < 1e-12
    # the Flax loop reaches the PyTorch figure (docs/jax.md states the measured pair)
    assert abs(namespace["flax_accuracy"] - namespace["torch_accuracy"]) < 0.02
