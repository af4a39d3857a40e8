"""jax.grad, jit and vmap through the public functions agree with the reference VJPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dirac_core as dc
import dirac_jax
from dirac_jax import JaxBackend, eager

RNG = np.random.default_rng(7)

WEIGHT_CASES = [
    # shape, groups, per-channel scales, normalize, policy, zero filter
    ((4, 2, 3, 3), 1, False, True, "tile", False),
    ((6, 3, 2), 2, True, True, "min", True),
    ((3, 5, 2, 1, 3), 3, True, False, "tile", False),
    ((5, 4), 1, False, True, "tile", True),
]


@pytest.mark.parametrize("case", WEIGHT_CASES, ids=str)
@pytest.mark.parametrize("jit", [False, True])
def test_grad_of_dirac_weight_is_the_reference_vjp(case, jit):
    shape, groups, per_channel, normalize, policy, zero = case
    w = RNG.standard_normal(shape)
    if zero:
        w[0] = 0.0  # an all-zero filter: the clamp branch, no NaN
    alpha = RNG.standard_normal(shape[0] if per_channel else ())
    beta = RNG.standard_normal(shape[0] if per_channel else ())
    g = RNG.standard_normal(shape)
    kw = {"groups": groups, "normalize": normalize, "policy": policy}

    def loss(v, a, b):
        return jnp.sum(dc.dirac_weight(v, a, b, **kw) * g)

    grad = jax.grad(loss, argnums=(0, 1, 2))
    grads = (jax.jit(grad) if jit else grad)(*map(jnp.asarray, (w, alpha, beta)))
    expected = dc.dirac_weight_vjp(g, w, alpha, beta, **kw)
    for got, ref in zip(grads, expected, strict=True):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-12, atol=1e-12 * abs(ref).max())


CONV_CASES = [
    # x shape, w shape, bias, stride, padding, dilation, groups
    ((2, 4, 7, 6), (6, 2, 4, 3), True, (1, 1), "same", (2, 1), 2),
    ((1, 3, 9), (3, 1, 2), False, (2,), ((2, 1),), (1,), 3),
    ((2, 2, 4, 5, 3), (4, 2, 2, 3, 1), True, (1, 2, 1), ((0, 1), (1, 0), (0, 0)), (1, 1, 2), 1),
    ((3, 4), (5, 4), True, (), (), (), 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_grad_of_conv_is_the_reference_vjp(case):
    x_shape, w_shape, has_bias, stride, padding, dilation, groups = case
    x, w = RNG.standard_normal(x_shape), RNG.standard_normal(w_shape)
    bias = RNG.standard_normal(w_shape[0]) if has_bias else None
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    y = dc.conv(x, w, bias, **kw)
    g = RNG.standard_normal(y.shape)
    native = [jnp.asarray(a) for a in (x, w, bias) if a is not None]

    def loss(*args):
        return jnp.sum(dc.conv(*args, **kw) * g)

    np.testing.assert_allclose(np.asarray(jax.jit(lambda *a: dc.conv(*a, **kw))(*native)), y,
                               rtol=1e-12, atol=1e-12)
    grads = jax.jit(jax.grad(loss, argnums=tuple(range(len(native)))))(*native)
    expected = [r for r in dc.conv_vjp(g, x, w, bias, **kw) if r is not None]
    for got, ref in zip(grads, expected, strict=True):
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-11, atol=1e-11)


def test_grad_through_a_dirac_layer_composition():
    """ncrelu -> conv with W_hat: the chain of custom rules and JAX's conv transposes."""
    x = RNG.standard_normal((2, 3, 5, 5))
    w, g = RNG.standard_normal((3, 6, 3, 3)), RNG.standard_normal((2, 3, 5, 5))

    def loss(xv, wv, beta):
        kernel = dc.dirac_weight(wv, 1.0, beta)
        return jnp.sum(dc.conv(dc.ncrelu(xv), kernel, padding="same") * g)

    dx, dw, dbeta = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(x), jnp.asarray(w),
                                                       jnp.asarray(0.3))
    kernel = dc.dirac_weight(w, 1.0, 0.3)
    dnc, dkernel, _ = dc.conv_vjp(g, dc.ncrelu(x), kernel, padding="same")
    ref_dw, _, ref_dbeta = dc.dirac_weight_vjp(dkernel, w, 1.0, np.asarray(0.3))
    np.testing.assert_allclose(np.asarray(dx), dc.ncrelu_vjp(dnc, x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(dw), ref_dw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(dbeta), float(ref_dbeta), rtol=1e-12)


@pytest.mark.parametrize("jit", [False, True])
def test_grad_of_the_ncrelu_layer_at_non_finite_input_is_the_reference_vjp(jit):
    """``dirac_jax.nn.NCReLU``: 0 at a NaN and at +-0, ``g+`` at +inf, ``g-`` at -inf."""
    from dirac_jax.nn import NCReLU

    x = RNG.standard_normal((2, 7, 3))
    x[:, :5, 0] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    g = RNG.standard_normal((2, 14, 3))
    layer = NCReLU(axis=1)

    def loss(v):
        return jnp.sum(layer(v) * g)

    dx = (jax.jit(jax.grad(loss)) if jit else jax.grad(loss))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(dx), dc.ncrelu_vjp(g, x))
    assert np.all(np.asarray(dx)[:, [0, 3, 4], 0] == 0)


def test_vmap_over_a_stack_of_weights():
    ws = RNG.standard_normal((3, 4, 2, 3))
    out = jax.vmap(lambda v: dc.dirac_weight(v, 2.0, 0.5))(jnp.asarray(ws))
    for got, w in zip(out, ws, strict=True):
        np.testing.assert_allclose(np.asarray(got), dc.dirac_weight(w, 2.0, 0.5), rtol=1e-14)


def test_public_functions_infer_the_jax_backend():
    x = jnp.asarray(RNG.standard_normal((1, 2, 4)))
    y = dc.ncrelu(x)
    assert isinstance(y, jax.Array)
    assert dc.infer_backend(x).name == "jax"
    np.testing.assert_array_equal(np.asarray(y), dc.ncrelu(np.asarray(x)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_inputs_accumulate_in_float32(dtype):
    """A sum that is exact in float32 but not in half: 2048 + 1 + ... must not lose the ones."""
    x = jnp.concatenate([jnp.full((1, 1, 1), 256.0), jnp.ones((1, 1, 8))], axis=2).astype(dtype)
    w = jnp.ones((1, 1, 9), dtype)
    y = dc.conv(x, w)  # 256 + 8 ones: 264 is exact in float16 only if summed in float32
    assert y.dtype == jnp.dtype(dtype)
    assert float(y[0, 0, 0]) == float(jnp.asarray(264.0, dtype))


def test_the_padded_eager_path_equals_the_traced_one():
    """Small concrete inputs are padded to power-of-two rows; results must not depend on it."""
    backend = JaxBackend()
    kw = {"eps": 1e-3, "normalize": True, "groups": 1, "policy": "tile"}
    traced_vjp = jax.jit(lambda *a: backend.dirac_weight_vjp(*a, **kw))
    for shape in [(3, 5, 3), (9, 1), (2, 3, 2, 2, 2)]:
        w = jnp.asarray(RNG.standard_normal(shape))
        g = jnp.asarray(RNG.standard_normal(shape))
        alpha, beta = jnp.asarray(0.7), jnp.asarray(RNG.standard_normal(shape[0]))
        assert eager.applies(w, alpha, beta)
        padded = backend.dirac_weight_vjp(g, w, alpha, beta, **kw)
        traced = traced_vjp(g, w, alpha, beta)
        # Equal up to rounding (XLA may fuse the two shapes' sums differently), relative to
        # the size of the terms: |g| * |beta| / ||w[o]|| for dw.
        norms = jnp.sqrt(jnp.sum(w.reshape(shape[0], -1) ** 2, axis=1))
        terms = float(jnp.max(jnp.abs(g)) * jnp.max(jnp.abs(beta)) / jnp.min(norms))
        for a, b in zip(padded, traced, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13,
                                       atol=1e-14 * max(terms, 1.0))


@pytest.mark.parametrize("shape", [(2, 3, 4), (0, 3, 2), (5,), (2, 1, 3, 4), (3, 0), (9, 17, 2)])
def test_the_padded_eager_ncrelu_is_exact_on_every_axis(shape):
    """The eager NCReLU runs on a (before, C, after) view of x: every rank and axis, forward
    and VJP, must give the reference's values exactly (zeros of both signs included)."""
    x = RNG.standard_normal(shape)
    x.reshape(-1)[::3] = 0.0
    x.reshape(-1)[1::7] = -0.0
    for axis in range(-len(shape), len(shape)):
        assert eager.applies(jnp.asarray(x))
        y = dc.ncrelu(jnp.asarray(x), axis=axis)
        np.testing.assert_array_equal(np.asarray(y), dc.ncrelu(x, axis=axis))
        g = RNG.standard_normal(y.shape)
        dx = dc.ncrelu_vjp(jnp.asarray(g), jnp.asarray(x), axis=axis)
        np.testing.assert_array_equal(np.asarray(dx), dc.ncrelu_vjp(g, x, axis=axis))


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("size", [1, 20000], ids=["padded", "jitted"])
def test_ncrelu_zero_signs_are_the_references(dtype, size):
    """Bit for bit, the sign of zero included: XLA's minimum(-0.0, 0) is -0.0, the spec's
    negative half of -0.0 is +0.0; the VJP keeps a -0.0 of g where x is non-zero."""
    x = np.tile(np.array([[-0.0, 0.0, 1.0, -1.0, np.nan]], dtype), (1, size))
    g = np.tile(np.array([[-0.0, -0.0, -0.0, 1.0, -0.0]], dtype), (1, 2 * size))
    y, dx = dc.ncrelu(jnp.asarray(x)), dc.ncrelu_vjp(jnp.asarray(g), jnp.asarray(x))
    (grad,) = jax.vjp(lambda v: dirac_jax.ncrelu(v), jnp.asarray(x))[1](jnp.asarray(g))
    for got, ref in ((y, dc.ncrelu(x)), (dx, dc.ncrelu_vjp(g, x)), (grad, dc.ncrelu_vjp(g, x))):
        np.testing.assert_array_equal(np.asarray(got), ref)
        np.testing.assert_array_equal(np.signbit(np.asarray(got)), np.signbit(ref))
    assert not np.signbit(np.asarray(y)).reshape(2, -1)[1, 0]  # the negative half of -0.0


def test_float64_data_needs_64_bit_mode():
    with jax.enable_x64(False):
        assert "float64" not in JaxBackend().dtypes
        with pytest.raises(TypeError, match="JAX_ENABLE_X64"):
            JaxBackend().from_numpy(np.zeros(2))
