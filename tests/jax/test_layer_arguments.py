"""The Flax layers refuse bad arguments and inputs with the rules, and the words, of the other
doors: the torch layers' init checks, NCReLU's axis and dtype, the convolution's geometry."""

from __future__ import annotations

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import dirac_core as dc
import dirac_torch as dt
from dirac_jax import nn as jnn


def _outcome(build):
    """``("ok", alpha, beta)`` of a built Dirac layer, or ``(error type, message)``."""
    try:
        layer = build()
    except (TypeError, ValueError) as error:
        return type(error), str(error)
    return "ok", *(np.asarray(jnp.asarray(s) if not isinstance(s, torch.Tensor)
                              else s.detach().numpy()) for s in (layer.alpha[...],
                                                                 layer.beta[...]))


INITS = {
    "nan alpha": {"alpha_init": float("nan")},
    "nan beta": {"beta_init": float("nan")},
    "inf alpha": {"alpha_init": float("inf")},
    "1e40 in float32": {"alpha_init": 1e40},
    "int beyond float64": {"alpha_init": 10**400},
    "list with an int beyond float64": {"beta_init": [1.0, 2.0, -(10**400), 1.0],
                                        "per_channel": True},
    "negative beta": {"beta_init": -2.0},
    "int learnable": {"learnable": 1},
    "bool alpha": {"alpha_init": True},
    "NumPy vector, no per_channel": {"alpha_init": np.ones(4)},
    "torch vector, no per_channel": {"alpha_init": torch.ones(4)},
    "list vector": {"alpha_init": [1.0, 2.0, 3.0, 4.0], "per_channel": True},
    "tuple beta vector": {"beta_init": (0.5,) * 4, "per_channel": "beta"},
    "alpha vector under per_channel='beta'": {"alpha_init": [1.0] * 4, "per_channel": "beta"},
    "wrong length": {"alpha_init": np.ones(3), "per_channel": True},
    "integer array": {"alpha_init": np.ones(4, int), "per_channel": True},
    "strings": {"alpha_init": ["a"] * 4, "per_channel": True},
    "scalar per channel": {"beta_init": 0.25, "per_channel": True},
}


@pytest.mark.parametrize("kwargs", INITS.values(), ids=INITS)
def test_dirac_layers_accept_and_refuse_the_same_initial_values(kwargs):
    theirs = _outcome(lambda: dt.DiracConv2d(4, 4, 3, **kwargs))
    ours = _outcome(lambda: jnn.DiracConv(4, 4, 3, **kwargs, rngs=nnx.Rngs(0)))
    assert ours[0] == theirs[0]
    if ours[0] != "ok":
        assert ours[1] == theirs[1]
        assert ("alpha_init" in ours[1]) or ("beta_init" in ours[1]) or ("learnable" in ours[1])
        assert "0000000000" not in ours[1]  # a huge int by its magnitude, not its digits
        return
    for mine, other in zip(ours[1:], theirs[1:], strict=True):
        assert mine.dtype == np.float32 and mine.shape == other.shape
        np.testing.assert_array_equal(mine, other)


def test_large_initial_scales_are_fine_in_float64():
    layer = jnn.DiracConv(2, 2, 1, alpha_init=1e40, dtype=jnp.float64, rngs=nnx.Rngs(0))
    assert float(layer.alpha[...]) == 1e40


@pytest.mark.parametrize("channels, error, match", [
    ((4, -4), ValueError, "out_channels must be a positive int, got -4"),
    ((4, 0), ValueError, "out_channels must be a positive int, got 0"),
    ((0, 4), ValueError, "in_channels must be a positive int, got 0"),
    ((4, 4.0), TypeError, "out_channels must be a positive int, got float: 4.0"),
    ((True, 4), TypeError, "in_channels must be a positive int, got bool: True"),
])
@pytest.mark.parametrize("layer", [jnn.Conv, jnn.DiracConv])
def test_channel_counts_are_positive_ints(layer, channels, error, match):
    with pytest.raises(error, match=match):
        layer(*channels, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        layer(4, 4, 3, groups=3, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("layer", [jnn.Conv, jnn.DiracConv])
def test_an_input_too_small_for_the_kernel_is_refused_as_by_conv(layer):
    x, w = np.ones((1, 4, 2, 2), np.float32), np.ones((4, 4, 3, 3), np.float32)
    with pytest.raises(ValueError) as expected:
        dc.conv(x, w)
    assert "too small for kernel (3, 3)" in str(expected.value)
    with pytest.raises(ValueError) as got:
        layer(4, 4, 3, padding=0, rngs=nnx.Rngs(0))(jnp.asarray(x))
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("dtype, match", [
    ("float16", "x has dtype float16 but the layer's parameters have dtype float32; cast x"),
    ("float64", "x has dtype float64 but the layer's parameters have dtype float32"),
    ("int64", "x has dtype int64 but the layer's parameters have dtype float32; cast x to "
              r"float32 \(a floating dtype is needed\)"),
])
@pytest.mark.parametrize("layer", [jnn.Conv, jnn.DiracConv])
def test_an_input_in_another_dtype_than_the_parameters_is_refused(layer, dtype, match):
    conv = layer(4, 4, 3, padding=1, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=match):
        conv(jnp.ones((1, 4, 3, 3), dtype))


def test_ncrelu_layer_checks_its_axis_as_the_function_does():
    x = jnp.ones((2, 3, 4), jnp.float32)
    for axis in (5, -4):
        with pytest.raises(ValueError) as expected:
            dc.ncrelu(x, axis=axis)
        with pytest.raises(ValueError) as got:
            jnn.NCReLU(axis)(x)
        assert str(got.value) == str(expected.value) == (
            f"axis={axis} is out of range for an array of 3 dims")
    for axis in (True, 1.0, "1"):
        with pytest.raises(TypeError, match="axis must be an int"):
            jnn.NCReLU(axis)
    assert jnn.NCReLU(np.int64(-1))(x).shape == (2, 3, 8)


NCRELU_LAYERS = {
    "torch": lambda a: dt.NCReLU()(torch.from_numpy(a)),
    "jax": lambda a: jnn.NCReLU()(jnp.asarray(a)),
}


@pytest.mark.parametrize("dtype", ["int64", "bool"])
@pytest.mark.parametrize("door", NCRELU_LAYERS.values(), ids=NCRELU_LAYERS)
def test_ncrelu_layers_refuse_non_floating_inputs_as_the_functions_do(door, dtype):
    x = np.array([[-1, 2]]).astype(dtype)
    with pytest.raises(TypeError) as expected:
        dc.ncrelu(x)
    with pytest.raises(TypeError) as got:
        door(x)
    assert str(got.value) == str(expected.value)
    assert "x must have a floating dtype" in str(got.value) and dtype in str(got.value)


@pytest.mark.parametrize("dtype", [jnp.int32, "int64", jnp.bool_, "foo"])
@pytest.mark.parametrize("layer", [jnn.Conv, jnn.DiracConv])
def test_parameters_are_made_in_a_floating_dtype(layer, dtype):
    with pytest.raises(TypeError, match=r"dtype must be a floating dtype \('float64'"):
        layer(2, 2, 3, dtype=dtype, rngs=nnx.Rngs(0))
    built = layer(2, 2, 1, dtype="bfloat16", rngs=nnx.Rngs(0))
    assert built.weight[...].dtype == jnp.bfloat16


def test_an_unnormalized_dirac_conv_starts_he_initialised_in_both_frameworks():
    """W_hat = alpha delta + beta W: W is a residual branch's weight, He-initialised (std
    sqrt(2 / fan_in)) by torch's layer; the Flax layer drew N(0, 0.1**2), and torch ignored an
    init_std given for it. Both now follow validation.dirac_init_std."""
    fan_in = 64 * 9
    jax_w = np.asarray(jnn.DiracConv(64, 64, 3, normalize=False, rngs=nnx.Rngs(0)).weight[...])
    torch_w = dt.DiracConv2d(64, 64, 3, normalize=False).parametrizations.weight.original
    for w in (jax_w, torch_w.detach().numpy()):
        assert abs(w.std() / np.sqrt(2 / fan_in) - 1) < 0.05
    normalized = jnn.DiracConv(64, 64, 3, rngs=nnx.Rngs(0)).weight[...]
    assert abs(np.asarray(normalized).std() - 0.1) < 0.005
    for build in (lambda: jnn.DiracConv(4, 4, 3, normalize=False, init_std=0.5, rngs=nnx.Rngs(0)),
                  lambda: dt.DiracConv2d(4, 4, 3, normalize=False, init_std=0.5)):
        with pytest.raises(ValueError, match=r"init_std=0\.5 sets the normalized W's scale"):
            build()


def test_float64_layers_without_64_bit_mode_are_refused_not_built_in_float32():
    code = ("import jax.numpy as jnp\nfrom flax import nnx\nfrom dirac_jax.nn import DiracConv\n"
            "try:\n    DiracConv(4, 4, 3, dtype=jnp.float64, rngs=nnx.Rngs(0))\n"
            "except TypeError as e:\n    print(e)\n")
    env = {**os.environ, "JAX_ENABLE_X64": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "parameters in float64 need JAX's 64-bit mode, which is off" in out


@pytest.mark.parametrize("args,error", [((0, 1), ValueError), ((2, 2, 5), ValueError),
                                        ((2.0, 2), TypeError), ((3, 2, -1), ValueError)])
def test_max_pooling_arguments_follow_the_torch_rule(args, error):
    with pytest.raises(error, match=r"kernel_size|padding"):
        jnn.MaxPool(*args)
    with pytest.raises(error, match=r"kernel_size|padding"):
        dc.validation.pool_geometry(*(args + (0,) * (3 - len(args))))


def test_dtype_none_is_the_default_float32_as_in_torch():
    """It built float32 before the dtype checks, then was refused; torch's layers take None."""
    conv = jnn.DiracConv(4, 4, 3, dtype=None, rngs=nnx.Rngs(0))
    assert conv.weight[...].dtype == jnp.float32 and conv.alpha[...].dtype == jnp.float32


@pytest.mark.parametrize("shape,match", [
    ((1, 4, 1, 1), r"x of spatial shape \(1, 1\) is too small for kernel \(2, 2\).*output "
                   r"would be \(0, 0\)"),
    ((1, 4, 3, 1), r"x of spatial shape \(3, 1\) is too small.*output would be \(1, 0\)"),
    ((4, 4), r"x must have at least 3 dims \(MaxPool takes \(N, C, \*spatial\)\), got shape "
             r"\(4, 4\)"),
], ids=["1x1", "3x1", "no spatial dim"])
def test_max_pooling_refuses_an_input_it_cannot_pool(shape, match):
    """As torch's MaxPool2d refuses them; it returned an empty map (whose mean is NaN), or the
    input unpooled when it had no spatial dim."""
    with pytest.raises(ValueError, match=match):
        jnn.MaxPool(2, 2)(jnp.ones(shape, jnp.float32))
    assert jnn.MaxPool(2, 2, 1)(jnp.ones((1, 4, 1, 1), jnp.float32)).shape == (1, 4, 1, 1)


@pytest.mark.parametrize("shape,match", [
    ((1, 4, 0, 3), r"x has shape \(1, 4, 0, 3\), an empty map; GlobalAvgPool needs at least "
                   r"one position"),
    ((2, 4), r"x must have at least 3 dims \(GlobalAvgPool takes \(N, C, \*spatial\)\)"),
], ids=["empty map", "no spatial dim"])
def test_global_average_pooling_refuses_an_input_with_no_map(shape, match):
    """The mean of no positions was NaN; an (N, C) input came back as it was."""
    with pytest.raises(ValueError, match=match):
        jnn.GlobalAvgPool()(jnp.ones(shape, jnp.float32))
    assert jnn.GlobalAvgPool()(jnp.ones((0, 4, 2, 2), jnp.float32)).shape == (0, 4)


@pytest.mark.parametrize("rngs", [0, "key"], ids=["int", "key"])
@pytest.mark.parametrize("build", [
    lambda rngs: jnn.Conv(4, 4, 3, rngs=rngs),
    lambda rngs: jnn.DiracConv(4, 4, 3, rngs=rngs),
    lambda rngs: jnn.BatchNorm(4, rngs=rngs),
    lambda rngs: jnn.DiracNet(dc.nets.diracnet_cifar(10, in_channels=1, image_size=8),
                              rngs=rngs),
    lambda rngs: jnn.create_model("diracnet10_025_cifar", rngs=rngs),
], ids=["Conv", "DiracConv", "BatchNorm", "DiracNet", "create_model"])
def test_rngs_must_be_an_nnx_rngs(build, rngs):
    """A seed or a bare key failed with an AttributeError deep in the first draw."""
    import jax

    given = jax.random.key(0) if rngs == "key" else rngs
    with pytest.raises(TypeError, match=r"rngs must be an nnx\.Rngs \(nnx\.Rngs\(0\), say\), "
                       f"got {type(given).__name__}"):
        build(given)
