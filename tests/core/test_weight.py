"""The parameterization alpha * delta + beta * normalize(W) and its variants."""

import numpy as np
import pytest
from core_helpers import FINITE, arrays
from hypothesis import given
from hypothesis import strategies as st

import dirac_core as dc


@st.composite
def weight_case(draw):
    o, i = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
    w = draw(arrays((o, i, *kernel)))
    per = draw(st.booleans())
    alpha = draw(arrays((o,))) if per else draw(FINITE)
    beta = draw(arrays((o,))) if draw(st.booleans()) else draw(FINITE)
    return w, alpha, beta


def _col(v, ndim):
    v = np.asarray(v, dtype=np.float64)
    return v.reshape((-1,) + (1,) * (ndim - 1)) if v.ndim else v


@given(case=weight_case(), normalize=st.booleans(), policy=st.sampled_from(["tile", "min"]))
def test_definition(case, normalize, policy):
    w, alpha, beta = case
    delta = dc.dirac_tensor(w.shape, policy=policy)
    direction = dc.normalize_filters(w) if normalize else w
    expected = _col(alpha, w.ndim) * delta + _col(beta, w.ndim) * direction
    got = dc.dirac_weight(w, alpha, beta, normalize=normalize, policy=policy)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-14)


@given(case=weight_case())
def test_eq14_resnet_initialisation(case):
    """alpha = beta = 1 without normalization is delta + W."""
    w, _, _ = case
    np.testing.assert_array_equal(dc.dirac_weight(w, 1.0, 1.0, normalize=False),
                                  dc.dirac_tensor(w.shape) + w)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_result_keeps_weight_dtype_and_is_close(dtype):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 8, 3, 3))
    ref = dc.dirac_weight(w.astype(dtype).astype(np.float64), 5.0, 1e-3)
    got = dc.dirac_weight(w.astype(dtype), 5.0, 1e-3)
    assert got.dtype == np.dtype(dtype)
    tol = {"float32": 1e-6, "float16": 1e-3}[dtype]  # relative to the largest entry, alpha
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=0, atol=tol * 5.0)


def test_vjp_shapes_follow_arguments():
    w = np.ones((2, 3, 3))
    g = np.ones_like(w)
    dw, da, db = dc.dirac_weight_vjp(g, w, 5.0, np.ones(2))
    assert dw.shape == w.shape and da.shape == () and db.shape == (2,)
    dw, da, db = dc.dirac_weight_vjp(g, w, np.ones(2), np.asarray(2.0))
    assert da.shape == (2,) and db.shape == ()
    np.testing.assert_array_equal(da, [2.0, 1.0])  # the tiled ones each filter holds
