"""Every VJP against central finite differences in float64: <g, J v> == <J^T g, v>."""

import numpy as np
from core_helpers import FINITE, arrays, conv_case, directional_fd
from hypothesis import assume, given
from hypothesis import strategies as st

import dirac_core as dc

TOL = 1e-6  # central differences with h = 1e-6 on O(1) data: truncation ~1e-10, rounding ~1e-9


def _check(f, args, index, grad, g, v, h=1e-6):
    jv = directional_fd(f, args, index, v, h)
    lhs, rhs = float((g * jv).sum()), float((grad * v).sum())
    assert abs(lhs - rhs) <= TOL * (1 + abs(lhs) + abs(rhs)), (lhs, rhs)


@given(case=conv_case(max_dims=3), data=st.data())
def test_conv_vjp(case, data):
    x, w, bias, kw = case
    y = dc.conv(x, w, bias, **kw)
    g = data.draw(arrays(y.shape))
    dx, dw, db = dc.conv_vjp(g, x, w, bias, **kw)
    assert (db is None) == (bias is None)
    f = lambda x_, w_, b_: dc.conv(x_, w_, b_, **kw)  # noqa: E731
    args = [x, w, bias]
    for index, grad in enumerate((dx, dw, db)):
        if grad is not None:
            # conv is affine in each argument, so a unit step has no truncation error and
            # the rounding error of the difference is not amplified by 1/h.
            _check(f, args, index, grad, g, data.draw(arrays(args[index].shape)), h=1.0)


@st.composite
def filters(draw):
    o = draw(st.integers(1, 4))
    shape = (o, draw(st.integers(1, 3)), *[draw(st.integers(1, 3))] * draw(st.integers(0, 2)))
    w = draw(arrays(shape))
    norms = np.sqrt((w.reshape(o, -1) ** 2).sum(axis=1))
    assume(np.all(norms > 1e-3))  # away from the clamp, where the map is not differentiable
    return w


def _step(w):
    """A difference step relative to the smallest filter: normalize is scale-invariant, so its
    curvature grows as 1/||v||^2 and a fixed step would truncate badly on small filters."""
    return 1e-6 * min(1.0, float(np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1)).min()))


@given(w=filters(), data=st.data())
def test_normalize_vjp(w, data):
    g, v = data.draw(arrays(w.shape)), data.draw(arrays(w.shape))
    _check(lambda w_: dc.normalize_filters(w_), [w], 0, dc.normalize_filters_vjp(g, w), g, v,
           h=_step(w))


@given(data=st.data(), eps=st.sampled_from([1e-12, 1e-3, 1.0]), factor=st.floats(0.01, 0.99))
def test_normalize_vjp_below_clamp_is_constant_branch(data, eps, factor):
    """Below the clamp normalize(v) = v / eps, a linear map: its VJP is g / eps."""
    w = data.draw(arrays((2, 3), FINITE.filter(lambda v: abs(v) > 1e-3)))
    w = w / np.sqrt((w**2).sum(axis=1, keepdims=True)) * eps * factor  # ||w[o]|| < eps
    g = data.draw(arrays(w.shape))
    np.testing.assert_allclose(dc.normalize_filters_vjp(g, w, eps=eps), g / eps, rtol=1e-15)
    np.testing.assert_allclose(dc.normalize_filters(w, eps=eps), w / eps, rtol=1e-15)


def test_normalize_at_exactly_eps_takes_the_norm_branch():
    """||v|| == eps belongs to the norm branch (clamp-min): the tangent of v itself is 0."""
    np.testing.assert_array_equal(dc.normalize_filters_vjp(np.array([[1.0]]),
                                                           np.array([[1e-12]]), eps=1e-12), 0.0)


@given(w=filters(), data=st.data(), normalize=st.booleans(),
       per_channel=st.booleans(), policy=st.sampled_from(["tile", "min"]),
       groups=st.sampled_from([1, 2, 3]))
def test_dirac_weight_vjp(w, data, normalize, per_channel, policy, groups):
    w = np.concatenate([w] * groups)  # O divisible by groups
    o = w.shape[0]
    alpha = data.draw(arrays((o,))) if per_channel else np.asarray(data.draw(FINITE))
    beta = data.draw(arrays((o,) if data.draw(st.booleans()) else ()))
    kw = {"normalize": normalize, "policy": policy, "groups": groups}
    g = data.draw(arrays(w.shape))
    grads = dc.dirac_weight_vjp(g, w, alpha, beta, **kw)
    f = lambda w_, a_, b_: dc.dirac_weight(w_, a_, b_, **kw)  # noqa: E731
    args = [w, alpha, beta]
    for index, grad in enumerate(grads):
        assert grad.shape == args[index].shape
        # W_hat is linear in alpha and beta: a unit step is exact for them.
        h = _step(w) if index == 0 else 1.0
        _check(f, args, index, grad, g, data.draw(arrays(args[index].shape)), h=h)


@given(data=st.data(), axis=st.integers(-3, 2))
def test_ncrelu_vjp(data, axis):
    x = data.draw(arrays((2, 3, 2), FINITE.filter(lambda v: abs(v) > 1e-3)))
    y = dc.ncrelu(x, axis=axis)
    g = data.draw(arrays(y.shape))
    _check(lambda x_: dc.ncrelu(x_, axis=axis), [x], 0, dc.ncrelu_vjp(g, x, axis=axis), g,
           data.draw(arrays(x.shape)))


def test_ncrelu_gradient_at_zero_is_zero_on_both_halves():
    x = np.array([[0.0, -0.0, 1.0, -1.0]])
    g = np.arange(1.0, 9.0).reshape(1, 8)
    np.testing.assert_array_equal(dc.ncrelu_vjp(g, x), [[0.0, 0.0, 3.0, 8.0]])
