"""Subnormal numbers under XLA on CPU (flush-to-zero): the bit-level scaling of
dirac_jax.subnormal is exact, and the ops built on it agree with the NumPy reference under
jax.jit and jax.grad where XLA alone would flush to zero."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dirac_core as dc
import dirac_jax as dj
from dirac_jax import ops
from dirac_jax.subnormal import NONFINITE_EXPONENT, ZERO_EXPONENT, exponent, ldexp

UINT = {np.float32: np.uint32, np.float64: np.uint64}
BITS = {np.float32: 32, np.float64: 64}


def _from_bits(dtype, bits):
    return np.asarray(bits, UINT[dtype]).view(dtype)


def _finite(dtype):
    """Any finite float of ``dtype`` from its bits, subnormals and both zeros included."""
    top = 2 ** BITS[dtype] - 1
    return st.integers(0, top).map(lambda b: _from_bits(dtype, [b])).filter(
        lambda x: bool(np.isfinite(x).all()))


def _exact_ldexp(x, n, dtype):
    """The correctly rounded ``x * 2**n`` in ``dtype`` (NumPy's ldexp rounds once)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(x, n).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_ldexp_is_bit_exact_under_jit(dtype, data):
    """Against np.ldexp on subnormal, normal, overflowing and underflowing results."""
    x = np.concatenate([data.draw(_finite(dtype)) for _ in range(8)])
    span = 160 if dtype is np.float32 else 1100
    n = np.asarray(data.draw(st.lists(st.integers(-2 * span, 2 * span), min_size=8,
                                      max_size=8)), np.int32)
    got = np.asarray(jax.jit(ldexp)(x, n))
    want = _exact_ldexp(x, n, dtype)
    np.testing.assert_array_equal(got.view(UINT[dtype]), want.view(UINT[dtype]))


@pytest.mark.parametrize("target", [np.float16, ml_dtypes.bfloat16])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_ldexp_rounds_once_into_a_half_dtype(target, data):
    """float32 into float16 or bfloat16, subnormal results included: one rounding of the
    exact value (which float64 holds)."""
    x = np.concatenate([data.draw(_finite(np.float32)) for _ in range(8)])
    n = np.asarray(data.draw(st.lists(st.integers(-40, 40), min_size=8, max_size=8)), np.int32)
    got = np.asarray(jax.jit(ldexp, static_argnums=2)(x, n, np.dtype(target)))
    with np.errstate(over="ignore"):
        want = np.ldexp(x.astype(np.float64), n).astype(target)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_ldexp_keeps_signs_infinities_and_nan():
    x = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan, -1e-45], np.float32)
    got = np.asarray(jax.jit(ldexp)(x, np.int32(-3)))
    assert np.signbit(got[0]) and not np.signbit(got[1])
    assert got[2] == np.inf and got[3] == -np.inf and np.isnan(got[4])
    assert got[5] == 0 and np.signbit(got[5])  # -2**-152 rounds to -0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_exponent_matches_frexp(dtype, data):
    x = np.concatenate([data.draw(_finite(dtype)) for _ in range(8)])
    got = np.asarray(jax.jit(exponent)(x))
    want = np.where(x == 0, ZERO_EXPONENT, np.frexp(x)[1] - 1)
    np.testing.assert_array_equal(got, want)
    assert jax.jit(exponent)(np.array([np.nan, -np.inf], dtype)).tolist() == [
        NONFINITE_EXPONENT] * 2


# ------------------------------------------------------------------ the ops, jit and grad

SUBNORMAL_CASES = [
    # dtype, w, eps: results or inputs below the normal range
    (np.float32, np.full((2, 3), 1.45), 1e39),  # clamped at float32's max: ~4e-39 results
    (np.float32, np.array([[1e-40, -3e-40, 0.0, 2e-41]]), 1e-45),  # subnormal filter
    (np.float32, np.zeros((1, 4)), 1e-42),  # an all-zero filter: g / eps overflows nothing
    (np.float64, np.full((2, 3), 1.45), 1e308),
    (np.float64, np.array([[1e-310, -3e-310, 0.0, 2e-315]]), 1e-320),
]


def _assert_ulps(got, ref, dtype, units=4):
    """``got`` within a few units in the last place of ``ref`` (a subnormal's spacing as the
    unit below the normal range): a flushed zero is many units off."""
    info = np.finfo(dtype)
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    tol = units * np.maximum(np.abs(ref) * float(info.eps), float(info.smallest_subnormal))
    assert got.shape == ref.shape and np.all(np.abs(got - ref) <= tol), (got, ref)


@pytest.mark.parametrize("dtype, w, eps", SUBNORMAL_CASES)
def test_normalize_filters_and_its_grad_under_jit(dtype, w, eps):
    w = w.astype(dtype)
    g = (1e-6 * np.linspace(-1.0, 2.0, w.size)).reshape(w.shape).astype(dtype)  # dw finite
    ref = dc.normalize_filters(w, eps=eps)
    got = jax.jit(lambda v: dc.normalize_filters(v, eps=eps))(jnp.asarray(w))
    _assert_ulps(got, ref, dtype)

    grad = jax.jit(jax.grad(lambda v: jnp.sum(dc.normalize_filters(v, eps=eps) * g)))
    ref_dw = dc.normalize_filters_vjp(g, w, eps=eps)
    _assert_ulps(grad(jnp.asarray(w)), ref_dw, dtype)


def test_dirac_weight_grads_with_subnormal_products_under_jit():
    """beta * normalize(W) below the normal range, and dbeta summing such products."""
    w = np.full((3, 2, 3), 1.45, np.float32)
    alpha, beta = np.float32(2.0), np.array([0.5, 0.25, 1.0], np.float32)
    g = np.ones_like(w)
    kw = {"eps": 1e39, "groups": 1}
    ref = dc.dirac_weight(w, alpha, beta, **kw)
    got = jax.jit(lambda v, a, b: dc.dirac_weight(v, a, b, **kw))(w, alpha, beta)
    _assert_ulps(got, ref, np.float32)

    def loss(v, a, b):
        return jnp.sum(dc.dirac_weight(v, a, b, **kw) * g)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(w, alpha, beta)
    for got_i, ref_i in zip(grads, dc.dirac_weight_vjp(g, w, alpha, beta, **kw), strict=True):
        ref_i = np.asarray(ref_i)
        assert np.asarray(got_i).dtype == ref_i.dtype
        _assert_ulps(got_i, ref_i, np.float32, units=16)
    assert np.all(np.asarray(grads[2]) > 0)  # dbeta: sums of subnormal products, not 0


@pytest.mark.parametrize("dtype, eps", [(np.float32, 1e-40), (np.float64, 1e-310),
                                        (np.float16, 1e-40), (ml_dtypes.bfloat16, 1e-40)],
                         ids=str)
def test_fold_batchnorm_with_a_subnormal_eps_under_jit(dtype, eps):
    """A zero variance: gamma / sqrt(eps), not inf or NaN (dc.fold_batchnorm is eager: it
    checks the statistics on the host; the op it reaches is jitted here with eps static, as
    the backend compiles it for large inputs)."""
    weight = np.array([[1.0, -2.0], [0.5, 0.0]], dtype)
    gamma, beta = np.array([0.125, -1.0], dtype), np.array([0.5, 0.25], dtype)
    mean, var = np.array([0.25, 0.0], dtype), np.array([0.0, 1e-39], np.float32).astype(dtype)
    args = (weight, gamma, beta, mean, var)
    fold = jax.jit(lambda w, *a: ops.fold_batchnorm(w, None, *a, eps))
    got = fold(*map(jnp.asarray, args))
    work_eps = float(np.asarray(eps, np.promote_types(dtype, np.float32)))  # as the spec takes it
    ref = dc.fold_batchnorm(args[0].astype(np.float64), None,
                            *(a.astype(np.float64) for a in args[1:]), eps=work_eps)
    for got_i, ref_i in zip(got, ref, strict=True):
        with np.errstate(over="ignore"):  # past float16's range the right answer is inf
            want = ref_i.astype(dtype).astype(np.float64)
        assert not np.isnan(np.asarray(got_i, np.float64)).any()
        np.testing.assert_allclose(np.asarray(got_i, np.float64), want,
                                   rtol=1e-2 if np.finfo(dtype).bits < 32 else 1e-6)


def test_eager_dbeta_of_a_scalar_beta_sums_subnormal_terms():
    """A 0-d beta's gradient is the total of per-filter values: subnormal ones count."""
    w = np.full((2, 8), 1e-30, np.float32)  # clamped: u = w / eps ~ 5e-40 per entry
    g = np.ones_like(w)
    kw = {"eps": 2.0**31, "normalize": True}
    got = dc.dirac_weight_vjp(jnp.asarray(g), jnp.asarray(w), 2.0, 0.5, **kw)[2]
    want = dc.dirac_weight_vjp(g, w, 2.0, 0.5, **kw)[2]
    assert 0 < float(want) < np.finfo(np.float32).tiny * 2  # the terms are subnormal
    _assert_ulps(got, want, np.float32, units=16)


@pytest.mark.parametrize("beta", [1.0, -2.0])
def test_alpha_zero_keeps_a_subnormal_term_at_the_taps(beta):
    """W_hat = 0 * delta + beta * W / eps with a huge eps: the taps are subnormal; XLA's add of
    alpha = 0 flushed them to 0 (the conformance suite drew it: a (1, 4097) filter, eps 1e39)."""
    w = np.full((1, 9), 1.4554425477981567, np.float32)
    got = np.asarray(dj.dirac_weight(jnp.asarray(w), 0.0, beta, eps=1e39))
    want = dc.dirac_weight(w, 0.0, beta, eps=float(np.finfo(np.float32).max))
    assert want[0, 0] != 0 and abs(want[0, 0]) < np.finfo(np.float32).tiny
    # an ulp of the subnormal apart at most: eps / max-abs is rounded on the way
    np.testing.assert_array_max_ulp(got, want.astype(np.float32), maxulp=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, ml_dtypes.bfloat16])
def test_ncrelu_keeps_subnormal_inputs_and_their_gradient(dtype):
    """A subnormal input is positive or negative, not 0: both halves and the gradient are the
    reference's bit for bit, through the public function (eager, padded), jax.jit and jax.grad
    (XLA's comparison alone flushed them: all zeros, and no gradient)."""
    t = float(np.finfo(dtype).smallest_subnormal)
    x = np.array([[t, -t, 3 * t, -0.0, 0.0, 1.0]], dtype)
    g = np.arange(1, 13, dtype=np.float64).reshape(1, 12).astype(dtype)
    want = dc.ncrelu(x.astype(np.float64)).astype(dtype)
    want_dx = dc.ncrelu_vjp(g.astype(np.float64), x.astype(np.float64)).astype(dtype)
    assert np.all(want_dx[0, :3] != 0)
    for got in (dc.ncrelu(x, backend="jax"), jax.jit(ops.ncrelu, static_argnums=1)(x, 1)):
        assert np.asarray(got).tobytes() == want.tobytes()
    pulled = jax.vjp(lambda v: dj.ncrelu(v), jnp.asarray(x))[1](jnp.asarray(g))[0]
    for got in (dc.ncrelu_vjp(g, x, backend="jax"), pulled):
        assert np.asarray(got).tobytes() == want_dx.tobytes()


def test_sign_proxy_orders_every_float32_class_as_ieee():
    """Against NumPy's IEEE comparison, on both zeros, subnormals, normals, inf and NaN."""
    from dirac_jax.subnormal import sign_proxy
    x = _from_bits(np.float32, [0, 1 << 31, 1, (1 << 31) | 7, 0x7FFFFF, 0x800000, 0x7F800000,
                                0xFF800000, 0x7FC00000, 0x3F800000])
    proxy = np.asarray(jax.jit(sign_proxy)(x))
    for op in (np.greater, np.less, np.equal):
        np.testing.assert_array_equal(op(proxy, 0), op(x, 0))
    normal = np.abs(x) >= np.finfo(np.float32).tiny
    assert proxy[normal].tobytes() == x[normal].tobytes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_fold_batchnorm_keeps_subnormal_weights_biases_and_results(dtype):
    """W' and b' with subnormal W, bias, mean, beta, gamma or results: the reference's, where
    XLA alone flushed them to 0 (to a unit of the subnormal spacing: one more rounding)."""
    t = float(np.finfo(dtype).smallest_subnormal)
    rng = np.random.default_rng(0)
    w = (rng.integers(-8, 9, (4, 2, 3)) * t).astype(dtype)
    w[3] = rng.standard_normal((2, 3))  # a normal filter beside the subnormal ones
    bias = np.array([4 * t, 0.0, -2 * t, 1.0], dtype)
    mean = np.array([0.0, 2 * t, 0.0, 0.5], dtype)
    gamma = np.array([1.0, 8 * t, -1.0, 2.0], dtype)
    beta = np.array([3 * t, 0.0, 1e4 * t, -1.0], dtype)
    var = np.ones(4, dtype)
    want = dc.fold_batchnorm(w, bias, gamma, beta, mean, var, eps=0.0)
    for got in (dc.fold_batchnorm(w, bias, gamma, beta, mean, var, eps=0.0, backend="jax"),
                jax.jit(ops.fold_batchnorm)(*map(jnp.asarray, (w, bias, gamma, beta, mean, var)),
                                            0.0)):
        for mine, ref in zip(got, want, strict=True):
            assert np.count_nonzero(np.asarray(mine)) == np.count_nonzero(ref)
            _assert_ulps(mine, ref, dtype, units=2)


def test_dalpha_sums_subnormal_cotangents_at_the_taps_under_jit():
    """dalpha = sum(g * delta): subnormal entries of g at the taps count, also beside a
    large entry of g off the taps (XLA alone gave 0)."""
    t = np.finfo(np.float64).smallest_subnormal
    g = np.full((2, 2, 3), 4 * t)
    g[0, 1, 0] = 1e300  # off the taps
    w = np.random.default_rng(1).standard_normal((2, 2, 3))
    want = dc.dirac_weight_vjp(g, w, np.ones(2), 1.0)[1]
    vjp = jax.jit(lambda g, w: dc.dirac_weight_vjp(g, w, jnp.ones(2), 1.0)[1])
    for got in (dc.dirac_weight_vjp(g, w, np.ones(2), 1.0, backend="jax")[1],
                vjp(jnp.asarray(g), jnp.asarray(w))):
        assert np.asarray(got).tobytes() == want.tobytes() and want[0] == 4 * t
