"""The parameterization alpha * delta + beta * normalize(W) and its variants."""

import numpy as np
import pytest
from core_helpers import FINITE, arrays
from hypothesis import given
from hypothesis import strategies as st

import dirac_core as dc


@st.composite
def weight_case(draw):
    o, i = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
    w = draw(arrays((o, i, *kernel)))
    per = draw(st.booleans())
    alpha = draw(arrays((o,))) if per else draw(FINITE)
    beta = draw(arrays((o,))) if draw(st.booleans()) else draw(FINITE)
    return w, alpha, beta


def _col(v, ndim):
    v = np.asarray(v, dtype=np.float64)
    return v.reshape((-1,) + (1,) * (ndim - 1)) if v.ndim else v


@given(case=weight_case(), normalize=st.booleans(), policy=st.sampled_from(["tile", "min"]),
       groups=st.sampled_from([1, 2]))
def test_definition(case, normalize, policy, groups):
    w, alpha, beta = case
    w = np.concatenate([w] * groups)
    alpha, beta = (np.concatenate([s] * groups) if np.ndim(s) else s for s in (alpha, beta))
    delta = dc.dirac_tensor(w.shape, policy=policy, groups=groups)
    direction = dc.normalize_filters(w) if normalize else w
    expected = _col(alpha, w.ndim) * delta + _col(beta, w.ndim) * direction
    got = dc.dirac_weight(w, alpha, beta, normalize=normalize, policy=policy, groups=groups)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-14)


@given(case=weight_case())
def test_eq14_resnet_initialisation(case):
    """alpha = beta = 1 without normalization is delta + W."""
    w, _, _ = case
    np.testing.assert_array_equal(dc.dirac_weight(w, 1.0, 1.0, normalize=False),
                                  dc.dirac_tensor(w.shape) + w)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_result_keeps_weight_dtype_and_is_close(dtype):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 8, 3, 3))
    ref = dc.dirac_weight(w.astype(dtype).astype(np.float64), 5.0, 1e-3)
    got = dc.dirac_weight(w.astype(dtype), 5.0, 1e-3)
    assert got.dtype == np.dtype(dtype)
    tol = {"float32": 1e-6, "float16": 1e-3}[dtype]  # relative to the largest entry, alpha
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=0, atol=tol * 5.0)


def test_vjp_shapes_follow_arguments():
    w = np.ones((2, 3, 3))
    g = np.ones_like(w)
    dw, da, db = dc.dirac_weight_vjp(g, w, 5.0, np.ones(2))
    assert dw.shape == w.shape and da.shape == () and db.shape == (2,)
    dw, da, db = dc.dirac_weight_vjp(g, w, np.ones(2), np.asarray(2.0))
    assert da.shape == (2,) and db.shape == ()
    np.testing.assert_array_equal(da, [2.0, 1.0])  # the tiled ones each filter holds


@given(o=st.integers(1, 5), bad=st.lists(st.integers(1, 6), min_size=1, max_size=3),
       which=st.sampled_from(["alpha", "beta"]))
def test_scale_shapes_other_than_scalar_or_o_are_refused(o, bad, which):
    """Spec: alpha and beta are 0-d or (O,); any other shape is a ValueError naming them."""
    bad = tuple(bad)
    if bad == (o,):
        bad = (o + 1,)
    w = np.ones((o, 2, 3))
    scales = {"alpha": 1.0, "beta": 1.0, which: np.ones(bad)}
    with pytest.raises(ValueError, match=which):
        dc.dirac_weight(w, scales["alpha"], scales["beta"])
    with pytest.raises(ValueError, match=which):
        dc.dirac_weight_vjp(w, w, scales["alpha"], scales["beta"])


@given(o=st.integers(1, 4), kernel=st.integers(1, 3),
       dtype=st.sampled_from(["float64", "float32", "float16"]), per=st.booleans())
def test_gradient_dtypes_follow_their_arguments(o, kernel, dtype, per):
    """dW has W's dtype; dalpha/dbeta their argument's (a float32 scale of a half weight keeps
    a float32 gradient, which half could not hold for a large filter bank)."""
    w = np.ones((o, 3, kernel), dtype=dtype)
    alpha = np.ones(o, np.float32) if per else np.float32(5.0)
    dw, da, db = dc.dirac_weight_vjp(np.full_like(w, 300), w, alpha, np.ones(o, np.float64))
    assert dw.dtype == np.dtype(dtype) and db.dtype == np.float64
    assert da.dtype == (np.float32 if per else (np.float64 if dtype == "float64" else np.float32))
    assert np.isfinite(da).all() and np.isfinite(db).all()


def _zero_sign_backends():
    """The backends on a CPU: the reference, the Array API adapter, torch, JAX and the CPU
    mirror of the CuPy kernels (those whose library is installed)."""
    import importlib.util
    found = ["numpy"] + [name for name, module in (
        ("array_api", "array_api_strict"), ("torch", "torch"), ("jax", "jax"))
        if importlib.util.find_spec(module)]
    if importlib.util.find_spec("dirac_cupy"):
        from dirac_cupy.mirror import MirrorBackend
        found.append(MirrorBackend())
    return found


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("backend", _zero_sign_backends(), ids=str)
def test_signs_of_zero_off_and_at_the_taps(backend, dtype):
    """Spec: off the taps W_hat is beta * normalize(W) itself, its sign of zero included (the
    reference gave +0 + -0 = +0 where every backend adding alpha by index gave -0); at a tap
    alpha + beta * normalize(W), an IEEE sum (0 + -0 = +0); normalize_filters keeps -0."""
    if dtype == "float64" and str(backend) == "jax":
        import jax
        if not jax.config.jax_enable_x64:
            pytest.skip("float64 on JAX needs JAX_ENABLE_X64=1")
    b = dc.get_backend(backend) if isinstance(backend, str) else backend
    if dtype not in b.dtypes:
        pytest.skip(f"{backend} does not declare {dtype}")

    def signs(w, *args, op=dc.dirac_weight, **kwargs):
        out = op(b.from_numpy(np.asarray(w, dtype)), *args, backend=backend, **kwargs)
        return np.signbit(np.asarray(b.to_numpy(out), np.float64)).ravel().tolist()

    negative, zeros = [[[-1.0, -2.0, -3.0]]], np.full((2, 1, 3), -0.0)
    off, at = [True, False, True], [True, False, True] * 2
    assert signs(negative, 1.0, 0.0, normalize=False) == off  # [-0, 1, -0]
    assert signs(negative, 0.0, 0.0) == off  # [-0, +0, -0]: 0 * u, and 0 + -0 at the tap
    assert signs(zeros, np.zeros(2), 1.0) == at
    assert signs(zeros, op=dc.normalize_filters) == [True] * 6
