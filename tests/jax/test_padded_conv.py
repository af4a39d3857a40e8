"""The jax backend's padded convolution path (``dirac_jax.padded_conv``) gives the values of
the geometry's own program: exactly where the arithmetic is exact, within rounding elsewhere,
and hands non-finite inputs, steady geometries and tracers to the geometry's own program."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dirac_core as dc
from dirac_conformance import strategies as s
from dirac_jax import backend, ops, padded_conv

DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
          "bfloat16": ml_dtypes.bfloat16}
FUZZ = settings(max_examples=8, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
geometries = st.one_of(s.conv_geometry(), s.tile_conv_geometry())


def _case(geo, seed, values, dtype):
    """x, w, bias, g (NumPy, float64 values exact in ``dtype``) and the keyword arguments."""
    rng = np.random.default_rng(seed)
    draw = (lambda shape: rng.integers(-3, 4, shape).astype(np.float64)) if values == "integers" \
        else rng.standard_normal
    x, w, bias = draw(geo["x_shape"]), draw(geo["w_shape"]), draw(geo["w_shape"][:1])
    g = draw(s.conv_output(geo["x_shape"], geo["w_shape"], geo["kwargs"]))
    return [a.astype(DTYPES[dtype]) for a in (x, w, bias, g)], geo["kwargs"]


def _jax_results(x, w, bias, g, kwargs):
    arrays = [jnp.asarray(a) for a in (x, w, bias, g)]
    y = dc.conv(*arrays[:3], **kwargs)
    grads = dc.conv_vjp(arrays[3], *arrays[:3], **kwargs)
    return [np.asarray(a) for a in (y, *grads)]


@pytest.fixture(autouse=True)
def _fresh_counts(monkeypatch):
    monkeypatch.setattr(padded_conv, "_SEEN", padded_conv.collections.Counter())


def _spy(monkeypatch):
    """The shapes of ``x`` that reach the jitted convolution, call by call (padded or not)."""
    shapes = []
    real = ops.conv_jit

    def spy(x, *args):
        shapes.append(tuple(x.shape))
        return real(x, *args)

    monkeypatch.setattr(ops, "conv_jit", spy)
    monkeypatch.setattr(backend, "_conv", spy)
    return shapes


@FUZZ
@given(geometries, st.sampled_from(list(DTYPES)), st.integers(0, 2**32 - 1))
def test_padded_path_is_exact_where_the_arithmetic_is(geo, dtype, seed):
    # Small integers: every product and partial sum is exact in the working dtype, so any
    # order of the sums gives the exact result, rounded once to the dtype.
    (x, w, bias, g), kwargs = _case(geo, seed, "integers", dtype)
    got = _jax_results(x, w, bias, g, kwargs)
    ref = [dc.conv(*(a.astype(np.float64) for a in (x, w, bias)), **kwargs),
           *dc.conv_vjp(*(a.astype(np.float64) for a in (g, x, w, bias)), **kwargs)]
    for name, a, b in zip(("y", "dx", "dw", "dbias"), got, ref, strict=True):
        assert a.dtype == np.dtype(DTYPES[dtype]), name
        np.testing.assert_array_equal(a.astype(np.float64), b.astype(DTYPES[dtype]), name)


@FUZZ
@given(geometries, st.sampled_from(("float64", "float32")), st.integers(0, 2**32 - 1))
def test_padded_path_is_within_rounding_of_the_reference(geo, dtype, seed):
    # Only the order of the sums may differ from the geometry's own program: each result is
    # within (terms + 1) * u * (the same sums of absolute values) of the float64 reference.
    (x, w, bias, g), kwargs = _case(geo, seed, "normal", dtype)
    got = _jax_results(x, w, bias, g, kwargs)
    wide = [a.astype(np.float64) for a in (x, w, bias, g)]
    ref = [dc.conv(*wide[:3], **kwargs), *dc.conv_vjp(wide[3], *wide[:3], **kwargs)]
    absolute = [np.abs(a) for a in wide]
    mag = [dc.conv(*absolute[:3], **kwargs), *dc.conv_vjp(absolute[3], *absolute[:3], **kwargs)]
    terms = max(x.size, w.size, g.size) + 1
    u = np.finfo(DTYPES[dtype]).eps
    for name, a, b, m in zip(("y", "dx", "dw", "dbias"), got, ref, mag, strict=True):
        assert np.all(np.abs(a - b) <= terms * u * m), name


def test_padded_path_serves_many_geometries_with_one_program(monkeypatch):
    shapes = _spy(monkeypatch)
    x = np.arange(100.0).reshape(1, 4, 5, 5) % 7
    w = np.arange(72.0).reshape(4, 2, 3, 3) % 5
    for kwargs in [{"padding": 1}, {"stride": 2}, {"padding": "same"}, {"dilation": 2},
                   {"padding": ((2, 0), (0, 1))}, {"groups": 2}]:
        args = (x, w[:, :2] if "groups" in kwargs else np.concatenate([w, w], 1))
        got = dc.conv(*(jnp.asarray(a, jnp.float32) for a in args), **kwargs)
        np.testing.assert_array_equal(np.asarray(got), dc.conv(*args, **kwargs))
    assert set(shapes) == {(2, 8, 8, 8)}


def test_half_precision_shares_the_float32_program(monkeypatch):
    seen = []
    real = ops.conv_jit
    monkeypatch.setattr(ops, "conv_jit", lambda x, *a: seen.append(x.dtype) or real(x, *a))
    x = np.arange(40.0).reshape(1, 2, 4, 5) % 5 - 2
    w = np.arange(12.0).reshape(3, 2, 2, 1) % 3 - 1
    for dtype in ("float32", "float16", "bfloat16"):
        got = dc.conv(jnp.asarray(x, dtype), jnp.asarray(w, dtype), stride=(1, 2))
        assert got.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(got, np.float64), dc.conv(x, w, stride=(1, 2)))
    assert seen == [jnp.dtype("float32")] * 3


def test_non_finite_input_takes_the_own_program(monkeypatch):
    shapes = _spy(monkeypatch)
    x = np.ones((1, 2, 5), np.float32)
    x[0, 0, 4] = np.inf  # read by no output at stride 2 with a kernel of 2
    y = dc.conv(jnp.asarray(x), jnp.ones((1, 2, 2), jnp.float32), stride=2)
    assert shapes == [(1, 2, 5)]
    np.testing.assert_array_equal(np.asarray(y), [[[4.0, 4.0]]])


def test_a_steady_geometry_gets_its_own_program(monkeypatch):
    shapes = _spy(monkeypatch)
    x, w = jnp.ones((1, 3, 6), jnp.float64), jnp.ones((2, 3, 3), jnp.float64)
    for _ in range(padded_conv.OWN_PROGRAM_AFTER + 2):
        np.testing.assert_array_equal(np.asarray(dc.conv(x, w)), np.full((1, 2, 4), 9.0))
    assert shapes.count((1, 3, 6)) == 2
    assert len(shapes) == padded_conv.OWN_PROGRAM_AFTER + 2


def test_traced_and_large_calls_take_the_own_program(monkeypatch):
    shapes = _spy(monkeypatch)
    w = jnp.ones((2, 3, 3), jnp.float32)
    traced = jax.jit(lambda a: dc.conv(a, w))(jnp.ones((1, 3, 6), jnp.float32))
    big = dc.conv(jnp.ones((1, 3, 40000), jnp.float32), w)
    np.testing.assert_array_equal(np.asarray(traced), np.full((1, 2, 4), 9.0))
    assert big.shape == (1, 2, 39998)
    assert shapes == [(1, 3, 6), (1, 3, 40000)]


def test_plan_shapes():
    plan = padded_conv.Plan((3, 4, 9), (6, 2, 3), (2,), ((1, 0),), (2,), 2)
    # 1-d as 2-d; batch 3 -> 4, channels 4 -> 8, 6 -> 8; taps spread to 5 -> kernel 8, and
    # the length 10 + 3 -> 16 so that all 6 stride-1 outputs exist.
    assert plan.x_padded == (4, 8, 8, 16)
    assert plan.w_padded == (8, 8, 4, 8)
    assert plan.out == (1, 3)
    w = np.arange(36.0).reshape(6, 2, 3)
    dense = plan.filters(w)
    assert dense[4, 2:4, 0, 0:5:2].tolist() == w[4].tolist()  # group 1 reads channels 2, 3
    assert np.count_nonzero(dense) == np.count_nonzero(w)
    np.testing.assert_array_equal(plan.filter_gradient(dense), w)
