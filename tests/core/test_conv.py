"""N-d convolution against independent computations: the definition, SciPy, and PyTorch."""

import numpy as np
import pytest
from core_helpers import conv_case, naive_conv, same_pads
from hypothesis import given, settings

import dirac_core as dc


@settings(max_examples=60)
@given(case=conv_case())
def test_matches_definition(case):
    x, w, bias, kw = case
    expected = naive_conv(x, w, bias, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    np.testing.assert_allclose(dc.conv(x, w, bias, **kw), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_matches_scipy_correlate(ndim):
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(ndim)
    x = rng.normal(size=(1, 1, *(7,) * ndim))
    w = rng.normal(size=(1, 1, *range(2, 2 + ndim)))
    expected = signal.correlate(x[0, 0], w[0, 0], mode="valid")
    np.testing.assert_allclose(dc.conv(x, w)[0, 0], expected, rtol=1e-12, atol=1e-12)


def test_zero_spatial_dims_is_a_matrix_product():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(5, 4)), rng.normal(size=(3, 4)), rng.normal(size=3)
    np.testing.assert_allclose(dc.conv(x, w, b), x @ w.T + b, rtol=1e-13)


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
def test_same_padding_is_floor_centred(kernel):
    """For even kernels the spec pads more on the left than PyTorch's "same" does."""
    assert same_pads((kernel,), (1,)) == dc.resolve_padding("same", (kernel,), (1,))
    x = np.arange(6.0).reshape(1, 1, 6)
    w = np.zeros((1, 1, kernel))
    w[0, 0, 0] = 1.0  # picks the input kernel // 2 steps to the left
    y = dc.conv(x, w, padding="same")
    shift = kernel // 2
    np.testing.assert_array_equal(y[0, 0], np.concatenate([np.zeros(shift), x[0, 0, :6 - shift]]))


@pytest.mark.parametrize("padding", [2, (1, 2), ((0, 1), (2, 0)), "valid"])
def test_padding_forms_agree_with_explicit_pairs(padding):
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(2, 2, 6, 5)), rng.normal(size=(3, 2, 3, 2))
    pairs = {2: ((2, 2), (2, 2)), (1, 2): ((1, 1), (2, 2)), "valid": ((0, 0), (0, 0))}
    pairs = pairs.get(padding, padding)
    np.testing.assert_allclose(dc.conv(x, w, padding=padding),
                               naive_conv(x, w, None, (1, 1), pairs, (1, 1), 1), rtol=1e-12)


def test_matches_torch_conv_with_groups_stride_dilation():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=(2, 6, 9, 8)), rng.normal(size=(4, 3, 3, 2)), rng.normal(size=4)
    kw = {"stride": (2, 1), "padding": 1, "dilation": (1, 2), "groups": 2}
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kw)
    np.testing.assert_allclose(dc.conv(x, w, b, **kw), expected.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 2e-3)])
def test_lower_precision_agrees_with_float64(dtype, tol):
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(2, 4, 8, 8)).astype(dtype), rng.normal(size=(4, 4, 3, 3)).astype(dtype)
    ref = dc.conv(x.astype(np.float64), w.astype(np.float64), padding="same")
    got = dc.conv(x, w, padding="same")
    assert got.dtype == np.dtype(dtype)
    scale = np.abs(x.astype(np.float64)).max() * np.abs(w.astype(np.float64)).sum(axis=(1, 2, 3))
    assert np.all(np.abs(got - ref) <= tol * scale.max())


def test_empty_batch_gives_empty_output_and_gradients():
    x, w, b = np.ones((0, 4, 5, 5)), np.ones((4, 2, 3, 3)), np.ones(4)
    y = dc.conv(x, w, b, padding=1, groups=2)
    assert y.shape == (0, 4, 5, 5)
    dx, dw, db = dc.conv_vjp(y, x, w, b, padding=1, groups=2)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0.0)
    np.testing.assert_array_equal(db, 0.0)


def test_numpy_integer_arguments_are_accepted():
    x, w = np.ones((1, 2, 5)), np.ones((2, 1, 3))
    kw = {"stride": np.int64(2), "padding": np.int32(1), "dilation": np.int64(1),
          "groups": np.int64(2)}
    np.testing.assert_array_equal(dc.conv(x, w, **kw), dc.conv(x, w, stride=2, padding=1, groups=2))
