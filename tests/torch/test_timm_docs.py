"""The code blocks of docs/timm.md run, in order, in one namespace: the docs cannot rot."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "timm.md"


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_docs_code_blocks_run(tmp_path, monkeypatch):
    pytest.importorskip("dirac_torch.timm_models", reason="needs the [timm] extra")
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)  # the image folder block writes ./images
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 6  # create, pretrained, API, image folder, fuse, export
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name}, block {number}", "exec"), namespace)
    assert namespace["error"] <= 1e-6
    assert len(list((tmp_path / "images" / "train").rglob("*.png"))) == 16
    assert namespace["onnx_path"].is_file()
