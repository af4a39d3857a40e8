"""The weight node's float32 path, and the cases it leaves to the float64 row blocks.

Eagerly on the CPU, float32 weights are computed with float32 passes over the weight and
per-filter factors worked out in float64 and rounded to float32 (``dirac_torch._autograd``).
That path must be the one ordinary training weights take (or the speed is not real), and it
must hand every case where a float32 sum or factor could overflow, underflow or land on the
other side of the clamp to the float64 blocks. Either way the result is the spec's: each test
compares with the float64 reference on the same float32 inputs, to a few float32 roundings of
the reference's magnitude (a wrong branch, an overflow or a lost sum is off by far more).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import dirac_core as dc
import dirac_torch._autograd as node
from dirac_torch import DiracConv2d, kernels
from dirac_torch.parametrize import DiracParametrization

TOL = 32 * 2.0**-24
"""Allowed error, relative to each output's magnitude: a few float32 roundings per term and a
float32 sum's growth over the few dozen terms here."""


@pytest.fixture
def paths(monkeypatch):
    """Which path each direction took: 'narrow' (float32) or 'blocks' (float64)."""
    taken: dict[str, str] = {}

    def spy(name):
        real = getattr(node, name)

        def wrapper(*args):
            result = real(*args)
            taken[name.split("_")[-1]] = "blocks" if result is None else "narrow"
            return result

        monkeypatch.setattr(node, name, wrapper)

    spy("_narrow_forward")
    spy("_narrow_backward")
    return taken


def check(w, alpha, beta, g, normalize=True, eps=1e-12):
    """The node's W_hat and VJP against the reference, float32 inputs, each output's error
    within :data:`TOL` of its magnitude (:func:`magnitudes`)."""
    shape = tuple(w.shape)
    geo = DiracParametrization(shape).geometry
    leaves = [torch.tensor(a, requires_grad=True) for a in (w, alpha, beta)]
    out = kernels.dirac_weight(*leaves, geo, eps, normalize)
    out.backward(torch.from_numpy(g))
    got = [out.detach(), *(t.grad for t in leaves)]
    args = [a.astype(np.float64) for a in (w, alpha, beta, g)]
    ref = [dc.dirac_weight(*args[:3], normalize=normalize, eps=eps),
           *dc.dirac_weight_vjp(args[3], *args[:3], normalize=normalize, eps=eps)]
    names = ("W_hat", "dw", "dalpha", "dbeta")
    for name, mine, theirs, scale in zip(names, got, ref, magnitudes(*args, normalize, eps),
                                         strict=True):
        err = float(np.max(np.abs(mine.numpy().astype(np.float64) - theirs)))
        assert err <= TOL * max(scale, 1e-38), f"{name}: error {err:.3g}, magnitude {scale:.3g}"


def magnitudes(w, alpha, beta, g, normalize, eps):
    """The largest magnitude of the terms summed into each output: the reference on the
    inputs' absolute values for W_hat, dalpha and dbeta (sums of positive terms there), and
    for ``dw = beta (G - u <u, G>) / ||v||`` a bound of both terms."""
    absolute = [np.abs(a) for a in (w, alpha, beta, g)]
    w_hat = dc.dirac_weight(*absolute[:3], normalize=normalize, eps=eps)
    _, dalpha, dbeta = dc.dirac_weight_vjp(absolute[3], *absolute[:3], normalize=normalize,
                                          eps=eps)
    rows, grads = w.reshape(len(w), -1), g.reshape(len(g), -1)
    scale = np.abs(np.broadcast_to(beta, len(w)))
    if normalize:
        norms = np.maximum(np.linalg.norm(rows, axis=1), eps)
        along = np.linalg.norm(grads, axis=1) * np.max(np.abs(rows), axis=1) / norms
        scale = scale / norms * (np.max(np.abs(grads), axis=1) + along)
    else:
        scale = scale * np.max(np.abs(grads), axis=1)
    return [float(np.max(m)) for m in (w_hat, scale, dalpha, dbeta)]


def weights(seed=0, shape=(4, 6, 3, 3), std=0.1):
    return (np.random.default_rng(seed).standard_normal(shape) * std).astype(np.float32)


def scalar(value):
    return np.float32(value)


def test_ordinary_training_weights_take_the_float32_path_both_ways(paths):
    check(weights(), scalar(5), scalar(1e-3), weights(1, std=1))
    assert paths == {"forward": "narrow", "backward": "narrow"}


def test_per_channel_scales_and_no_normalization_take_it_too(paths):
    rng = np.random.default_rng(2)
    per_channel = rng.uniform(0.5, 2, 4).astype(np.float32)
    check(weights(), per_channel, per_channel * 1e-3, weights(1, std=1))
    assert paths == {"forward": "narrow", "backward": "narrow"}
    check(weights(), scalar(1), scalar(1), weights(1, std=1), normalize=False)
    assert paths == {"forward": "narrow", "backward": "narrow"}


def edited(update):
    w = weights()
    update(w)
    return w


FORWARD_REFUSALS = {
    "a zero filter (below the clamp)": (edited(lambda w: w.__setitem__(1, 0)), 1e-3),
    "a filter just above the clamp": (
        edited(lambda w: w.__setitem__(1, np.float32(1e-12 * (1 + 2.0**-20)) / np.sqrt(54))),
        1e-3),
    # with a clamp of 1e-40: above it, yet its squares are subnormal in float32
    "a filter whose squares underflow": (edited(lambda w: w.__setitem__(2, w[2] * 1e-20)), 1e-3),
    "a filter with an infinite entry": (edited(lambda w: w.__setitem__((0, 0, 0, 0), np.inf)),
                                        1e-3),
    "a factor beta / ||v|| beyond float32": (weights(), 3e38),
    "a factor beta / ||v|| below float32's normal range": (weights(), 1e-38),
}


@pytest.mark.parametrize("case", FORWARD_REFUSALS)
def test_what_float32_cannot_carry_goes_to_the_float64_blocks(case, paths):
    w, beta = FORWARD_REFUSALS[case]
    g = weights(1, std=1e-3)  # keeps dw inside float32's range where beta is large
    eps = 1e-40 if "underflow" in case else 1e-12
    if np.isinf(w).any():
        geo = DiracParametrization(w.shape).geometry
        out = kernels.dirac_weight(torch.from_numpy(w), 5.0, beta, geo, 1e-12, True)
        assert torch.isnan(out[0]).all() and torch.isfinite(out[1:]).all()  # the spec's NaN
    else:
        check(w, scalar(5), scalar(beta), g, eps=eps)
    assert paths["forward"] == "blocks"


GRADIENT_REFUSALS = {  # (std of W, of G, eps)
    # <v, G> of subnormal products, while its factor (f / r) <v / r, G> is a normal float32
    "products that underflow": (1e-15, 1e-28, 1e-40),
    "products that overflow": (1e10, 1e30, 1e-12),
}


@pytest.mark.parametrize("case", GRADIENT_REFUSALS)
def test_a_gradient_float32_cannot_carry_goes_to_the_blocks(case, paths):
    w_std, g_std, eps = GRADIENT_REFUSALS[case]
    w, g = weights(std=w_std), weights(1, std=g_std)
    check(w, scalar(5), scalar(1e-3), g.astype(np.float32), eps=eps)
    assert paths == {"forward": "narrow", "backward": "blocks"}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.sampled_from([(1, 1, 1, 1), (3, 5, 3, 3), (8, 4, 1, 3), (6, 6, 3, 3)]),
    w_exp=st.integers(-30, 30), beta_exp=st.integers(-30, 30), g_exp=st.integers(-30, 30),
    per_channel=st.booleans(), normalize=st.booleans(),
)
def test_either_path_gives_the_spec_to_float32_rounding(
    seed, shape, w_exp, beta_exp, g_exp, per_channel, normalize
):
    # Every output inside float32's range (beyond it, inf is right, and not what this checks).
    if normalize:  # W_hat ~ beta, dw ~ beta G / ||v||, dbeta ~ G
        assume(abs(beta_exp + g_exp - w_exp) <= 34)
    else:  # W_hat ~ beta W, dw ~ beta G, dbeta ~ W G
        assume(max(abs(beta_exp + w_exp), abs(beta_exp + g_exp), abs(w_exp + g_exp)) <= 34)
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(shape) * 10.0**w_exp).astype(np.float32)
    beta = rng.uniform(0.5, 2, shape[0] if per_channel else ()) * 10.0**beta_exp
    alpha = rng.uniform(-2, 2, shape[0] if per_channel else ())
    g = (rng.standard_normal(shape) * 10.0**g_exp).astype(np.float32)
    check(w, np.float32(alpha), np.float32(beta), g, normalize)


def test_a_trace_keeps_the_float64_blocks(paths):
    # A trace would bake the path chosen from this call's sums into the graph, unchecked.
    layer = DiracConv2d(4, 4, 3)
    x = torch.randn(1, 4, 5, 5)
    traced = torch.jit.trace(layer, x, check_trace=False)
    assert paths["forward"] == "blocks"
    torch.testing.assert_close(traced(x), layer(x), rtol=1e-6, atol=1e-6)
