"""The gradient of the torch NCReLU (layer and functional) is the spec's VJP, non-finite input
included: 0 at a NaN and at a zero of either sign, ``g+`` at ``+inf``, ``g-`` at ``-inf``."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dirac_core as dc
import dirac_torch as dt

SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
DOORS = {
    "NCReLU": lambda x, dim: dt.NCReLU(dim=dim)(x),
    "ncrelu": lambda x, dim: dt.ncrelu(x, dim=dim),
}


@st.composite
def spiked(draw):
    """``(x, dim)``: a float64 array of 1..4 dims where most entries are NaN, +-inf or +-0."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=shape)
    spikes = rng.random(size=shape) < 0.7
    x[spikes] = rng.choice(SPECIAL, size=int(spikes.sum()))
    return x, draw(st.integers(-len(shape), len(shape) - 1))


def _gradient(door, x, g, dim):
    """``(y, dx)`` of ``door`` at ``x`` for the output gradient ``g`` (tensors)."""
    x = x.clone().requires_grad_()
    y = DOORS[door](x, dim)
    y.backward(g)
    return y.detach(), x.grad


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@given(case=spiked(), seed=st.integers(0, 2**32 - 1))
def test_gradient_is_the_reference_vjp(door, dtype, case, seed):
    x64, dim = case
    doubled = list(x64.shape)
    doubled[dim] *= 2
    g64 = np.random.default_rng(seed).normal(size=doubled)
    x, g = torch.from_numpy(x64).to(dtype), torch.from_numpy(g64).to(dtype)
    y, dx = _gradient(door, x, g, dim)
    # Selections only: exact in every dtype against the reference on the rounded inputs.
    x_ref, g_ref = x.double().numpy(), g.double().numpy()
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx.double().numpy(), dc.ncrelu_vjp(g_ref, x_ref, axis=dim))
    np.testing.assert_array_equal(y.double().numpy(), dc.ncrelu(x_ref, axis=dim))


@pytest.mark.parametrize("door", DOORS)
def test_each_special_value(door):
    x = torch.tensor([[np.nan, np.inf, -np.inf, 0.0, -0.0, 2.0, -3.0]])
    g = torch.arange(1.0, 15.0)[None]  # g+ = 1..7, g- = 8..14
    y, dx = _gradient(door, x, g, 1)
    assert torch.equal(dx, torch.tensor([[0.0, 2.0, 10.0, 0.0, 0.0, 6.0, 14.0]]))
    assert torch.isnan(y[0, [0, 7]]).all()


def test_second_derivative_is_zero():
    # NCReLU is piecewise linear: the gradient of its gradient is 0 (not an error).
    x = torch.tensor([[np.nan, 1.0, -2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    g = torch.ones(1, 8, dtype=torch.float64, requires_grad=True)
    (dx,) = torch.autograd.grad(dt.ncrelu(x), x, g, create_graph=True)
    (dg,) = torch.autograd.grad(dx.sum(), g)
    assert torch.equal(dg, torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]],
                                        dtype=torch.float64))


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=str)
def test_zero_signs_are_the_references(door, dtype):
    # Bit for bit with the reference, the sign of zero included: +0.0 in both halves of either
    # zero, and dx keeps a -0.0 of g where x is non-zero.
    x = torch.tensor([[-0.0, 0.0, 1.0, -1.0, np.nan]], dtype=dtype)
    g = torch.tensor([[-0.0, -0.0, -0.0, 1.0, -0.0, -0.0, -0.0, 2.0, -0.0, -0.0]], dtype=dtype)
    y, dx = _gradient(door, x, g, 1)
    ref_y, ref_dx = dc.ncrelu(x.numpy()), dc.ncrelu_vjp(g.numpy(), x.numpy())
    for got, ref in ((y, ref_y), (dx, ref_dx)):
        np.testing.assert_array_equal(got.numpy(), ref)
        np.testing.assert_array_equal(np.signbit(got.numpy()), np.signbit(ref))
