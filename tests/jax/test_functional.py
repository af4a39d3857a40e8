"""``dirac_jax``'s public functions check their arguments, in the words of every backend."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import dirac_core as dc
import dirac_jax
import dirac_torch

W = np.random.default_rng(0).standard_normal((4, 2, 3, 3))
X = np.random.default_rng(1).standard_normal((2, 4, 5, 5))

# (function name, positional arguments as NumPy arrays, bad keyword arguments)
BAD = [
    ("dirac_weight", (W, 1.0, 1.0), {"eps": -1.0}),
    ("dirac_weight", (W, 1.0, 1.0), {"eps": float("nan")}),
    ("dirac_weight", (W, 1.0, 1.0), {"groups": 3}),
    ("dirac_weight", (W, 1.0, 1.0), {"policy": "diagonal"}),
    ("dirac_weight", (W, np.ones(3), 1.0), {}),
    ("normalize_filters", (W,), {"eps": 0.0}),
    ("conv", (X, W), {"groups": 2, "stride": 0}),
    ("conv", (X, W), {"groups": 2, "padding": "same", "stride": 2}),
    ("conv", (X, W), {"groups": 3}),
    ("dirac_tensor", ((4, 2, 3),), {"policy": "diagonal"}),
]


def _error(call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("name, args, bad", BAD)
def test_bad_arguments_raise_what_the_reference_raises(name, args, bad):
    expected = _error(lambda: getattr(dc, name)(*args, **bad))
    as_jax = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    assert _error(lambda: getattr(dirac_jax, name)(*as_jax, **bad)) == expected
    as_torch = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
    assert _error(lambda: getattr(dirac_torch, name)(*as_torch, **bad)) == expected


def test_ncrelu_checks_its_axis_under_the_jax_name():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        dirac_jax.ncrelu(x, axis=2)
    assert dirac_jax.ncrelu(x, axis=0).shape == (4, 3)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bfloat16_numpy_scalar_scales_go_with_jax_weights(dtype):
    # ml_dtypes' bfloat16 scalar is a NumPy scalar (no numbers.Real): a number, like float16's.
    bfloat16 = pytest.importorskip("ml_dtypes").bfloat16
    w = jnp.asarray(W, dtype)
    expected = np.asarray(dc.dirac_weight(w, np.float16(2), np.float16(0.5)))
    for door in (dc.dirac_weight, dirac_jax.dirac_weight):
        got = door(w, bfloat16(2), bfloat16(0.5))
        assert isinstance(got, jax.Array) and got.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(got), expected)


# Every op with (input, weight, per-channel vector, conv cotangent, NCReLU cotangent, var).
OPS = {
    "conv": lambda x, w, v, gc, gn, var: dc.conv(x, w, backend="jax"),
    "conv_vjp": lambda x, w, v, gc, gn, var: dc.conv_vjp(gc, x, w, v, backend="jax"),
    "normalize_filters": lambda x, w, v, gc, gn, var: dc.normalize_filters(w, backend="jax"),
    "normalize_filters_vjp":
        lambda x, w, v, gc, gn, var: dc.normalize_filters_vjp(w, w, backend="jax"),
    "dirac_weight": lambda x, w, v, gc, gn, var: dc.dirac_weight(w, v, v, backend="jax"),
    "dirac_weight_vjp":
        lambda x, w, v, gc, gn, var: dc.dirac_weight_vjp(w, w, v, v, backend="jax"),
    "ncrelu": lambda x, w, v, gc, gn, var: dc.ncrelu(x, backend="jax"),
    "ncrelu_vjp": lambda x, w, v, gc, gn, var: dc.ncrelu_vjp(gn, x, backend="jax"),
    "fold_batchnorm":
        lambda x, w, v, gc, gn, var: dc.fold_batchnorm(w, v, v, v, v, var, backend="jax"),
}


@pytest.mark.parametrize("op", OPS)
def test_torch_bfloat16_inputs_keep_their_dtype_on_jax(op):
    # torch hands bfloat16 to NumPy as float32; the conversion must not widen the result.
    bfloat16 = pytest.importorskip("ml_dtypes").bfloat16
    rng = np.random.default_rng(2)
    shapes = [(2, 4, 5, 5), (4, 4, 3, 3), (4,), (2, 4, 3, 3), (2, 8, 5, 5), (4,)]
    host = [rng.standard_normal(s).astype(bfloat16) for s in shapes]
    host[-1] = np.abs(host[-1])  # var
    from_torch = OPS[op](*(torch.from_numpy(h.astype(np.float32)).to(torch.bfloat16)
                           for h in host))
    from_jax = OPS[op](*map(jnp.asarray, host))
    pairs = zip(*(r if isinstance(r, tuple) else (r,) for r in (from_torch, from_jax)),
                strict=True)
    for got, want in pairs:
        assert isinstance(got, jax.Array) and got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_checked_functions_jit_and_differentiate():
    w = jnp.asarray(W)

    def loss(v, a, b):
        return jnp.sum(dirac_jax.dirac_weight(v, a, b) ** 2)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(w, 2.0, 0.5)
    _, dalpha, dbeta = dc.dirac_weight_vjp(2 * np.asarray(dc.dirac_weight(W, 2.0, 0.5)), W,
                                           np.float64(2.0), np.float64(0.5))
    np.testing.assert_allclose(float(grads[1]), float(dalpha), rtol=1e-12)
    np.testing.assert_allclose(float(grads[2]), float(dbeta), rtol=1e-12)
    y = jax.jit(lambda x: dirac_jax.conv(x, w, padding="same", groups=2))(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(y), dc.conv(X, W, padding="same", groups=2),
                               rtol=1e-12, atol=1e-12)


def test_the_kernels_are_not_the_public_names():
    from dirac_jax import ops

    for name in ("conv", "dirac_tensor", "dirac_weight", "ncrelu", "normalize_filters",
                 "fold_batchnorm"):
        assert getattr(dirac_jax, name) is not getattr(ops, name)
        assert getattr(dirac_jax, name).__module__ == "dirac_jax.functional"


V = np.random.default_rng(3).uniform(0.5, 2.0, 4)
# (function name, its arguments as NumPy arrays, the one given as another library's array).
FOREIGN = [
    ("normalize_filters", (W,), 0),
    ("dirac_weight", (W, 1.0, 1.0), 0),
    ("dirac_weight", (W, V, 1.0), 1),
    ("dirac_weight", (W, 1.0, V), 2),
    ("ncrelu", (X,), 0),
    ("conv", (X, np.repeat(W, 2, axis=1)), 0),
    ("conv", (X, np.repeat(W, 2, axis=1)), 1),
    ("conv", (X, np.repeat(W, 2, axis=1), V), 2),
    ("fold_batchnorm", (W, V, V, V, V, V), 0),
    ("fold_batchnorm", (W, V, V, V, V, V), 5),
]
NAMES = {"normalize_filters": ("w",), "dirac_weight": ("w", "alpha", "beta"), "ncrelu": ("x",),
         "conv": ("x", "w", "bias"),
         "fold_batchnorm": ("weight", "bias", "gamma", "beta", "mean", "var")}


@pytest.mark.parametrize("foreign", ["numpy", "torch"])
@pytest.mark.parametrize("name, args, which", FOREIGN)
def test_arrays_of_other_libraries_are_refused_as_dirac_torch_refuses_them(name, args, which,
                                                                           foreign):
    given = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    other = args[which] if foreign == "numpy" else torch.tensor(args[which], requires_grad=True)
    given[which] = other
    scale = name == "dirac_weight" and which > 0
    accepted = "a jax.Array or a Python/NumPy scalar" if scale else "a jax.Array"
    kind = "numpy.ndarray" if foreign == "numpy" else "torch.Tensor"
    with pytest.raises(TypeError, match=f"^{NAMES[name][which]} must be {accepted}, got {kind}"):
        getattr(dirac_jax, name)(*given)
    # dirac_core converts on purpose when told the backend.
    assert isinstance(getattr(dc, name)(*given, backend="jax"), jax.Array | tuple)


def test_scalar_scales_stay_accepted():
    w = jnp.asarray(W)
    expected = np.asarray(dirac_jax.dirac_weight(w, jnp.asarray(2.0), jnp.asarray(0.5)))
    for alpha, beta in ((2.0, 0.5), (2, np.float32(0.5)), (np.int64(2), np.float64(0.5))):
        np.testing.assert_array_equal(np.asarray(dirac_jax.dirac_weight(w, alpha, beta)),
                                      expected)
