"""The paper's identities, exactly, for every kernel size (even ones included) and dilation."""

import numpy as np
from core_helpers import FINITE, arrays
from hypothesis import given
from hypothesis import strategies as st

import dirac_core as dc

dims = st.integers(0, 3)


@st.composite
def image_and_kernel(draw, channels=None):
    ndim = draw(dims)
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    size = tuple(draw(st.integers(1, 6)) for _ in range(ndim))
    c = channels or draw(st.integers(1, 4))
    x = draw(arrays((draw(st.integers(1, 2)), c, *size)))
    return x, kernel, dilation


@given(case=image_and_kernel(), groups=st.sampled_from([1, 2]))
def test_eq1_dirac_conv_is_identity(case, groups):
    x, kernel, dilation = case
    x = np.concatenate([x] * groups, axis=1)
    c = x.shape[1]
    delta = dc.dirac_tensor((c, c // groups, *kernel), groups=groups)
    y = dc.conv(x, delta, padding="same", dilation=dilation, groups=groups)
    np.testing.assert_array_equal(y, x)


@given(case=image_and_kernel())
def test_eq11_ncrelu_then_tiled_dirac_is_identity(case):
    x, kernel, dilation = case
    c = x.shape[1]
    delta = dc.dirac_tensor((c, 2 * c, *kernel))
    y = dc.conv(dc.ncrelu(x), delta, padding="same", dilation=dilation)
    np.testing.assert_array_equal(y, x)


@given(case=image_and_kernel(), m=st.integers(2, 3))
def test_eq7_more_outputs_repeat_the_input(case, m):
    x, kernel, dilation = case
    c = x.shape[1]
    y = dc.conv(x, dc.dirac_tensor((m * c, c, *kernel)), padding="same", dilation=dilation)
    np.testing.assert_array_equal(y, np.concatenate([x] * m, axis=1))


@given(case=image_and_kernel(), m=st.integers(2, 3))
def test_eq8_more_inputs_sum_the_blocks(case, m):
    x, kernel, dilation = case
    c = x.shape[1]
    stacked = np.concatenate([x * (j + 1) for j in range(m)], axis=1)  # m distinct blocks
    y = dc.conv(stacked, dc.dirac_tensor((c, m * c, *kernel)), padding="same", dilation=dilation)
    np.testing.assert_allclose(y, x * sum(range(1, m + 1)), rtol=1e-12, atol=1e-12)


@given(case=image_and_kernel(), a=FINITE, b=FINITE, data=st.data())
def test_eq12_linearity(case, a, b, data):
    """conv(x, a*delta + b*W) = a*x + b*conv(x, W)."""
    x, kernel, dilation = case
    c = x.shape[1]
    w = data.draw(arrays((c, c, *kernel)))
    w_hat = dc.dirac_weight(w, a, b, normalize=False)
    lhs = dc.conv(x, w_hat, padding="same", dilation=dilation)
    rhs = a * x + b * dc.conv(x, w, padding="same", dilation=dilation)
    scale = np.abs(a * x).max() + np.abs(b) * np.abs(x).max() * np.abs(w).sum() + 1
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-12 * scale)
