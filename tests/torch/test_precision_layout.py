"""Training under ``torch.autocast`` (bfloat16 on CPU) and with ``channels_last`` tensors.

Each run is compared with the plain float32, contiguous run of the same model from the same
initial state. Autocast: the Dirac weight is computed in float32 (the spec accumulates in at
least float32) and only the convolution runs in bfloat16 (8 significant bits), so losses agree
to about 1e-2. channels_last: the same float32 arithmetic in another memory order, so results
agree to float32 rounding (1e-5).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import dirac_torch as dt


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        dt.DiracConv2d(3, 8, 3, bias=True), nn.BatchNorm2d(8), dt.NCReLU(),
        dt.DiracConv2d(16, 8, 2, per_channel=True), nn.BatchNorm2d(8), nn.ReLU(),
        dt.DiracConv2d(8, 8, 3, normalize=False, alpha_init=1.0, beta_init=1.0,
                       learnable=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


def train(model, batches, *, autocast=False, channels_last=False):
    """Three SGD steps of a classification loss; the losses and the final parameters."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return torch.tensor(losses), [p.detach().clone() for p in model.parameters()]


@pytest.fixture(scope="module")
def batches():
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(6, 3, 9, 9, generator=generator),
             torch.randint(0, 4, (6,), generator=generator)) for _ in range(3)]


def assert_trains_like_float32(batches, tolerance, **variant):
    model = small_net()
    expected_losses, expected = train(copy.deepcopy(model), batches)
    losses, params = train(model, batches, **variant)
    torch.testing.assert_close(losses, expected_losses, rtol=tolerance, atol=tolerance)
    for got, want in zip(params, expected, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=2 * tolerance, atol=2 * tolerance)


def test_autocast_bfloat16_trains_like_float32(batches):
    assert_trains_like_float32(batches, 2e-2, autocast=True)


def test_channels_last_trains_like_contiguous(batches):
    assert_trains_like_float32(batches, 1e-5, channels_last=True)


def test_dirac_weight_stays_float32_under_autocast():
    layer = dt.DiracConv2d(4, 4, 3)
    x = torch.randn(2, 4, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weight = layer.weight
        y = layer(x)
    assert weight.dtype == torch.float32
    assert y.dtype == torch.bfloat16  # the convolution itself runs in bfloat16
    torch.testing.assert_close(weight, layer.weight, rtol=0, atol=0)  # the float32 weight
    y.float().sum().backward()
    dirac = layer.dirac
    grads = [layer.parametrizations.weight.original.grad, dirac.alpha.grad, dirac.beta.grad]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)
