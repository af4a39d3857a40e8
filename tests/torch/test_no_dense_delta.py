"""No dense Dirac tensor in a training path: not in a model's buffers, not among the tensors
autograd keeps for the backward, and W_hat itself not kept from the forward pass either."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

import dirac_torch as dt
from dirac_torch.registry import create_model, list_models


def _weight_shaped(model: nn.Module) -> set[tuple[int, ...]]:
    return {tuple(p.shape) for p in model.parameters() if p.dim() > 1}


@pytest.mark.parametrize("name", list_models())
def test_registry_models_hold_no_buffer_shaped_like_a_weight(name):
    with torch.device("meta"):  # every listed model, without allocating its weights
        model = create_model(name)
    weights = _weight_shaped(model)
    # Only batch-norm statistics: vectors, never a tensor of a conv weight's shape.
    assert all(b.dim() <= 1 for b in model.buffers()), name
    assert not weights & {tuple(b.shape) for b in model.buffers()}
    assert all(not hasattr(m, "_buffers") or "delta" not in m._buffers for m in model.modules())


def _saved_during(step, params: set[int]) -> list[torch.Tensor]:
    """Every tensor autograd keeps for the backward during ``step()``, except parameters."""
    kept = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in params:
            kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return kept


@pytest.mark.parametrize(
    ("shape", "groups", "policy", "per_channel"),
    [((8, 16, 3, 3), 1, "tile", False), ((6, 4, 3), 2, "min", True),
     ((5, 7, 2, 2), 1, "tile", True)],
)
def test_the_weight_node_keeps_no_weight_sized_tensor(shape, groups, policy, per_channel):
    p = dt.DiracParametrization(shape, groups=groups, policy=policy, per_channel=per_channel)
    w = torch.randn(shape, requires_grad=True)
    params = {t.untyped_storage().data_ptr() for t in (w, p.alpha, p.beta)}
    kept = _saved_during(lambda: p(w), params)
    numel = w.numel()
    # per-filter vectors (O,) or (O, 1), eps and the like; w itself is excluded above
    assert kept and all(t.numel() <= shape[0] for t in kept), [t.shape for t in kept]
    assert all(t.numel() < numel for t in kept)


def test_a_dirac_layer_keeps_neither_delta_nor_w_hat_and_recomputes_it_exactly():
    torch.manual_seed(0)
    layer = dt.DiracConv2d(16, 8, 3, per_channel=True)
    plain = nn.Conv2d(16, 8, 3, padding=1, bias=False)
    with torch.no_grad():
        plain.weight.copy_(layer.weight)
        layer.beta.fill_(0.5)
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    ids = {t.untyped_storage().data_ptr() for t in layer.parameters()}
    kept = _saved_during(lambda: layer(x), ids)
    # conv keeps x; the weight node keeps per-filter vectors; nothing of the weight's size
    assert all(t.numel() < layer.weight.numel() or t.shape == x.shape for t in kept)
    # ... and the gradients are those of a forward that kept W_hat
    layer(x).square().sum().backward()
    leaves = (x, layer.alpha, layer.beta, layer.parametrizations.weight.original)
    got = [t.grad.clone() for t in leaves]
    x.grad = None
    for t in layer.parameters():
        t.grad = None
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        w_hat = layer.weight
        layer._conv(x, w_hat).square().sum().backward()
    want = [t.grad for t in leaves]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_changing_w_between_forward_and_backward_raises_like_autograd():
    layer = dt.DiracConv2d(4, 4, 3)
    y = layer(torch.randn(1, 4, 5, 5, requires_grad=True))
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_a_meta_built_layer_is_made_whole_by_to_empty_and_reset():
    torch.manual_seed(0)
    built = dt.DiracConv2d(8, 4, 3, device="meta").to_empty(device="cpu")
    built.reset_parameters()
    torch.manual_seed(1)
    x = torch.randn(2, 8, 5, 5)
    assert torch.isfinite(built(x)).all()
    with torch.no_grad():
        built.beta.zero_()
        assert torch.allclose(built(dt.NCReLU()(x[:, :4])), 5 * x[:, :4])  # eq. 11, alpha 5


def test_threads_running_the_node_at_once_get_the_results_of_one_thread():
    # The eager node keeps its float64 row-block temporaries in a scratch per thread: a scratch
    # shared between threads would mix one thread's blocks into another's results.
    torch.manual_seed(0)
    shapes = [(64, 128, 3, 3), (48, 96, 3, 3)]  # two row blocks each, of other lengths
    params = [dt.DiracParametrization(s, per_channel=True) for s in shapes]
    weights = [torch.randn(s, requires_grad=True) for s in shapes]
    grads = [torch.randn(s) for s in shapes]

    def run(i: int) -> list[torch.Tensor]:
        out = params[i](weights[i])
        got = torch.autograd.grad(out, (weights[i], params[i].beta), grads[i])
        return [out.detach(), *got]

    alone = [run(i) for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(20):
            together = list(pool.map(run, range(2)))
            for a, b in zip(alone, together, strict=True):
                assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
