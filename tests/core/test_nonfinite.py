"""Non-finite input (docs/spec.md): a filter with a NaN or inf is NaN throughout, the other
filters are untouched; NCReLU passes NaN to both halves and gives it gradient 0."""

import numpy as np
import pytest
from core_helpers import arrays
from hypothesis import given
from hypothesis import strategies as st

import dirac_core as dc

SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf])


@st.composite
def spoiled(draw):
    """``(w, bad)``: a weight with non-finite entries in the filters marked by ``bad``."""
    shape = (draw(st.integers(2, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    w = draw(arrays(shape)).reshape(shape[0], -1)
    bad = np.array(draw(st.lists(st.booleans(), min_size=shape[0], max_size=shape[0])))
    for o in np.flatnonzero(bad):
        for j in draw(st.sets(st.integers(0, w.shape[1] - 1), min_size=1)):
            w[o, j] = draw(SPECIAL)
    return w.reshape(shape), bad


@given(case=spoiled(), dtype=st.sampled_from(["float64", "float32", "float16"]))
def test_non_finite_filters_are_nan_throughout(case, dtype):
    w, bad = case
    w = w.astype(dtype)
    g = np.ones_like(w)
    # eps = 0.01: a zero filter's gradient g / eps stays finite in float16
    for out in (dc.normalize_filters(w, eps=0.01), dc.normalize_filters_vjp(g, w, eps=0.01)):
        rows = out.reshape(len(bad), -1)
        assert np.isnan(rows[bad]).all()
        assert np.isfinite(rows[~bad]).all()
    clean = dc.normalize_filters(np.where(bad.reshape(-1, 1, 1), 0, w).astype(dtype))
    np.testing.assert_array_equal(dc.normalize_filters(w)[~bad], clean[~bad])


@given(case=spoiled())
def test_dirac_weight_follows_normalize(case):
    w, bad = case
    alpha, beta = np.full(len(bad), 2.0), np.array(0.5)
    out = dc.dirac_weight(w, alpha, beta).reshape(len(bad), -1)
    assert np.isnan(out[bad]).all() and np.isfinite(out[~bad]).all()
    dw, dalpha, dbeta = dc.dirac_weight_vjp(np.ones_like(w), w, alpha, beta)
    assert np.isnan(dw.reshape(len(bad), -1)[bad]).all()
    assert np.isfinite(dalpha).all()  # dalpha never involves W
    assert np.isnan(dbeta) == bad.any()


def test_without_normalization_it_is_ieee_arithmetic():
    w = np.array([[np.inf, 1.0], [-np.inf, np.inf]])
    out = dc.dirac_weight(w, np.array(0.0), np.array(2.0), normalize=False)
    np.testing.assert_array_equal(out, [[np.inf, 2.0], [-np.inf, np.inf]])
    assert np.isnan(dc.dirac_weight(w, np.array(0.0), np.array(0.0), normalize=False)[0, 0])
    _, _, dbeta = dc.dirac_weight_vjp(np.ones_like(w), w, np.array(1.0), np.ones(2),
                                      normalize=False)
    np.testing.assert_array_equal(dbeta, [np.inf, np.nan])


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_ncrelu_non_finite(dtype):
    x = np.array([[np.nan, np.inf, -np.inf, 1.0]], dtype)
    np.testing.assert_array_equal(
        dc.ncrelu(x), np.array([[np.nan, np.inf, 0, 1, np.nan, 0, -np.inf, 0]], dtype))
    g = np.arange(1.0, 9.0, dtype=dtype)[None]
    np.testing.assert_array_equal(dc.ncrelu_vjp(g, x), np.array([[0, 2, 7, 4]], dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_ncrelu_signed_zeros_are_the_specs_in_every_dtype(dtype):
    # Both halves of a zero of either sign are +0.0; dx is g's own entry (a -0.0 included)
    # where x is non-zero and +0.0 elsewhere. (NumPy's minimum gave -0.0 in float16 only.)
    x = np.array([[-0.0, 0.0, 1.0, -1.0, np.nan]], dtype)
    y = dc.ncrelu(x)
    np.testing.assert_array_equal(np.signbit(y), [[0, 0, 0, 0, 0, 0, 0, 0, 1, 0]])
    g = np.array([[-0.0, -0.0, -0.0, 1.0, -0.0, -0.0, -0.0, 2.0, -0.0, -0.0]], dtype)
    dx = dc.ncrelu_vjp(g, x)
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(np.signbit(dx), [[0, 0, 1, 1, 0]])


@pytest.mark.parametrize("alpha", [float("inf"), float("nan")])
def test_a_non_finite_alpha_reaches_only_its_taps_on_every_backend(alpha):
    """alpha * delta is alpha at the ones of delta: off the taps W_hat is beta * normalize(W),
    on the reference as on torch and JAX (which add alpha by index); inf * 0 made it NaN."""
    w = np.ones((2, 2, 1), np.float32)
    want = np.array([alpha, 0.5 ** 0.5, 0.5 ** 0.5, alpha], np.float32)
    arrays = [np.asarray]
    for module, convert in (("torch", "tensor"), ("jax.numpy", "asarray")):
        lib = pytest.importorskip(module)
        arrays.append(getattr(lib, convert))
    for to in arrays:
        got = np.asarray(dc.dirac_weight(to(w), alpha, 1.0)).ravel()
        np.testing.assert_array_equal(got, want)
