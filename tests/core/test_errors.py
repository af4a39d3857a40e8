"""Bad calls fail loudly: the right exception, and a message naming the offending argument."""

import re

import numpy as np
import pytest

import dirac_core as dc

X = np.zeros((1, 4, 5, 5))
W = np.zeros((4, 4, 3, 3))
V = np.zeros(4)

def _bfloat16(shape):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return np.ones(shape, dtype=ml_dtypes.bfloat16)


BAD_CALLS = [
    # (call, exception, word the message must contain)
    (lambda: dc.dirac_tensor((4,)), ValueError, "shape"),
    (lambda: dc.dirac_tensor(4), TypeError, "shape"),
    (lambda: dc.dirac_tensor((4, 0, 3)), ValueError, "shape"),
    (lambda: dc.dirac_tensor((4, 2.5, 3)), TypeError, "shape"),
    (lambda: dc.dirac_tensor((4, 4, 3), groups=3), ValueError, "groups"),
    (lambda: dc.dirac_tensor((4, 4, 3), groups=0), ValueError, "groups"),
    (lambda: dc.dirac_tensor((4, 4, 3), policy="ceil"), ValueError, "policy"),
    (lambda: dc.dirac_tensor((4, 4, 3), dtype="int32"), TypeError, "dtype"),
    (lambda: dc.dirac_tensor((4, 4, 3), backend="nope"), ValueError, "backend"),
    (lambda: dc.dirac_tensor((4, 4, 3), backend=3), TypeError, "backend"),
    (lambda: dc.normalize_filters(np.zeros(3)), ValueError, "w"),
    (lambda: dc.normalize_filters(np.zeros((2, 2), dtype=int)), TypeError, "w"),
    (lambda: dc.normalize_filters(W, eps=0.0), ValueError, "eps"),
    (lambda: dc.normalize_filters(W, eps="1e-12"), TypeError, "eps"),
    (lambda: dc.normalize_filters([[1.0]]), TypeError, "w"),
    (lambda: dc.normalize_filters_vjp(np.zeros((4, 4, 3)), W), ValueError, "g"),
    (lambda: dc.dirac_weight(W, np.zeros(3), 1.0), ValueError, "alpha"),
    (lambda: dc.dirac_weight(W, 1.0, np.zeros((4, 1))), ValueError, "beta"),
    (lambda: dc.dirac_weight(W, True, 1.0), TypeError, "alpha"),
    (lambda: dc.dirac_weight(W, 1.0, 1.0, normalize="yes"), TypeError, "normalize"),
    (lambda: dc.dirac_weight(W, 1.0, 1.0, groups=3), ValueError, "groups"),
    (lambda: dc.dirac_weight_vjp(np.zeros((4, 4, 3, 3), np.float32), W, 1.0, 1.0), TypeError, "g"),
    (lambda: dc.ncrelu(X, axis=4), ValueError, "axis"),
    (lambda: dc.ncrelu(X, axis=1.0), TypeError, "axis"),
    (lambda: dc.ncrelu_vjp(X, X), ValueError, "g"),
    (lambda: dc.conv(X, W, padding="same", stride=2), ValueError, "padding"),
    (lambda: dc.conv(X, W, padding="full"), ValueError, "padding"),
    (lambda: dc.conv(X, W, padding=-1), ValueError, "padding"),
    (lambda: dc.conv(X, W, padding=(1, 1, 1)), ValueError, "padding"),
    (lambda: dc.conv(X, W, padding=((1, 1, 1), (0, 0))), ValueError, "padding"),
    (lambda: dc.conv(X, W, stride=0), ValueError, "stride"),
    (lambda: dc.conv(X, W, stride=(1, 1, 1)), ValueError, "stride"),
    (lambda: dc.conv(X, W, dilation=1.5), TypeError, "dilation"),
    (lambda: dc.conv(X, np.zeros((4, 3, 3, 3))), ValueError, "channels"),
    (lambda: dc.conv(X, W, groups=3), ValueError, "groups"),
    (lambda: dc.conv(X[0], W), ValueError, "x"),
    (lambda: dc.conv(X, W.astype(np.float32)), TypeError, "w"),
    (lambda: dc.conv(X, W, np.zeros(3)), ValueError, "bias"),
    (lambda: dc.conv(np.zeros((1, 4, 2, 2)), W), ValueError, "too small"),
    (lambda: dc.conv_vjp(np.zeros((1, 4, 5, 5)), X, W), ValueError, "g"),
    (lambda: dc.conv(X, W, backend="numpy:nonexistent"), ValueError, "backend"),
    (lambda: dc.fold_batchnorm(W, None, V, V, V, np.zeros(3)), ValueError, "var"),
    (lambda: dc.fold_batchnorm(W, None, V, V, V, -np.ones(4)), ValueError, "var"),
    (lambda: dc.fold_batchnorm(W, np.zeros(2), V, V, V, V), ValueError, "bias"),
    (lambda: dc.fold_batchnorm(W, None, V.astype(np.float32), V, V, V), TypeError, "gamma"),
    (lambda: dc.fold_batchnorm(W, None, V, V, V, V, eps=-1.0), ValueError, "eps"),
    (lambda: dc.fold_batchnorm(W, None, V, V, V, np.full(4, -1e-6)), ValueError, "var"),
    (lambda: dc.fold_batchnorm(W, None, V + np.nan, V, V, V), ValueError, "gamma"),
    (lambda: dc.normalize_filters(np.zeros((0, 3))), ValueError, "w"),
    (lambda: dc.dirac_weight(np.ones((0, 3, 3)), 1.0, 1.0), ValueError, "w"),
    (lambda: dc.conv(X, np.ones((4, 4, 0, 3))), ValueError, "w"),
    (lambda: dc.fold_batchnorm(np.ones((2, 0, 3)), None, *[np.ones(2)] * 4), ValueError,
     "weight has shape (2, 0, 3); every dim must be >= 1"),
    (lambda: dc.dirac_tensor((3, 3), dtype="bfloat16"), TypeError, "dtype"),
    # Every op refuses an array in a dtype its backend does not declare (bfloat16 here).
    (lambda: dc.ncrelu(_bfloat16((2, 3))), TypeError, "x has dtype bfloat16, which backend"),
    (lambda: dc.normalize_filters(_bfloat16((2, 3))), TypeError, "w has dtype bfloat16, which"),
    (lambda: dc.ncrelu_vjp(_bfloat16((2, 6)), _bfloat16((2, 3))), TypeError,
     "g has dtype bfloat16, which backend 'numpy' does not support"),
    (lambda: dc.dirac_weight(W, 1.0, 1.0, normalize=1), TypeError, "normalize"),
    # A non-real scalar is named with what is accepted (it said "alpha must be an array").
    (lambda: dc.dirac_weight(W, 2 + 0j, 1.0), TypeError, "alpha must be a real scalar or an array"),
    (lambda: dc.dirac_weight(W, 1.0, [1.0] * 4), TypeError,
     "beta must be a real scalar or an array"),
    (lambda: dc.conv(X, W, groups=1.0), TypeError, "groups"),
    # s = gamma / sqrt(var + eps) = 1e41 overflows float32: refused, not inf (and b' = NaN)
    # here and finite in torch's float64 arithmetic.
    (lambda: dc.fold_batchnorm(np.ones((1, 1), np.float32), None,
                               *(np.array([v], np.float32) for v in (1e38, 0.0, 0.0, 1e-6)),
                               eps=0.0), ValueError, "gamma / sqrt(var + eps) overflows float32"),
    # Lengths past int64 indexing are refused here, as torch and XLA fail on them inside.
    (lambda: dc.conv(X, W, stride=2**70), ValueError, "stride=1180591620717411303424"),
    (lambda: dc.conv(X, W, padding="same", dilation=2**62), ValueError, "kernel's span"),
    (lambda: dc.conv(X, W, padding=((0, 0), (2**62, 0))), ValueError, "padding"),
]


@pytest.mark.parametrize("call,exc,word", BAD_CALLS, ids=range(len(BAD_CALLS)))
def test_bad_call_is_named(call, exc, word):
    with pytest.raises(exc) as info:
        call()
    # A whole word: "g" must name the argument, not match inside "along".
    assert re.search(rf"\b{re.escape(word)}\b", str(info.value)), str(info.value)


def test_there_are_at_least_25_distinct_bad_calls():
    assert len(BAD_CALLS) >= 25


HUGE = 10**400  # an int beyond float64: float() raises OverflowError


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize(("call", "match"), [
    (lambda b: dc.dirac_weight(np.ones((2, 3)), HUGE, 1.0, backend=b),
     r"alpha=1\.000e\+400 \(an int\) does not fit the working dtype float64"),
    (lambda b: dc.dirac_weight(np.ones((2, 3), np.float32), 1.0, -HUGE, backend=b),
     r"beta=-1\.000e\+400 \(an int\) does not fit the working dtype float32"),
    (lambda b: dc.dirac_weight_vjp(np.ones((2, 3)), np.ones((2, 3)), 1.0, HUGE, backend=b),
     r"beta=1\.000e\+400 \(an int\) does not fit"),
    (lambda b: dc.normalize_filters(np.ones((2, 3)), eps=HUGE, backend=b),
     r"eps=1\.000e\+400 \(an int\) is beyond float64's range"),
    (lambda b: dc.dirac_weight(np.ones((2, 3)), 1.0, 1.0, eps=HUGE, backend=b),
     r"eps=1\.000e\+400 \(an int\) is beyond float64's range"),
    (lambda b: dc.fold_batchnorm(np.ones((2, 3)), None, *[np.ones(2)] * 4, eps=HUGE, backend=b),
     r"eps=1\.000e\+400 \(an int\) is beyond float64's range"),
], ids=["alpha", "beta float32", "vjp beta", "normalize eps", "weight eps", "fold eps"])
def test_an_int_beyond_float64_is_a_named_value_error(backend, call, match):
    """Not a bare OverflowError from float(): the scale and eps rules name it, abbreviated."""
    if backend != "numpy":
        pytest.importorskip(backend)
    with pytest.raises(ValueError, match=match):
        call(backend)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("shape", [(2**31, 2**31, 4), (2**29, 2**29, 2), (2**59, 1)])
def test_a_dirac_tensor_past_int64_bytes_is_refused_by_shape(backend, shape):
    """Its float64 bytes reach 2**62: refused before any backend sees it (XLA aborted the
    interpreter on (2**31, 2**31, 4); NumPy and torch raised their own errors)."""
    if backend != "numpy":
        pytest.importorskip(backend)
    with pytest.raises(ValueError, match=r"shape=\(.*\) has 2\*\*\d+ elements; .* fewer than "
                                         r"2\*\*59 elements"):
        dc.dirac_tensor(shape, backend=backend)


def test_the_shape_rule_stops_at_2_to_the_59_elements():
    from dirac_core.validation import check_shape
    assert check_shape((2**59 - 1, 1)) == (2**59 - 1, 1)  # checked, nothing allocated
    with pytest.raises(ValueError, match=r"weight_shape=\(1, 576460752303423488\) has 2\*\*59"):
        check_shape((1, 2**59), "weight_shape")
