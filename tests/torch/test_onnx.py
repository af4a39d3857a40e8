"""export_onnx: the folded model runs in onnxruntime and agrees with PyTorch (float32, 1e-5)."""

import doctest
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import dirac_torch.onnx_export as onnx_export_module
from dirac_torch import DiracConv2d, NCReLU, models
from dirac_torch.onnx_export import export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).parent))
from test_fold import randomize  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore:Constant folding"
)


def run_onnx(path, *inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs, strict=True)}
    return session.run(None, feeds)[0]


def relative_error(got, expected):
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


def test_diracnet_exports_folded_and_agrees(tmp_path):
    torch.manual_seed(0)
    model = randomize(models.diracnet_cifar(10))
    path = export_onnx(model, tmp_path / "net.onnx", torch.randn(1, 3, 32, 32),
                       dynamic_batch=True)  # one example, as the demo exports
    assert path == tmp_path / "net.onnx"
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    assert "BatchNormalization" not in ops
    assert ops.count("Conv") == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    # The logits' batch dim is the input's symbol, not the example's 1 (a shape check that
    # made the batch size an int fixed it there, and onnxruntime only warned).
    (given,), (logits,) = ([v.type.tensor_type.shape.dim[0] for v in values]
                           for values in (graph.input, graph.output))
    assert given.dim_param and logits.dim_param == given.dim_param, (given, logits)
    x = torch.randn(3, 3, 32, 32)  # another batch size: the batch dim is dynamic
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    assert relative_error(run_onnx(path, x), expected) <= 1e-5


@pytest.mark.parametrize("dynamo", [True, False])
def test_the_batch_is_dynamic_by_default(tmp_path, dynamo):
    torch.manual_seed(2)
    model = randomize(nn.Sequential(DiracConv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    path = export_onnx(model, tmp_path / "net.onnx", torch.randn(2, 3, 6, 6), dynamo=dynamo)
    for batch in (1, 16):
        x = torch.randn(batch, 3, 6, 6)
        with torch.no_grad():
            expected = model.eval()(x).numpy()
        assert relative_error(run_onnx(path, x), expected) <= 1e-5
    fixed = export_onnx(model, tmp_path / "fixed.onnx", torch.randn(2, 3, 6, 6),
                        dynamic_batch=False, dynamo=dynamo)
    (shape,) = [i.type.tensor_type.shape for i in onnx.load(str(fixed)).graph.input]
    assert shape.dim[0].dim_value == 2


def test_user_model_with_asymmetric_padding_exports(tmp_path):
    torch.manual_seed(1)
    model = randomize(nn.Sequential(
        DiracConv2d(3, 4, 2), nn.BatchNorm2d(4), NCReLU(), DiracConv2d(8, 4, 4, dilation=2),
    ))
    x = torch.randn(2, 3, 9, 10)
    # Keyword arguments reach torch.onnx.export: here the TorchScript exporter.
    path = export_onnx(model, tmp_path / "user.onnx", (x,), dynamo=False, opset_version=17)
    assert "Pad" in [node.op_type for node in onnx.load(str(path)).graph.node]
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    assert relative_error(run_onnx(path, x), expected) <= 1e-5
    assert parametrize.is_parametrized(model[0]) and isinstance(model[1], nn.BatchNorm2d)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"model": "net"}, TypeError, "model must be a torch.nn.Module, got str"),
        ({"example_input": [1, 2]}, TypeError, "example_input must be a tensor"),
        ({"example_input": []}, TypeError, "example_input must be a tensor"),
        ({"path": "/nonexistent-dir/x.onnx"}, ValueError, "directory '/nonexistent-dir'"),
        ({"dynamic_batch": 1}, TypeError, "dynamic_batch must be a bool"),
        ({"model": nn.Sequential(nn.ReLU(), nn.BatchNorm1d(2))}, ValueError,
         "cannot fold the batch norm"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, message):
    args = {"model": nn.Sequential(nn.Conv1d(2, 2, 1)), "path": tmp_path / "x.onnx",
            "example_input": torch.randn(1, 2, 3), **kwargs}
    with pytest.raises(error, match=message):
        export_onnx(**args)
    assert not (tmp_path / "x.onnx").exists()


def test_docstring_examples():
    result = doctest.testmod(onnx_export_module, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0
