"""Batch-norm folding: conv then eval-mode BN equals one conv with the folded weight and bias."""

import numpy as np
import pytest
from core_helpers import conv_case
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dirac_core as dc


def _bn(y, gamma, beta, mean, var, eps):
    shape = (1, -1) + (1,) * (y.ndim - 2)
    return (y - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(
        shape
    ) + beta.reshape(shape)


@given(case=conv_case(max_dims=2), data=st.data(), eps=st.sampled_from([1e-5, 1e-3, 0.1]))
def test_fold_equals_conv_then_bn(case, data, eps):
    x, w, bias, kw = case
    o = w.shape[0]
    vec = lambda lo, hi: data.draw(hnp.arrays(np.float64, (o,), elements=st.floats(lo, hi)))  # noqa: E731
    gamma, beta, mean, var = vec(-3, 3), vec(-3, 3), vec(-3, 3), vec(0, 4)
    expected = _bn(dc.conv(x, w, bias, **kw), gamma, beta, mean, var, eps)
    w2, b2 = dc.fold_batchnorm(w, bias, gamma, beta, mean, var, eps=eps)
    got = dc.conv(x, w2, b2, **kw)
    scale = 1 + np.abs(expected).max() + np.abs(x).max() * np.abs(w).sum() * np.abs(gamma).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * scale / np.sqrt(eps))


def test_negative_gamma_and_no_bias():
    w = np.ones((2, 1, 1))
    w2, b2 = dc.fold_batchnorm(w, None, np.array([-2.0, 1.0]), np.array([0.5, 0.0]),
                               np.array([1.0, 3.0]), np.array([3.0, 0.0]), eps=1.0)
    np.testing.assert_allclose(w2[:, 0, 0], [-1.0, 1.0])
    np.testing.assert_allclose(b2, [1.5, -3.0])


@pytest.mark.filterwarnings("error")
def test_an_eps_beyond_float32_folds_to_zero_scale_without_a_warning():
    # The spec takes eps in float32 for float32 weights: 1e40 rounds to inf, so s = 0.
    w, ones, zeros = np.ones((2, 2, 3, 3), np.float32), np.ones(2, np.float32), np.zeros(2,
                                                                                        np.float32)
    new_w, new_b = dc.fold_batchnorm(w, None, ones, zeros, zeros, ones, eps=1e40)
    assert not new_w.any() and not new_b.any() and new_w.dtype == np.float32
