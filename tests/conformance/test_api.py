"""The programmatic API: run_suite / run_check on names, objects and files, with results."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

from dirac_conformance import CHECKS, Check, Report, Result, run_check, run_suite
from dirac_conformance.meta import hunt
from dirac_conformance.mutants import NcreluGradAtZero, NormalizeInPlace
from dirac_core.reference import NumpyBackend

FEW = settings(max_examples=5, derandomize=True, database=None, deadline=None)


def test_run_suite_on_a_name_selects_ops_and_dtypes() -> None:
    report = run_suite("numpy", ops=["ncrelu", "dirac_tensor"], dtypes=["float32"],
                       settings=FEW)
    assert isinstance(report, Report) and report.ok and not report.failures
    assert [(r.op, r.dtype, r.status, r.examples) for r in report] == [
        ("dirac_tensor", "float32", "pass", 5), ("ncrelu", "float32", "pass", 5)]
    assert "err/tol" in report.table() and report.as_dict()["ok"] is True


def test_run_suite_on_an_object_with_fail_fast() -> None:
    report = run_suite(NcreluGradAtZero(), ops=["ncrelu_vjp", "conv_vjp"], fail_fast=True,
                       settings=FEW)
    assert len(report) == 1 and not report.ok
    (failure,) = report.failures
    assert failure.op == "ncrelu_vjp" and failure.worst == float("inf")
    assert failure.reproducer.startswith("import numpy as np")
    assert "YourBackend()" in failure.reproducer  # an object cannot be loaded by name


def test_run_check_by_name_with_a_profile_or_settings() -> None:
    result = run_check("numpy", "ncrelu", "float16", profile="meta")
    assert isinstance(result, Result) and result.status == "pass"
    assert result.examples == 150 and not result.failed
    assert run_check("numpy", CHECKS["conv"], "float64", FEW).examples == 5


def test_the_reproducer_rebuilds_the_failing_case() -> None:
    result = run_check(NormalizeInPlace, "normalize_filters", "float64", FEW)
    assert result.status == "fail" and "modified its argument 'w' in place" in result.message
    namespace: dict[str, object] = {"YourBackend": NormalizeInPlace}
    exec(result.reproducer, namespace)
    assert "got" in namespace and "want" in namespace


def test_a_device_for_an_object_and_an_unknown_dtype() -> None:
    from dirac_conformance import Unavailable

    with pytest.raises(Unavailable, match="device 'gpu' unusable"):
        run_suite(NumpyBackend(), device="gpu")
    with pytest.raises(ValueError, match=r"dtypes \['bfloat16'\] are not tested"):
        run_suite("numpy", dtypes=["bfloat16"])


def test_a_third_party_check_hunts_a_third_party_mutant() -> None:
    """A backend author proves their own extra check bites: it kills a faulty backend that
    their check targets, and a correct backend survives it."""

    class Shifted(NumpyBackend):
        """dirac_tensor with its ones moved to the first tap."""

        first = "delta_sums"

        def dirac_tensor(self, shape, *, groups, policy, dtype, device):  # type: ignore[no-untyped-def]
            delta = super().dirac_tensor(shape, groups=groups, policy=policy, dtype=dtype,
                                         device=device)
            return np.roll(delta, 1, axis=-1) if len(shape) > 2 else delta

    mine = Check("delta_sums", CHECKS["dirac_tensor"].strategy, CHECKS["dirac_tensor"].evaluate)
    kill = hunt(Shifted, checks=[mine])
    assert kill.killed_by.startswith("delta_sums/")
    assert not hunt(NumpyBackend, checks=[mine], settings=FEW).killed_by
