"""torch.compile: every model variant and layer is one graph, with no break and no recompile.

Compiling is slow on a small CPU, so the tests split the work: every model variant and layer
kind is captured by dynamo (``backend="eager"``; ``fullgraph=True`` raises on any graph
break), in train and eval mode, for three training steps over two batch sizes;
AOTAutograd then traces the backward of every Dirac layer kind (``backend="aot_eager"``, what
inductor receives); and inductor itself compiles a small network. Every compiled run is
compared with the same model run eagerly.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import dirac_core as dc
import dirac_torch as dt
from dirac_torch.models import diracnet_cifar

MODELS = {
    "dirac": {},
    "dirac-per-channel": {"per_channel": True},
    "dirac-relu": {"activation": "relu"},
    "plain": {"parameterization": "plain"},
    "resnet-eq14": {"parameterization": "resnet"},
}


def tiny_layers(ndim: int) -> nn.Module:
    """Dirac layers of ``ndim`` spatial dims: scalar and per-channel, odd and even kernels,
    normalized and eq. 14, after NCReLU and ReLU."""
    conv = {1: dt.DiracConv1d, 2: dt.DiracConv2d, 3: dt.DiracConv3d}[ndim]
    return nn.Sequential(
        conv(3, 4, 3), dt.NCReLU(),
        conv(8, 4, 2, per_channel=True, bias=True), nn.ReLU(),
        conv(4, 4, 3, normalize=False, alpha_init=1.0, beta_init=1.0, learnable=False),
        nn.Flatten(), nn.LazyLinear(5),
    )


CASES = [
    *(pytest.param(lambda v=v: diracnet_cifar(10, 1, **v), (3, 8, 8), id=name)
      for name, v in MODELS.items()),
    *(pytest.param(lambda n=n: tiny_layers(n), (3, *(4,) * n), id=f"layers-{n}d")
      for n in (1, 2, 3)),
]


def train_steps(model, inputs, compiled=None):
    """Forward, backward and an SGD step per batch; the losses, in order."""
    run = compiled or model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for x in inputs:
        optimizer.zero_grad()
        loss = run(x).sigmoid().mean()  # bounded: 3 steps never diverge
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def compiled_and_eager(build, sample, mode, backend):
    """Train a compiled model and its eager copy; assert one graph and equal losses."""
    torch.manual_seed(0)
    model = build()
    # Three steps over two batch sizes: one graph must serve all of them.
    inputs = [torch.randn(batch, *sample) for batch in (2, 3, 2)]
    model(inputs[0])  # materialise lazy modules
    model.train(mode == "train")
    eager = copy.deepcopy(model)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend=backend, fullgraph=True, dynamic=True)
    got = train_steps(model, inputs, compiled)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    torch.testing.assert_close(got, train_steps(eager, inputs), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("build", "sample"), CASES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_variant_is_one_graph_without_recompiles(build, sample, mode):
    compiled_and_eager(build, sample, mode, "eager")


def test_backward_traces_into_the_graph():
    compiled_and_eager(lambda: tiny_layers(2), (3, 5, 5), "train", "aot_eager")


def test_inductor_compiles_forward_and_backward():
    torch.manual_seed(0)
    model = nn.Sequential(
        dt.DiracConv2d(3, 4, 3), dt.NCReLU(), dt.DiracConv2d(8, 4, 2, per_channel=True),
    )
    eager = copy.deepcopy(model)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    inputs = [torch.randn(batch, 3, 6, 6) for batch in (2, 3, 2)]
    got = train_steps(model, inputs, compiled)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    torch.testing.assert_close(got, train_steps(eager, inputs), rtol=1e-4, atol=1e-6)
    for a, b in zip(model.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_dirac_weight_leaves_the_thread_count_alone(monkeypatch):
    # The process-wide thread count is no library's to change (and no compiled graph can).
    def refuse(n):
        raise AssertionError(f"torch.set_num_threads({n}) called")

    monkeypatch.setattr(torch, "set_num_threads", refuse)
    layer = dt.DiracConv2d(8, 4, 3)
    layer(torch.randn(2, 8, 5, 5)).sum().backward()
    assert layer.parametrizations.weight.original.grad is not None


TAP_GEOMETRIES = [
    # (shape, groups, policy, per_channel): n = 2 does not divide Ni = 3, so one row holds
    # one candidate tap that is no one; "min" with O > Ni leaves rows without ones; groups;
    # a 1-d and a 3-d kernel; an even kernel.
    ((2, 3, 3, 3), 1, "tile", False),
    ((6, 3, 3), 1, "min", True),
    ((6, 4, 3, 3), 2, "tile", True),
    ((4, 6, 2, 3, 1), 2, "min", False),
    ((5, 7, 2, 2), 1, "tile", True),
]


def _assert_matches_reference(p, w, g, out, **tolerance):
    """``out`` (``p.compute`` of ``w``, compiled, its backward run with ``g``) and the gradients
    of ``w``, ``alpha`` and ``beta`` against the float64 reference."""
    args = [t.detach().double().numpy() for t in (w, p.alpha, p.beta)]
    options = {"groups": p.groups, "policy": p.policy, "eps": p.eps}
    references = [dc.dirac_weight(*args, **options),
                  *dc.dirac_weight_vjp(g.double().numpy(), *args, **options)]
    got = [out.detach(), w.grad, p.alpha.grad, p.beta.grad]
    for name, mine, ref in zip(("W_hat", "dw", "dalpha", "dbeta"), got, references, strict=True):
        np.testing.assert_allclose(mine.double().numpy(), ref, err_msg=name, **tolerance)


@pytest.mark.parametrize(("shape", "groups", "policy", "per_channel"), TAP_GEOMETRIES)
def test_compiled_taps_add_alpha_and_gather_dalpha_where_the_spec_puts_the_ones(
    shape, groups, policy, per_channel
):
    # Compiled, alpha is scattered to the taps and dalpha gathered from them by an index built
    # from iota indices (O x R candidates, some of them no ones); float64, so that only an
    # index put in the wrong place, or a candidate counted that is no one, can be off.
    torch.manual_seed(0)
    p = dt.DiracParametrization(shape, groups=groups, policy=policy, per_channel=per_channel,
                                dtype=torch.float64)
    with torch.no_grad():
        p.alpha.copy_(torch.randn(p.alpha.shape, dtype=torch.float64) + 2)
    w = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(shape, dtype=torch.float64)
    compiled = torch.compile(p.compute, backend="aot_eager", fullgraph=True)
    out = compiled(w, p.alpha, p.beta)
    out.backward(g)
    _assert_matches_reference(p, w, g, out, rtol=1e-12, atol=1e-14)


def test_inductor_taps_with_candidates_that_are_no_ones():
    # The same through inductor's generated kernels (float32; a tiled row with a candidate
    # that is no one, and per-filter alpha), against the float64 reference.
    torch.manual_seed(0)
    p = dt.DiracParametrization((4, 6, 3, 3), policy="tile", per_channel=True)
    p.alpha.data = torch.tensor([1.0, 2.0, 3.0, 4.0])
    w = torch.randn(4, 6, 3, 3, requires_grad=True)
    g = torch.randn(4, 6, 3, 3)
    torch._dynamo.reset()
    out = torch.compile(p.compute, fullgraph=True)(w, p.alpha, p.beta)
    out.backward(g)
    _assert_matches_reference(p, w, g, out, rtol=1e-5, atol=1e-6)
