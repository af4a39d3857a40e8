"""The tolerance model: what it accepts and what it rejects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dirac_conformance.dtypes import huge, round_to, tiny
from dirac_conformance.tolerance import (
    RTOL,
    Mismatch,
    Output,
    bound,
    check_outputs,
    interval,
    relative_error,
)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_error_just_inside_tolerance_passes_and_just_outside_fails(dtype: str) -> None:
    ref = np.array([1.0, -2.0, 4.0])
    mag = np.abs(ref)
    inside = ref + 0.9 * RTOL[dtype] * mag * 2  # terms=4: sqrt(4) = 2
    outside = ref + 1.1 * RTOL[dtype] * mag * 2
    assert check_outputs([Output("y", inside, ref, mag, terms=4)], dtype) <= 1
    with pytest.raises(Mismatch, match=r"y \(" + dtype) as exc:
        check_outputs([Output("y", outside, ref, mag, terms=4)], dtype)
    assert exc.value.error == pytest.approx(1.1, rel=1e-3)


@pytest.mark.parametrize(("dtype", "unit"), [("float16", 2.0**-11), ("bfloat16", 2.0**-8)])
def test_half_results_may_be_rounded_once_but_not_accumulated_in_half(dtype: str,
                                                                      unit: float) -> None:
    # A sum of 4096 ones: float32 accumulation gives 4096 exactly; rounding it once to the
    # dtype is fine, half of an ulp is fine, a sequential half sum (stuck at 2048 for float16,
    # 256 for bfloat16) is far out.
    ref, mag, n = np.array([4096.0 * (1 + 2**-12)]), np.array([4096.0 * (1 + 2**-12)]), 4096
    once = round_to(ref, dtype)
    assert check_outputs([Output("y", once, ref, mag, terms=n)], dtype) <= 1
    stuck = np.array([2048.0 if dtype == "float16" else 256.0])
    with pytest.raises(Mismatch) as exc:
        check_outputs([Output("y", stuck, ref, mag, terms=n)], dtype)
    assert exc.value.error > 100
    # One unit in the last place off a representable result is out: that is a second rounding.
    small = np.array([1.0])
    with pytest.raises(Mismatch, match="tolerance 0"):
        check_outputs([Output("y", small * (1 + 2 * unit), small, np.array([2.0]))], dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("seed", range(5))
def test_rounded_once_always_passes_and_rounded_twice_fails_far_outside(dtype: str,
                                                                       seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(2000)
    mag, n = np.abs(ref) + 1, 9
    a = RTOL["float32"] * 3 * mag
    near = ref + rng.uniform(-1, 1, ref.shape) * a  # any float32-accurate value
    once = round_to(near, dtype)
    assert check_outputs([Output("y", once, ref, mag, terms=n)], dtype) <= 1
    # an intermediate rounded to the dtype, scaled by 3 and rounded again
    twice = round_to(round_to(ref / 3, dtype) * 3, dtype)
    with pytest.raises(Mismatch) as exc:
        check_outputs([Output("y", twice, ref, mag, terms=n)], dtype)
    assert exc.value.error > 20 and exc.value.output == "y"


def test_the_interval_is_the_rounding_of_the_float32_error_band() -> None:
    lo, hi = interval(np.array([1.0, 0.0]), np.array([1.0, 0.0]), 1, "float16")
    np.testing.assert_array_equal(lo, [1.0, 0.0])  # 1 -+ 2e-6 both round to 1 in float16
    np.testing.assert_array_equal(hi, [1.0, 0.0])
    assert bound(np.array(1.0), np.array(1.0), 4, "float32") == pytest.approx(4e-6)


def test_error_is_relative_to_the_condition_magnitude_not_the_result() -> None:
    # A sum that cancels to ~0: an absolute error of 1e-14 on terms of size 1 is fine.
    ref, mag = np.array([1e-17]), np.array([2.0])
    assert relative_error(Output("y", ref + 1e-14, ref, mag), "float64") < 1


def test_nan_where_reference_is_finite_is_a_mismatch() -> None:
    with pytest.raises(Mismatch, match=r"y \(float\d+\) at \[1\]: got nan, expected "):
        relative_error(Output("y", np.array([1.0, np.nan]), np.ones(2), np.ones(2)), "float32")


def test_overflow_beyond_dtype_range_must_be_the_signed_infinity() -> None:
    ref = np.array([1e6, -1e6])  # beyond float16's 65504
    good = np.array([np.inf, -np.inf])
    assert relative_error(Output("dw", good, ref, np.abs(ref)), "float16") == 0.0
    bad = np.array([np.inf, np.inf])
    assert relative_error(Output("dw", bad, ref, np.abs(ref)), "float16") == math.inf


def test_an_overflowing_partial_sum_may_give_inf_when_the_magnitudes_pass_the_range() -> None:
    """A float32 total of 3e38 whose terms' magnitudes sum to 5e38: a sum in float32 may pass
    float32's largest number on the way (the order decides). With magnitudes within the range
    an infinity is still a failure."""
    ref, got = np.array([3e38, 3e38]), np.array([np.inf, -np.inf])
    assert relative_error(Output("dbeta", got, ref, np.array([5e38, 5e38])), "float32") == 0.0
    with pytest.raises(Mismatch, match="finite in float32"):
        relative_error(Output("dbeta", got, ref, np.array([3e38, 3e38])), "float32")


def test_a_saturated_overflow_is_reported_as_such() -> None:
    """65504 where the reference, 65552, rounds to inf in float16: the message says so (not a
    tolerance of -inf)."""
    ref = np.array([65552.0])
    with pytest.raises(Mismatch) as caught:
        check_outputs([Output("y", np.array([65504.0]), ref, ref)], "float16")
    assert str(caught.value) == ("y (float16), worst at [0]: got 65504.0, expected 65552.0, "
                                 "beyond float16's range, so the result must be inf")


def test_exact_outputs_need_equal_values() -> None:
    ref = np.array([0.0, 1.0])
    assert relative_error(Output("delta", np.array([-0.0, 1.0]), ref), "float64") == 0.0
    with pytest.raises(Mismatch, match="exact op"):
        check_outputs([Output("delta", np.array([0.0, 1.0 + 2**-52]), ref)], "float64")


def test_shape_and_none_mismatches_are_reported() -> None:
    with pytest.raises(Mismatch, match=r"got shape \(2,\), expected \(\)"):
        relative_error(Output("dalpha", np.ones(2), np.array(1.0), np.ones(())), "float64")
    with pytest.raises(Mismatch, match="got None, expected an array"):
        relative_error(Output("dbias", None, np.ones(2)), "float64")
    assert relative_error(Output("dbias", None, None), "float64") == 0.0


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("dtype", sorted(RTOL))
def test_special_magnitudes_are_representable_and_hit_overflow_or_underflow(dtype: str) -> None:
    big, small = round_to(np.array(huge(dtype)), dtype), round_to(np.array(tiny(dtype)), dtype)
    assert np.isfinite(big) and big > 0 and small > 0
    assert math.isinf(float(round_to(big * big, dtype)))
    assert float(round_to(small * small, dtype)) == 0.0
