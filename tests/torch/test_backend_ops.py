"""Every op and VJP of the ``torch`` backend against the NumPy reference, with hypothesis.

Inputs are drawn in float64 and rounded to the dtype under test; the reference then runs in
float64 on the rounded values, so what is measured is the backend's own error. Each example
goes through the public API either forcing the backend (``backend="torch"`` with NumPy inputs;
torch tensors for bfloat16, which NumPy lacks) or letting it infer torch from tensor inputs.

Errors are measured against a *scale* that bounds the rounding error of the exact result:
``conv(|x|, |w|) + |bias|`` for conv (the VJP of the absolute values for its VJP), the row norm
of ``g`` over the filter norm for the normalize VJP, ``|alpha| delta + |beta| |normalize(W)|``
for the Dirac weight, and so on. The bound is then ``TOL[dtype]``:

- float64: 1e-12. The same formulas summed in another order: a few hundred ulps at most.
- float32: 2e-5, about 100 ulp(float32) = 1.2e-5 (sums of up to 128 products).
- float16: 4e-3. Accumulated in float32 (CPU conv in half: partial sums may be rounded to half,
  so up to 8 half ulps, u = 4.9e-4).
- bfloat16: 3e-2. Same reasoning with u = 3.9e-3.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dirac_core as dc

TOL = {"float64": 1e-12, "float32": 2e-5, "float16": 4e-3, "bfloat16": 3e-2}
DTYPES = list(TOL)
TORCH = {name: getattr(torch, name) for name in DTYPES}
# Largest decimal exponent of the per-filter scales: float64 squares overflow/underflow at 1e±200
# (so this checks the overflow-safe norm), float32 at 1e±30; float16 tops out at 65504.
EXPONENT = {"float64": 200, "float32": 30, "float16": 2, "bfloat16": 30}

seeds = st.integers(0, 2**32 - 1)
modes = st.sampled_from(["forced", "inferred"])


# ---------------------------------------------------------------------------- helpers


def rounded(a, dtype):
    """``a`` rounded to ``dtype`` and back to a float64 NumPy array."""
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(TORCH[dtype]).double().numpy()


def call(op, dtype, mode, *arrays, **kwargs):
    """``dc.<op>`` on the torch backend; ``arrays`` are float64 NumPy arrays, floats or None."""

    def native(a):
        if a is None or isinstance(a, float):
            return a
        if mode == "forced" and dtype != "bfloat16":
            return np.asarray(a).astype(dtype)
        return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(TORCH[dtype])

    backend = "torch" if mode == "forced" else None
    return getattr(dc, op)(*map(native, arrays), backend=backend, **kwargs)


def check(got, ref, dtype, what, scale=None, expect_dtype=None):
    """``|got - ref| <= TOL[dtype] * max(scale, smallest normal)`` elementwise.

    ``scale`` defaults to ``max|ref|``; the result's dtype must be ``expect_dtype`` (default
    ``dtype``).
    """
    expect_dtype = expect_dtype or dtype
    assert isinstance(got, torch.Tensor), f"{what}: got {type(got).__name__}, not a tensor"
    assert got.dtype == TORCH[expect_dtype], f"{what}: dtype {got.dtype}, expected {expect_dtype}"
    assert got.device.type == "cpu", what
    got = got.detach().double().numpy()
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    # A true value beyond the dtype's range (g / eps of a zero filter in float16) rounds to inf.
    top = float(torch.finfo(TORCH[dtype]).max)
    huge = np.abs(ref) > 2 * top
    assert np.array_equal(got[huge], np.sign(ref[huge]) * np.inf), f"{what}: overflow"
    ok = np.abs(ref) <= top
    assert np.isfinite(got[ok]).all(), f"{what}: non-finite values"
    got, ref = np.where(ok, got, 0.0), np.where(ok, ref, 0.0)
    if scale is None:
        scale = np.abs(ref).max(initial=0.0)
    # Below the smallest normal number rounding is absolute (subnormal spacing), not relative.
    floor = float(torch.finfo(TORCH[dtype]).smallest_normal)
    err = np.abs(got - ref) / np.maximum(scale, floor)
    worst = float(err.max(initial=0.0))
    assert worst <= TOL[dtype], f"{what} ({dtype}): error {worst:.3g} > {TOL[dtype]:.0e}"


def rows(a):
    """``a`` viewed as one row per output filter."""
    return a.reshape(a.shape[0], -1)


def row_norms(a):
    """L2 norm of each filter, scaled by its max-abs first so that 1e200 does not overflow."""
    m = np.abs(rows(a)).max(1)
    safe = np.where(m > 0, m, 1.0)
    return m * np.linalg.norm(rows(a) / safe[:, None], axis=1)


def per_row(values, like):
    """A per-filter vector shaped to broadcast over ``like`` (``(O, 1, ..., 1)``)."""
    return np.asarray(values).reshape((-1,) + (1,) * (like.ndim - 1))


@st.composite
def weight_case(draw):
    """``(shape, groups)`` of a conv weight with 0 to 3 spatial dims."""
    groups = draw(st.integers(1, 3))
    out_channels = groups * draw(st.integers(1, 3))
    in_per_group = draw(st.integers(1, 4))
    ndim = draw(st.integers(0, 3))
    kernel = tuple(draw(st.integers(1, 4 if ndim < 3 else 3)) for _ in range(ndim))
    return (out_channels, in_per_group, *kernel), groups


@st.composite
def conv_case(draw, max_ndim=3, min_ndim=0):
    """``(x_shape, w_shape, has_bias, kwargs)`` of a valid conv, every padding form."""
    ndim = draw(st.integers(min_ndim, max_ndim))
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, min(4, max(2, 6 - ndim)))) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    form = draw(st.sampled_from(["same", "valid", "int", "ints", "pairs"]))
    if form == "same":
        stride, padding, pairs = (1,) * ndim, "same", None
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
        pairs = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(ndim))
        if form == "valid":
            pairs = ((0, 0),) * ndim
            padding = "valid"
        elif form == "int":
            p = draw(st.integers(0, 2))
            pairs, padding = ((p, p),) * ndim, p
        elif form == "ints":
            padding = tuple(p for p, _ in pairs)
            pairs = tuple((p, p) for p in padding)
        else:
            padding = pairs
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    pads = [0] * ndim if pairs is None else [left + right for left, right in pairs]
    low = [max(1, s - p) for s, p in zip(span, pads, strict=True)]
    size = tuple(draw(st.integers(lo, lo + 3)) for lo in low)
    x_shape = (draw(st.integers(1, 2)), cin, *size)
    w_shape = (cout, cin // groups, *kernel)
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x_shape, w_shape, draw(st.booleans()), kwargs


def filter_scales(rng, shape, dtype):
    """Per-filter factors ``10**e``, ``e`` uniform in ``+-EXPONENT[dtype]``, some exactly 0."""
    e = EXPONENT[dtype]
    scales = 10.0 ** rng.uniform(-e, e, size=shape[0])
    scales[rng.random(shape[0]) < 0.2] = 0.0
    return per_row(scales, np.empty(shape))


# ---------------------------------------------------------------------------- registry


def test_registered_backend_is_torch(backend):
    assert backend.name == "torch"
    assert isinstance(backend, dc.Backend)
    assert backend.available().ok
    assert set(backend.dtypes) == set(DTYPES)
    assert dc.infer_backend(torch.zeros(1)) is backend
    assert backend.owns(torch.zeros(1)) and not backend.owns(np.zeros(1))


def test_to_numpy_round_trip(backend):
    a = np.random.default_rng(0).normal(size=(3, 4))
    t = backend.from_numpy(a)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    assert np.array_equal(backend.to_numpy(t), a)
    t[0, 0] = 7.0
    assert a[0, 0] != 7.0, "from_numpy must copy, not alias the caller's array"
    bf = backend.to_numpy(t.to(torch.bfloat16))
    assert bf.dtype == np.float32 and np.array_equal(bf, rounded(backend.to_numpy(t), "bfloat16"))


# ---------------------------------------------------------------------------- forward ops


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=weight_case(), policy=st.sampled_from(["tile", "min"]))
def test_dirac_tensor(dtype, case, policy):
    shape, groups = case
    got = dc.dirac_tensor(shape, groups=groups, policy=policy, dtype=dtype, backend="torch")
    ref = dc.dirac_tensor(shape, groups=groups, policy=policy)
    assert got.dtype == TORCH[dtype] and got.shape == ref.shape
    assert np.array_equal(got.double().numpy(), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=weight_case(), seed=seeds, eps=st.sampled_from([1e-12, 0.5, 3.0]), mode=modes)
def test_normalize_filters_and_vjp(dtype, case, seed, eps, mode):
    shape, _ = case
    rng = np.random.default_rng(seed)
    w = rounded(rng.normal(size=shape) * filter_scales(rng, shape, dtype), dtype)
    g = rounded(rng.normal(size=shape), dtype)
    ref = dc.normalize_filters(w, eps=eps)
    got = call("normalize_filters", dtype, mode, w, eps=eps)
    check(got, ref, dtype, "normalize_filters", per_row(np.abs(rows(ref)).max(1), w))
    norms = np.maximum(row_norms(w), eps)
    bound = per_row(row_norms(g) / norms, w)
    ref_dw = dc.normalize_filters_vjp(g, w, eps=eps)
    check(call("normalize_filters_vjp", dtype, mode, g, w, eps=eps), ref_dw, dtype, "dw", bound)


def draw_scale(rng, kind, out_channels, dtype):
    if kind == "float":
        return float(rounded(rng.normal(), dtype))
    shape = () if kind == "scalar" else (out_channels,)
    return rounded(rng.normal(size=shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(
    case=weight_case(),
    seed=seeds,
    kinds=st.tuples(*[st.sampled_from(["float", "scalar", "vector"])] * 2),
    normalize=st.booleans(),
    policy=st.sampled_from(["tile", "min"]),
    mode=modes,
)
def test_dirac_weight_and_vjp(dtype, case, seed, kinds, normalize, policy, mode):
    shape, groups = case
    rng = np.random.default_rng(seed)
    w = rounded(rng.normal(size=shape) * filter_scales(rng, shape, "float16"), dtype)
    g = rounded(rng.normal(size=shape), dtype)
    alpha, beta = (draw_scale(rng, kind, shape[0], dtype) for kind in kinds)
    kw = {"normalize": normalize, "groups": groups, "policy": policy}

    delta = dc.dirac_tensor(shape, groups=groups, policy=policy)
    direction = dc.normalize_filters(w) if normalize else w
    a, b = (np.abs(per_row(s, w)) if np.ndim(s) else abs(s) for s in (alpha, beta))
    ref = dc.dirac_weight(w, alpha, beta, **kw)
    got = call("dirac_weight", dtype, mode, w, alpha, beta, **kw)
    check(got, ref, dtype, "dirac_weight", a * delta + b * np.abs(direction))

    dw, dalpha, dbeta = call("dirac_weight_vjp", dtype, mode, g, w, alpha, beta, **kw)
    ref_dw, ref_dalpha, ref_dbeta = dc.dirac_weight_vjp(g, w, alpha, beta, **kw)
    bg = rows(b * np.abs(g))
    bound = row_norms(bg) / np.maximum(row_norms(w), 1e-12) if normalize else bg.max(1)
    check(dw, ref_dw, dtype, "dw", per_row(bound, w))

    def reduced(full, like):
        return rows(full).sum(1) if np.ndim(like) else full.sum()

    # A gradient has its argument's dtype; a Python float arrives in the working dtype
    # (at least float32), as dirac_core's API converts it.
    work = "float64" if dtype == "float64" else "float32"
    expect = [work if kind == "float" else dtype for kind in kinds]
    check(dalpha, ref_dalpha, dtype, "dalpha", reduced(np.abs(g) * delta, alpha), expect[0])
    check(dbeta, ref_dbeta, dtype, "dbeta", reduced(np.abs(g * direction), beta), expect[1])


@pytest.mark.parametrize("dtype", DTYPES)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    axis_pick=st.integers(0, 3),
    seed=seeds,
    mode=modes,
)
def test_ncrelu_and_vjp_exact(dtype, shape, axis_pick, seed, mode):
    rng = np.random.default_rng(seed)
    axis = axis_pick % len(shape)
    x = rounded(rng.normal(size=shape), dtype)
    x[rng.random(shape) < 0.3] = 0.0  # exact zeros: the gradient there is 0 on both halves
    doubled = list(shape)
    doubled[axis] *= 2
    g = rounded(rng.normal(size=doubled), dtype)
    # No arithmetic but a copy and one addition of a zero: results are exact in every dtype.
    got = call("ncrelu", dtype, mode, x, axis=axis)
    assert got.dtype == TORCH[dtype]
    assert np.array_equal(got.double().numpy(), dc.ncrelu(x, axis=axis))
    dx = call("ncrelu_vjp", dtype, mode, g, x, axis=axis)
    assert np.array_equal(dx.double().numpy(), dc.ncrelu_vjp(g, x, axis=axis))


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=conv_case(), seed=seeds, mode=modes)
def test_conv_and_vjp(dtype, case, seed, mode):
    check_conv(dtype, case, seed, mode)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@given(case=conv_case(min_ndim=4, max_ndim=5), seed=seeds, mode=modes)
@settings(max_examples=10)
def test_conv_beyond_three_spatial_dims(dtype, case, seed, mode):
    """torch has conv1d-3d only; the backend sums 3-d convolutions, so any L matches the spec."""
    check_conv(dtype, case, seed, mode)


def check_conv(dtype, case, seed, mode):
    """``conv`` and ``conv_vjp`` on ``case`` against the float64 reference."""
    x_shape, w_shape, has_bias, kw = case
    rng = np.random.default_rng(seed)
    x = rounded(rng.normal(size=x_shape), dtype)
    w = rounded(rng.normal(size=w_shape), dtype)
    bias = rounded(rng.normal(size=w_shape[0]), dtype) if has_bias else None
    ref = dc.conv(x, w, bias, **kw)
    g = rounded(rng.normal(size=ref.shape), dtype)
    abs_bias = None if bias is None else np.abs(bias)
    check(call("conv", dtype, mode, x, w, bias, **kw), ref, dtype, "conv",
          dc.conv(np.abs(x), np.abs(w), abs_bias, **kw))

    got = call("conv_vjp", dtype, mode, g, x, w, bias, **kw)
    refs = dc.conv_vjp(g, x, w, bias, **kw)
    bounds = dc.conv_vjp(np.abs(g), np.abs(x), np.abs(w), abs_bias, **kw)
    for name, value, expected, bound in zip(("dx", "dw", "dbias"), got, refs, bounds,
                                            strict=True):
        if expected is None:
            assert value is None, f"{name} must be None without a bias"
        else:
            check(value, expected, dtype, name, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@given(case=weight_case(), seed=seeds, has_bias=st.booleans(), mode=modes,
       eps=st.sampled_from([1e-5, 1e-3, 0.0]))
def test_fold_batchnorm(dtype, case, seed, has_bias, mode, eps):
    shape, _ = case
    out_channels = shape[0]
    rng = np.random.default_rng(seed)
    weight = rounded(rng.normal(size=shape), dtype)
    bias = rounded(rng.normal(size=out_channels), dtype) if has_bias else None
    gamma = rounded(rng.normal(size=out_channels), dtype)  # either sign
    beta, mean = (rounded(rng.normal(size=out_channels), dtype) for _ in range(2))
    var = rounded(rng.uniform(0.1, 3.0, size=out_channels), dtype)
    args = (weight, bias, gamma, beta, mean, var)
    ref_w, ref_b = dc.fold_batchnorm(*args, eps=eps)
    got_w, got_b = call("fold_batchnorm", dtype, mode, *args, eps=eps)
    check(got_w, ref_w, dtype, "weight", np.abs(ref_w))
    s = np.abs(gamma) / np.sqrt(var + eps)
    shift = np.abs(mean) + (0 if bias is None else np.abs(bias))
    check(got_b, ref_b, dtype, "bias", shift * s + np.abs(beta))


def test_from_numpy_accepts_ml_dtypes_bfloat16(backend):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    a = np.array([[0.1259765625, -3.0], [1e30, 0.0]]).astype(ml_dtypes.bfloat16)
    t = backend.from_numpy(a)
    assert t.dtype == torch.bfloat16
    assert np.array_equal(t.double().numpy(), a.astype(np.float64))


# ---------------------------------------------------------------------------- eps range


@pytest.mark.parametrize("eps", [5e-324, 1e-50, 1e-40, 1e300])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_normalize_matches_the_reference_for_any_eps(eps: float, dtype: str) -> None:
    """eps is taken in the working dtype, clamped into its range: an all-zero filter stays
    zero (not NaN) and eps = 1e300 on float32 divides by float32's largest number."""
    w = np.zeros((2, 3, 2), dtype=dtype)
    w[1, 0, 0] = 1.0
    g = np.ones_like(w)
    with np.errstate(over="ignore"):  # g / eps beyond the dtype's range is inf, correctly
        pairs = [
            (dc.normalize_filters(torch.from_numpy(w), eps=eps),
             dc.normalize_filters(w, eps=eps)),
            (dc.normalize_filters_vjp(torch.from_numpy(g), torch.from_numpy(w), eps=eps),
             dc.normalize_filters_vjp(g, w, eps=eps)),
        ]
    for got, want in pairs:
        assert not torch.isnan(got).any()
        np.testing.assert_array_equal(got.numpy(), want)


def test_layers_and_dirac_weight_accept_tiny_eps() -> None:
    from dirac_torch.layers import DiracConv2d

    layer = DiracConv2d(3, 3, 3, eps=1e-40)
    layer(torch.randn(1, 3, 5, 5)).sum().backward()
    w = torch.randn(3, 3, 3, 3, requires_grad=True)
    w_hat = dc.dirac_weight(w, 1.0, 1.0, eps=1e-50)
    w_hat.sum().backward()
    want = dc.dirac_weight(w.detach().numpy(), 1.0, 1.0, eps=1e-50)
    np.testing.assert_allclose(w_hat.detach().numpy(), want, rtol=1e-6)
    grads = [w.grad] + [p.grad for p in layer.parameters() if p.grad is not None]
    assert len(grads) > 1 and all(torch.isfinite(grad).all() for grad in grads)


@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), [
    ((1, 1, 0), (1, 1, 1), {"padding": 1}),
    ((2, 2, 0, 3), (4, 1, 2, 3), {"padding": (1, 1), "groups": 2}),
    ((1, 1, 0, 1, 0), (2, 1, 1, 1, 1), {"padding": 1, "stride": 2}),
], ids=["1d", "2d-groups", "3d-stride"])
def test_conv_of_an_empty_spatial_dim_made_valid_by_padding(x_shape, w_shape, kwargs):
    """torch's native convolution refuses an empty spatial dim (only an empty batch or channel
    count): the output is the bias alone, dx is empty and dW zero, exactly the reference's."""
    rng = np.random.default_rng(0)
    x, w, bias = np.ones(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    want = dc.conv(x, w, bias, **kwargs)
    per_channel = bias.reshape(-1, *(1,) * (want.ndim - 2))
    assert want.size and np.array_equal(want, np.broadcast_to(per_channel, want.shape))
    got = dc.conv(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias), **kwargs)
    np.testing.assert_array_equal(got.numpy(), want)
    g = rng.standard_normal(want.shape)
    for mine, ref in zip(dc.conv_vjp(g, x, w, bias, backend="torch", **kwargs),
                         dc.conv_vjp(g, x, w, bias, **kwargs), strict=True):
        assert mine.shape == ref.shape
        np.testing.assert_allclose(mine.numpy(), ref, rtol=1e-14, atol=0)


def test_conv_of_a_length_one_dim_with_another_stride():
    """torch 2.13's CPU float32 conv1d crashed the process (SIGSEGV) with a bias, stride 3,
    padding 2 and dilation 2 on an input and a weight of length 1 whose stride along it is 2
    (channels swapped in from a transpose): tensors torch counts as contiguous. The backend
    convolves the same memory with packed strides, and matches the reference."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2, 1, 2), np.float32)).transpose(1, 2)
    w = torch.from_numpy(rng.standard_normal((2, 1, 2), np.float32)).transpose(1, 2)
    bias = torch.from_numpy(rng.standard_normal(2, np.float32))
    assert x.is_contiguous() and x.stride() == (2, 1, 2) and w.stride() == (2, 1, 2)
    kwargs = {"stride": 3, "padding": 2, "dilation": 2}
    got = dc.conv(x, w, bias, **kwargs)
    want = dc.conv(*(a.numpy().astype(np.float64) for a in (x, w, bias)), **kwargs)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=0)
