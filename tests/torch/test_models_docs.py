"""The code blocks of docs/torch.md run, in order, in one namespace: the docs cannot rot."""

import contextlib
import re
import sys
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).parents[2] / "docs" / "torch.md"


@contextlib.contextmanager
def process_state_kept():
    """The examples set process-wide flags (TF32) and import a module of their own; put them
    back, so that later tests (torch.export among them) see the process as it was."""
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.fp32_precision)
    path, had_mynet = list(sys.path), "mynet" in sys.modules
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.fp32_precision = flags
        sys.path[:] = path
        if not had_mynet:
            sys.modules.pop("mynet", None)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_docs_code_blocks_run():
    pytest.importorskip("onnxruntime")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5  # layer, model, variants, fold (two), export
    namespace: dict = {}
    with process_state_kept():
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{DOC.name}, block {number}", "exec"), namespace)
    assert namespace["error"] < 1e-5


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_own_model_example_runs_on_its_own():
    """The end-to-end example for a model of your own needs nothing from the sections before:
    convert, train with param_groups, fold, save, reload in a fresh process, ONNX, onnxruntime
    at two batch sizes (the fresh process asserts each step)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    text = DOC.read_text()
    section = text[text.index("## Your own model, end to end"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    namespace: dict = {}
    with process_state_kept():
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"{DOC.name}, own model, block {number}", "exec"), namespace)
    assert "batch 1: logits (1, 10)" in namespace["served"].stdout
    assert "batch 8: logits (8, 10)" in namespace["served"].stdout
    assert isinstance(namespace["folded"].stem[1], namespace["torch"].nn.Identity)
