"""The fused kernels' maths (dirac_cupy.fused_math) against the reference, under NumPy.

The CUDA kernels compute exactly these index formulas and floating-point steps, so this is
where their formulation is checked on machines without a GPU (float64, tight tolerances).
"""

import numpy as np
import pytest
from cupy_cases import EPS, assert_rows_close, gradient_scale, weight_cases
from cupy_cases import ncrelu_cases as ncrelu_inputs
from hypothesis import given
from hypothesis import strategies as st

import dirac_core as dc
from dirac_cupy import fused_math as fm


@given(case=weight_cases())
def test_weight_forward_matches_reference(case):
    expected = dc.dirac_weight(case.w, case.alpha, case.beta, **case.args)
    got = fm.weight_forward(case.w, case.alpha, case.beta, **case.args)
    assert got.dtype == case.w.dtype
    assert_rows_close(got, expected)
    assert np.all(np.isfinite(got))


@given(case=weight_cases(), seed=st.integers(0, 2**32 - 1))
def test_weight_backward_matches_reference(case, seed):
    g = np.random.default_rng(seed).normal(size=case.w.shape)
    dw_ref, da_ref, db_ref = dc.dirac_weight_vjp(g, case.w, case.alpha, case.beta, **case.args)
    dw, da_part, db_part = fm.weight_backward(g, case.w, case.beta, **case.args)
    assert_rows_close(dw, dw_ref, scale=gradient_scale(g, case))
    for part, like, ref in ((da_part, case.alpha, da_ref), (db_part, case.beta, db_ref)):
        got = fm.reduce_part(part, like).astype(case.w.dtype)
        assert got.shape == like.shape
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10 * np.abs(g).sum())


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@given(data=st.data())
def test_half_and_single_accumulate_like_the_reference(dtype, data):
    case = data.draw(weight_cases(dtype))
    alpha, beta = case.alpha.astype(dtype), case.beta.astype(dtype)
    expected = dc.dirac_weight(case.w, alpha, beta, **case.args)
    got = fm.weight_forward(case.w, alpha, beta, **case.args)
    assert got.dtype == np.dtype(dtype)
    assert_rows_close(got, expected, dtype)


def test_zero_filter_gives_zero_direction_and_gradient():
    w = np.zeros((2, 3, 3))
    out = fm.weight_forward(
        w, np.asarray(0.0), np.asarray(1.0), eps=EPS, normalize=True, groups=1, policy="tile"
    )
    assert np.array_equal(out, np.zeros_like(w))
    dw, _, db = fm.weight_backward(
        np.ones_like(w), w, np.asarray(2.0), eps=EPS, normalize=True, groups=1, policy="tile"
    )
    # Below the clamp: dW = beta * g / eps; <g, u> = 0 for a zero filter.
    np.testing.assert_array_equal(dw, np.full_like(w, 2.0 / EPS))
    assert np.array_equal(db, np.zeros(2))


@given(case=ncrelu_inputs())
def test_ncrelu_scatter_matches_reference(case):
    x, axis = case
    np.testing.assert_array_equal(fm.ncrelu_forward(x, axis=axis), dc.ncrelu(x, axis=axis))


@given(case=ncrelu_inputs(), seed=st.integers(0, 2**32 - 1))
def test_ncrelu_gather_matches_reference(case, seed):
    x, axis = case
    shape = list(x.shape)
    shape[axis] *= 2
    g = np.random.default_rng(seed).normal(size=shape)
    np.testing.assert_array_equal(
        fm.ncrelu_backward(g, x, axis=axis), dc.ncrelu_vjp(g, x, axis=axis)
    )


def test_ncrelu_nan_reaches_both_halves_and_blocks_the_gradient():
    x = np.array([[np.nan, 0.0, -2.0]])
    y = fm.ncrelu_forward(x, axis=0)
    assert np.isnan(y[0, 0]) and np.isnan(y[1, 0])
    np.testing.assert_array_equal(y[:, 1:], [[0.0, 0.0], [0.0, -2.0]])
    dx = fm.ncrelu_backward(np.ones((2, 3)), x, axis=0)
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 1.0]])


def _block_reduce_by_threads(terms: list[float]) -> float:
    """``block_reduce<false>`` of dirac_kernels.cu, thread by thread, in Python floats."""
    local = [0.0] * fm.BLOCK
    for t in range(fm.BLOCK):
        for j in range(t, len(terms), fm.BLOCK):
            local[t] += terms[j]
    width = fm.BLOCK // 2
    while width:
        for t in range(width):
            local[t] = local[t] + local[t + width]
        width //= 2
    return local[0]


@given(length=st.integers(0, 700), seed=st.integers(0, 2**32 - 1))
def test_block_sum_is_the_kernels_reduction_bit_for_bit(length, seed):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(2, length)) * 10.0 ** rng.integers(-8, 9, size=(2, length))
    got = fm.block_sum(rows, fm.Arithmetic())
    assert got.shape == (2, 1)
    for row, total in zip(rows, got[:, 0], strict=True):
        assert total == _block_reduce_by_threads(row.tolist())  # bit for bit


@given(length=st.integers(0, 900), parts=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_split_sum_is_the_split_kernels_reduction_bit_for_bit(length, parts, seed):
    """A filter cut into parts: each block reduces its chunk, the next stage the parts."""
    rng = np.random.default_rng(seed)
    row = rng.normal(size=length) * 10.0 ** rng.integers(-8, 9, size=length)
    chunk = -(-length // parts) if length else 0
    sums = [_block_reduce_by_threads(row[p * chunk:(p + 1) * chunk].tolist())
            for p in range(parts)]
    expected = sums[0] if parts == 1 else _block_reduce_by_threads(sums)
    assert fm.split_sum(row.reshape(1, -1), parts, fm.Arithmetic())[0, 0] == expected


def test_the_mirror_sums_in_the_kernels_order_not_numpys():
    """Where the order matters, the mirror's gradient parts follow the kernels' tree."""
    g = np.array([[1e16, 1.0, -1e16, 1.0]])
    w = np.ones_like(g)
    _, _, dbeta = fm.weight_backward(g, w, np.asarray(1.0), eps=EPS, normalize=False,
                                     groups=1, policy="tile")
    assert dbeta[0] == 2.0 and np.sum(g * w) == 1.0  # exact sum 2; NumPy's order gives 1
    assert fm.reduce_part(np.array([1e16, 1.0, -1e16, 1.0]), np.asarray(0.0)) == 2.0
