"""torch.export of the unfolded and the folded model, and ONNX of the unfolded one (1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import dirac_torch as dt
from dirac_torch.fold import fold_model

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore:Constant folding"
)


def trained_model() -> nn.Module:
    """Every kind of Dirac layer, with batch norms holding trained-looking statistics."""
    torch.manual_seed(0)
    model = nn.Sequential(
        dt.DiracConv2d(3, 6, 3), nn.BatchNorm2d(6), dt.NCReLU(),
        dt.DiracConv2d(12, 6, 2, per_channel=True), nn.BatchNorm2d(6), nn.ReLU(),
        dt.DiracConv2d(6, 6, 3, normalize=False, alpha_init=1.0, beta_init=1.0,
                       learnable=False, bias=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4),
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_(1, 0.2)
            if isinstance(module, dt.DiracConv2d) and module.dirac.learnable:
                module.beta.fill_(0.5)
    return model.eval()


def relative_error(got, expected) -> float:
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


BATCH = torch.export.Dim("batch", min=1)


@pytest.mark.parametrize("folded", [False, True], ids=["unfolded", "folded"])
def test_torch_export_round_trip(folded):
    model = trained_model()
    program = torch.export.export(
        fold_model(model) if folded else model, (torch.randn(2, 3, 7, 7),),
        dynamic_shapes=({0: BATCH},),
    )
    x = torch.randn(5, 3, 7, 7)  # another batch size: the batch dim stays free
    with torch.no_grad():
        assert relative_error(program.module()(x), model(x)) <= 1e-5
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any("batch_norm" in op for op in ops) != folded


def test_onnx_of_the_unfolded_model():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = trained_model()
    program = torch.onnx.export(model, (torch.randn(2, 3, 7, 7),), dynamo=True,
                                dynamic_shapes=({0: BATCH},), verbose=False)
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x = torch.randn(3, 3, 7, 7)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert relative_error(got, model(x)) <= 1e-5
