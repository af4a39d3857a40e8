"""The suite has teeth: it passes the reference and fails every faulty backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, settings

import dirac_core as dc
from dirac_conformance.checks import CHECKS
from dirac_conformance.meta import Kill, hunt, kill_rate
from dirac_conformance.mutants import (
    FAULT_CLASSES,
    MUTANTS,
    AliasedPureWeight,
    AliasedWeightGrad,
    AvailableNone,
    AvailableRaises,
    BlockTailNorm,
    CachedDirection,
    CachedWeight,
    Conv1x1StrideDropped,
    ConvFlushSubnormal32,
    ConvGridRows,
    ConvVjpNanZeroed,
    DepthwiseTileDropped,
    DiracConvReturnsInput,
    EmptyBatchRefused,
    EpsNotClamped,
    FlushedNcrelu,
    FmaxNcrelu,
    HalfAccumulationConv,
    HalfAccumulationNorm,
    HalfBiasAddedLate,
    HalfFold,
    HalfSaturatingConv,
    HalfWeightRoundedTwice,
    HangingNcrelu,
    LastTileDropped,
    LongKernelLastTap,
    MaskMultiplyNcrelu,
    Mutant,
    NanDroppingMax,
    NanGradientZeroed,
    NcreluBlockIndex16,
    NcreluGridRows,
    NcreluVjpInPlace,
    NcreluVjpMaskedSum,
    NormalizeInPlace,
    PackedRowsConv,
    PromotedScaleGradients,
    RawPointerNorm,
    RawPointerScales,
    RescaledConv,
    ReusedOutputBuffer,
    SharedDelta,
    TieToClamp,
    ZeroWeightsSkipped,
)
from dirac_conformance.runner import profile_settings, run_check, run_suite
from dirac_conformance.target import Target


def test_every_protocol_op_and_both_identities_are_checked() -> None:
    assert set(CHECKS) == {*dc.OPS, "identity_eq1", "identity_eq11", "conv_subnormal",
                           "state_input",
                           "state_result", "state_arguments"}


def test_there_are_at_least_twelve_distinct_mutants() -> None:
    assert len(MUTANTS) >= 12
    assert len({m.__name__ for m in MUTANTS}) == len(MUTANTS)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.__name__)
def test_each_mutant_overrides_exactly_one_op(mutant: type[Mutant]) -> None:
    own = mutant.__mro__[:mutant.__mro__.index(Mutant)]  # itself and its private bases
    overridden = [name for name in (*dc.OPS, "available") if any(name in vars(c) for c in own)]
    assert len(overridden) == 1, overridden
    assert mutant.first in CHECKS or (mutant.first == "load" and overridden == ["available"])


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.__name__)
def test_suite_kills_mutant(mutant: type[Mutant], hunted: Callable[[Any], Kill]) -> None:
    kill = hunted(mutant)
    assert kill.killed_by, f"{mutant.__name__} survived: {kill.bug}"
    assert mutant.fault in FAULT_CLASSES


def test_every_fault_class_has_a_mutant() -> None:
    assert {m.fault for m in MUTANTS} == set(FAULT_CLASSES)


@pytest.mark.parametrize(
    ("mutant", "killed_by", "message"),
    [
        (NormalizeInPlace, "normalize_filters/float64", "modified its argument 'w' in place"),
        (NcreluVjpInPlace, "ncrelu_vjp/float64", "modified its argument 'g' in place"),
        (TieToClamp, "normalize_filters_vjp/", "dw"),
        (EpsNotClamped, "normalize_filters/float", "u"),
        (EmptyBatchRefused, "conv/float64", "need at least one array"),
        (HalfAccumulationConv, "conv/float16", "y"),
        (HalfAccumulationNorm, "normalize_filters/float16", "u"),
        (HalfFold, "fold_batchnorm/float16", "weight"),
        (RescaledConv, "identity_eq1/float64", "exact op"),
        (RawPointerNorm, "normalize_filters/", "u"),
        (RawPointerScales, "dirac_weight/", "w_hat"),
        (LastTileDropped, "conv/", "y"),
        (BlockTailNorm, "normalize_filters/", "u"),
        (CachedWeight, "state_input/", "second call, after writing new values into"),
        (CachedDirection, "state_arguments/", "second call, on the same w"),
        (SharedDelta, "state_result/", "delta"),
        (AliasedPureWeight, "state_input/", "w_hat"),
        (AliasedWeightGrad, "state_result/", "a result must not share memory with an argument"),
        (PackedRowsConv, "conv/", "y"),
        (DepthwiseTileDropped, "conv/", "y"),
        (LongKernelLastTap, "conv/", "y"),
        (ReusedOutputBuffer, "state_input/", "first call's result, read after the second call"),
        (PromotedScaleGradients, "dirac_weight_vjp/", "result has dtype float64, expected"),
        (NanDroppingMax, "normalize_filters/", "expected nan"),
        (FmaxNcrelu, "ncrelu/", "expected nan"),
        (MaskMultiplyNcrelu, "ncrelu/float64", "got -0.0, expected 0.0; exact op"),
        (FlushedNcrelu, "ncrelu/float64", "exact op"),
        (NanGradientZeroed, "normalize_filters_vjp/", "dw"),
        (ZeroWeightsSkipped, "conv/", "expected nan"),
        (HalfWeightRoundedTwice, "dirac_weight/float16", "w_hat"),
        (HalfBiasAddedLate, "conv/float16", "y"),
        (AvailableRaises, "load", "available() raised"),
        (AvailableNone, "load", "available() returned None"),
        (HangingNcrelu, "ncrelu/", "no result within the deadline"),
        (Conv1x1StrideDropped, "conv/float64", "y (float64)"),
        (DiracConvReturnsInput, "identity_eq1/float64",
         "writing NaN into the result of conv changed its argument 'x'"),
        (NcreluVjpMaskedSum, "ncrelu_vjp/float64", "got 0.0, expected -0.0; exact op"),
        (NcreluBlockIndex16, "ncrelu/float32", "y (float32)"),
        (NcreluGridRows, "ncrelu/float64", "y (float64)"),
        (ConvGridRows, "conv/float64", "y (float64)"),
        (HalfSaturatingConv, "conv/float16", "beyond float16's range, so the result must be inf"),
        (ConvVjpNanZeroed, "conv_vjp/float64", "expected nan"),
        (ConvFlushSubnormal32, "conv_subnormal/float32", "conv: y (float32)"),
    ],
)
def test_new_fault_classes_are_caught_by_their_check(mutant: type[Mutant], killed_by: str,
                                                     message: str,
                                                     hunted: Callable[[Any], Kill]) -> None:
    kill = hunted(mutant)
    assert kill.killed_by.startswith(killed_by) and message in kill.message, kill


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("mutant", [HalfAccumulationConv, HalfAccumulationNorm])
def test_half_accumulation_fails_by_a_wide_margin(mutant: type[Mutant], dtype: str) -> None:
    """Not a near miss: the error is at least 100 times the tolerance, or not finite, on the
    drawn long sums (without the boundary examples, which run first and stop the search at a
    shorter sum: 1031 terms fail by less)."""
    drawn = settings(profile_settings("meta"), phases=[Phase.generate])
    result = run_check(Target(mutant(), None, mutant.__name__), CHECKS[mutant.first],
                       dtype, drawn)
    assert result.status == "fail" and result.worst > 100, result


@pytest.mark.parametrize("mutant", [HalfWeightRoundedTwice, HalfBiasAddedLate])
def test_rounding_twice_fails_by_a_clear_factor(mutant: type[Mutant]) -> None:
    """A second rounding in half precision is not a near miss: more than 5 times the
    tolerance (docs/conformance.md reports the factor per op)."""
    result = run_check(Target(mutant(), None, mutant.__name__), CHECKS[mutant.first],
                       "float16", profile_settings("meta"))
    assert result.status == "fail" and result.worst > 5, result


def test_a_float32_flush_is_caught_only_by_the_subnormal_check() -> None:
    """The other convolution checks draw no subnormal inputs (a backend that flushes them,
    JAX on a CPU, lists conv_subnormal alone as a known failure): they pass the flushing
    mutant, and conv_subnormal fails it in float32 alone, its forward and its eq. 1 identity
    both."""
    target = Target(ConvFlushSubnormal32(), None, "flush")
    quick = profile_settings("meta")
    for name in ("conv", "conv_vjp", "identity_eq1", "identity_eq11"):
        assert run_check(target, CHECKS[name], "float32", quick).status == "pass", name
    for dtype in ("float64", "float16"):
        assert run_check(target, CHECKS["conv_subnormal"], dtype, quick).status == "pass"
    result = run_check(target, CHECKS["conv_subnormal"], "float32", quick)
    assert result.status == "fail" and "conv: y (float32)" in result.message, result
    low_x = next(c for c in CHECKS["conv_subnormal"].examples("float32")
                 if "subnormal" in c.operands["x"].origin)
    identity = CHECKS["conv_subnormal"].evaluate(target, low_x)[-1]
    assert identity.name == "identity_eq1: conv(x, delta)"
    assert not np.array_equal(identity.got, identity.ref)


def test_identities_are_checked_bit_for_bit() -> None:
    """RescaledConv is within the conv tolerance but conv(x, delta) != x: only the exact
    identity check catches it."""
    target = Target(RescaledConv(), None, "rescaled")
    quick = profile_settings("meta")
    assert run_check(target, CHECKS["conv"], "float64", quick).status == "pass"
    assert run_check(target, CHECKS["identity_eq1"], "float64", quick).status == "fail"


def test_reference_passes_every_check_and_dtype(reference, quick) -> None:
    from dirac_conformance import runner

    results = [
        runner.run_check(reference, check, dtype, quick)
        for check in CHECKS.values()
        for dtype in reference.dtypes
    ]
    failures = [(r.op, r.dtype, r.message) for r in results if r.status != "pass"]
    assert not failures
    assert all(r.examples == 8 + len(CHECKS[r.op].examples(r.dtype)) for r in results)


def test_kill_rate_counts_survivors() -> None:
    from dirac_conformance.meta import Kill

    kills = [Kill("a", "", "conv/float64"), Kill("b", "", "")]
    assert kill_rate(kills) == 0.5
    assert kill_rate([]) == 0.0


def test_run_suite_covers_each_op_and_declared_dtype(reference) -> None:
    results = run_suite(reference, "ci", ops=["ncrelu", "dirac_tensor"])
    assert [(r.op, r.dtype) for r in results] == [
        (op, dtype) for op in ("dirac_tensor", "ncrelu") for dtype in reference.dtypes
    ]
    expected = profile_settings("ci").max_examples
    assert all(r.status == "pass" and r.examples == expected + len(CHECKS[r.op].examples(r.dtype))
               for r in results)


def test_results_must_be_the_backends_own_arrays(quick) -> None:
    from dirac_conformance.runner import run_check
    from dirac_conformance.target import Target
    from dirac_core.reference import NumpyBackend

    class ListBackend(NumpyBackend):
        """Returns Python lists from ncrelu: not arrays the backend owns."""

        def ncrelu(self, x, *, axis):
            return super().ncrelu(x, axis=axis).tolist()

    target = Target(ListBackend(), None, "lists")
    result = run_check(target, CHECKS["ncrelu"], "float64", quick)
    assert result.status == "fail" and "not the backend's array" in result.message


def test_a_mutant_whose_dtypes_raise_is_killed_at_loading() -> None:
    """A property that queries a driver and raises is a crash: killed, not an error of the run."""

    def dtypes(self: object) -> tuple[str, ...]:
        raise RuntimeError("driver error")

    broken = type("DtypesRaise", (Mutant,), {"dtypes": property(dtypes)})
    kill = hunt(broken)
    assert kill.killed_by == "load" and "RuntimeError('driver error')" in kill.message, kill
