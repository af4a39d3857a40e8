"""Filter normalization: unit filters, scale invariance, no overflow/underflow, zero filters."""

import numpy as np
import pytest
from core_helpers import arrays
from hypothesis import assume, given
from hypothesis import strategies as st

import dirac_core as dc

shapes = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))


@given(data=st.data(), shape=shapes)
def test_filters_have_unit_norm(data, shape):
    w = data.draw(arrays(shape))
    rows = w.reshape(shape[0], -1)
    top = np.abs(rows).max(axis=1)
    norms = top * np.sqrt(((rows / np.where(top > 0, top, 1)[:, None]) ** 2).sum(axis=1))
    assume(np.all((norms > 1e-6) | (norms == 0)))  # tiny filters: see the clamp tests
    out = dc.normalize_filters(w)
    out_norms = np.sqrt((out.reshape(shape[0], -1) ** 2).sum(axis=1))
    np.testing.assert_allclose(out_norms, np.where(norms > 0, 1.0, 0.0), rtol=1e-14)
    np.testing.assert_allclose(out * norms.reshape(-1, 1, 1), w, rtol=1e-13, atol=1e-15)


@given(data=st.data(), shape=shapes, exponent=st.integers(-300, 300))
def test_scale_invariance_without_overflow(data, shape, exponent):
    """normalize(c * w) == normalize(w) even when ||c * w||^2 is not representable."""
    w = data.draw(arrays(shape, st.floats(-10, 10).filter(lambda v: abs(v) > 1e-3)))
    c = 10.0**exponent  # every filter norm stays above eps, where the map is scale-free
    np.testing.assert_allclose(dc.normalize_filters(w * c, eps=1e-305), dc.normalize_filters(w),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype,value,eps", [("float16", 6e4, 1e-12), ("float16", 1e-7, 1e-12),
                                             ("float32", 3e38, 1e-12), ("float32", 1e-30, 1e-40),
                                             ("float64", 1e300, 1e-12),
                                             ("float64", 1e-300, 1e-310)])
def test_extremes_stay_finite(dtype, value, eps):
    w = np.full((2, 3, 3), value, dtype=dtype)
    out = dc.normalize_filters(w, eps=eps)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out.astype(np.float64), np.full((2, 3, 3), 1 / 3), rtol=1e-3)


def test_zero_filter_gives_zeros_not_nan():
    w = np.zeros((3, 2, 2))
    w[1] = 1.0
    out = dc.normalize_filters(w)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[[0, 2]], 0.0)
    np.testing.assert_allclose(out[1], 0.5)
    g = np.ones_like(w)
    assert np.isfinite(dc.normalize_filters_vjp(g, w)).all()


def test_below_clamp_divides_by_eps():
    w = np.array([[3e-13, 4e-13], [3.0, 4.0]])
    out = dc.normalize_filters(w, eps=1e-12)
    np.testing.assert_allclose(out, [[0.3, 0.4], [0.6, 0.8]], rtol=1e-14)


@given(data=st.data(), shape=shapes, dtype=st.sampled_from(["float32", "float16"]))
def test_lower_precision_agrees_with_float64(data, shape, dtype):
    w = data.draw(arrays(shape, st.floats(-100, 100).filter(lambda v: abs(v) > 1e-2)))
    low = w.astype(dtype)
    ref = dc.normalize_filters(low.astype(np.float64))
    tol = {"float32": 1e-6, "float16": 1e-3}[dtype]
    np.testing.assert_allclose(dc.normalize_filters(low).astype(np.float64), ref, atol=tol)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_vjp_below_a_tiny_clamp_is_a_signed_inf_without_a_warning(dtype):
    # An all-zero filter lies below the clamp: its VJP is g / eps, beyond the dtype's range.
    g = np.array([[1.0, -2.0, 0.0]], dtype)
    dw = dc.normalize_filters_vjp(g, np.zeros_like(g), eps=1e-50)
    np.testing.assert_array_equal(dw, np.array([[np.inf, -np.inf, 0.0]], dtype))
    dw, _, _ = dc.dirac_weight_vjp(g[:, :, None], np.zeros_like(g)[:, :, None], 1.0, 1.0,
                                   eps=1e-50)
    np.testing.assert_array_equal(dw[:, :, 0], np.array([[np.inf, -np.inf, 0.0]], dtype))
