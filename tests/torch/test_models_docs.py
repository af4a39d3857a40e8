"""The code blocks of docs/torch.md run, in order, in one namespace: the docs cannot rot."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "torch.md"


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_docs_code_blocks_run():
    pytest.importorskip("onnxruntime")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5  # layer, model, variants, fold (two), export
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name}, block {number}", "exec"), namespace)
    assert namespace["error"] < 1e-5
