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


# A length-4 input whose output reads only a few positions of an enormous padded input: the
# padded input (or a col2im buffer of its size) would take gigabytes.
HUGE = 10**9
FAR_READS = [
    # kernel 2 with dilation 1e9: tap 0 reads only padding, tap 1 reads x[j]
    ({"padding": ((HUGE, 0),), "dilation": HUGE}, 2, 4),
    # kernel 1, stride 1e9 over 1e9 of padding each side: only output 1 reads x[0]
    ({"padding": HUGE, "stride": HUGE}, 1, 3),
]


@pytest.mark.parametrize("backend", ["numpy", "array_api"])
@pytest.mark.parametrize("kwargs, taps, out", FAR_READS)
def test_far_padding_and_dilation_cost_what_the_output_costs(backend, kwargs, taps, out):
    import tracemalloc

    if backend == "array_api":
        xp = pytest.importorskip("array_api_strict")
        to = xp.asarray
    else:
        to = np.asarray
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    w = np.arange(1.0, taps + 1).reshape(1, 1, taps)
    g = np.arange(1.0, out + 1).reshape(1, 1, out)
    # Once untraced: the first call imports and caches what any call needs (array-api-strict's
    # modules are over a megabyte), which is no cost of the padding.
    dc.conv(to(x), to(w), **kwargs)
    dc.conv_vjp(to(g), to(x), to(w), **kwargs)
    tracemalloc.start()
    try:
        y = dc.conv(to(x), to(w), **kwargs)
        dx, dw, _ = dc.conv_vjp(to(g), to(x), to(w), **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # bytes: the padded input alone would be 8 GB
    y, dx, dw = (np.asarray(a) for a in (y, dx, dw))
    if taps == 2:  # y[j] = w[1] * x[j]; tap 0 sees zeros only
        np.testing.assert_array_equal(y[0, 0], 2 * x[0, 0])
        np.testing.assert_array_equal(dx[0, 0], 2 * g[0, 0])
        np.testing.assert_array_equal(dw[0, 0], [0.0, g[0, 0] @ x[0, 0]])
    else:  # only output 1 reads the input, at x[0]
        np.testing.assert_array_equal(y[0, 0], [0.0, 1.0, 0.0])
        np.testing.assert_array_equal(dx[0, 0], [2.0, 0.0, 0.0, 0.0])
        np.testing.assert_array_equal(dw[0, 0], [2.0])
