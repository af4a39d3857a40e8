"""The programmatic API: run_suite / run_check on names, objects and files, with results."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from hypothesis import settings

import dirac_core as dc
from dirac_conformance import CHECKS, Check, Report, Result, run_check, run_suite
from dirac_conformance.cli import seconds
from dirac_conformance.meta import hunt
from dirac_conformance.mutants import NcreluGradAtZero, NormalizeInPlace
from dirac_conformance.xfails import Xfail
from dirac_core.reference import NumpyBackend

FEW = settings(max_examples=5, derandomize=True, database=None, deadline=None)


def test_run_suite_on_a_name_selects_ops_and_dtypes() -> None:
    report = run_suite("numpy", ops=["ncrelu", "dirac_tensor"], dtypes=["float32"],
                       settings=FEW)
    assert isinstance(report, Report) and report.ok and not report.failures
    # Five drawn examples after the check's boundary examples.
    assert [(r.op, r.dtype, r.status, r.examples) for r in report] == [
        (op, "float32", "pass", 5 + len(CHECKS[op].examples("float32")))
        for op in ("dirac_tensor", "ncrelu")]
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
    assert result.examples == 150 + len(CHECKS["ncrelu"].examples("float16"))
    assert not result.failed
    assert run_check("numpy", CHECKS["conv"], "float64", FEW).examples == 5 + len(
        CHECKS["conv"].examples("float64"))


def test_the_reproducer_rebuilds_the_failing_case() -> None:
    result = run_check(NormalizeInPlace, "normalize_filters", "float64", FEW)
    assert result.status == "fail" and "modified its argument 'w' in place" in result.message
    namespace: dict[str, object] = {"YourBackend": NormalizeInPlace}
    with pytest.raises(AssertionError, match="w was modified in place"):
        exec(result.reproducer, namespace)
    assert "got" in namespace and "want" not in namespace


class TwoFaults(NumpyBackend):
    """dirac_weight_vjp: dbeta negated for a vector beta, and a crash without
    normalization."""

    def dirac_weight_vjp(self, g, w, alpha, beta, **kw):  # type: ignore[no-untyped-def]
        if not kw["normalize"]:
            raise RuntimeError("normalize=False is not implemented")
        dw, dalpha, dbeta = super().dirac_weight_vjp(g, w, alpha, beta, **kw)
        return dw, dalpha, -dbeta if beta.ndim else dbeta


def test_every_distinct_failure_is_reported_with_its_own_reproducer() -> None:
    result = run_check(TwoFaults, "dirac_weight_vjp", "float64")
    assert result.status == "fail"
    assert sorted(f.output for f in result.failures) == ["", "dbeta"]
    for failure in result.failures:
        if failure.output:
            assert failure.error > 1 and "tolerance" in failure.message
            assert failure.output in failure.message
        else:
            assert "RuntimeError: normalize=False is not implemented" in failure.message
        namespace: dict[str, object] = {"YourBackend": TwoFaults}
        kind = AssertionError if failure.output else RuntimeError
        with pytest.raises(kind, match=failure.output or "not implemented"):  # it reproduces
            exec(failure.reproducer, namespace)
    assert "ExceptionGroup" not in result.message
    assert [f["output"] for f in result.as_dict()["failures"]] == [  # type: ignore[index]
        f.output for f in result.failures]


class EpsTooLow(NumpyBackend):
    """normalize_filters with eps cast straight to float32 (1e39 becomes inf)."""

    def normalize_filters(self, w, *, eps):  # type: ignore[no-untyped-def]
        return super().normalize_filters(w, eps=float(np.float32(min(eps, 1e38))) / 2)


def test_the_reproducer_calls_the_reference_with_the_working_eps() -> None:
    result = run_check(EpsTooLow, "normalize_filters", "float32", profile="meta")
    (failure,) = result.failures
    assert "eps as the float32 working dtype takes it" in failure.reproducer
    namespace: dict[str, object] = {"YourBackend": EpsTooLow}
    with pytest.raises(AssertionError, match="tolerance"):
        exec(failure.reproducer, namespace)
    got = np.asarray(namespace["got"])
    assert not np.array_equal(got, np.asarray(namespace["want"]), equal_nan=True)
    for line in failure.reproducer.splitlines():  # every import is used
        if line.startswith(("import ", "from ")):
            names = line.replace(",", " ").split(" import ")[-1].split()
            name = names[-1] if " as " in line else names[0]
            assert failure.reproducer.count(name) > 1, line


def test_names_where_lists_are_expected_and_clear_errors() -> None:
    report = run_suite("numpy", ops="ncrelu,dirac_tensor", dtypes="float32", settings=FEW)
    assert [r.op for r in report] == ["dirac_tensor", "ncrelu"]
    assert hunt(NcreluGradAtZero, checks=["ncrelu_vjp"]).killed_by == "ncrelu_vjp/float64"
    with pytest.raises(ValueError, match="check='nope' is not a check"):
        run_check("numpy", "nope", "float32")
    with pytest.raises(ValueError, match="'nope' is not a check"):
        hunt(NcreluGradAtZero, checks=["nope"])
    with pytest.raises(TypeError, match="check names or Check objects"):
        hunt(NcreluGradAtZero, checks=[3])


@pytest.mark.parametrize(
    ("ops", "dtypes", "message"),
    [
        ("", None, r"ops='' selects nothing"),
        ([], None, r"ops=\[\] selects nothing"),
        ("dirac_tensor,,ncrelu", None, "holds an empty name"),
        ("ncrelu, ncrelu", None, "names 'ncrelu' more than once"),
        ("dirac_tensor", "", r"dtypes='' selects nothing"),
        ("dirac_tensor", [" "], "holds an empty name"),
        ("dirac_tensor", ["float64", "float64 "], "names 'float64' more than once"),
    ],
)
def test_empty_and_repeated_selections_are_refused(ops, dtypes, message) -> None:  # type: ignore[no-untyped-def]
    """An empty selection gave an empty report (or "no check ran"); a dtype given twice ran
    twice. The CLI and the plugin read their options with the same function."""
    with pytest.raises(ValueError, match=message):
        run_suite("numpy", ops=ops, dtypes=dtypes, settings=FEW)


def test_blanks_around_names_are_ignored_in_strings_and_lists() -> None:
    report = run_suite("numpy", ops=[" dirac_tensor"], dtypes="float32 , float64",
                       settings=FEW)
    assert [(r.op, r.dtype) for r in report] == [("dirac_tensor", "float32"),
                                                 ("dirac_tensor", "float64")]


def test_xfails_from_a_file_path_match_the_backend_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    known = tmp_path / "known.jsonl"
    known.write_text('{"backend": "ncrelu_at_zero", "op": "ncrelu_vjp", "reason": "known"}\n')

    class Named(NcreluGradAtZero):
        name = "ncrelu_at_zero"

    report = run_suite(Named(), ops=["ncrelu_vjp"], dtypes=["float64"], xfails=str(known),
                       settings=FEW)
    assert [r.status for r in report] == ["xfail"] and report.ok
    assert not report.unmatched_xfails


def test_a_device_for_an_object_and_an_unknown_dtype(gpuless) -> None:  # type: ignore[no-untyped-def]
    from dirac_conformance import Unavailable, load_target

    with pytest.raises(ValueError, match="device 'gpu' is not a device of this backend"):
        run_suite(NumpyBackend(), device="gpu")  # numpy has only the CPU: a mistake
    with pytest.raises(ValueError, match="device='' is not a device name"):
        run_suite(NumpyBackend(), device="")
    with pytest.raises(Unavailable, match=r"device 'cuda' is not available here: .* has no "
                                          r"CUDA device"):
        run_suite(f"{gpuless}@cuda", ops="dirac_tensor")
    with pytest.raises(ValueError, match=r"'numpy@cpu' names device 'cpu' and device='cuda'"):
        run_suite("numpy@cpu", device="cuda")  # the spec's device won, silently
    with pytest.raises(ValueError, match=r"target 'numpy' is loaded for device None and "
                                         r"device='cuda' names another"):
        run_suite(load_target("numpy"), device="cuda")  # the Target's device won, silently
    with pytest.raises(ValueError, match=r"dtypes \['bfloat16'\] are not tested"):
        run_suite("numpy", dtypes=["bfloat16"])


def test_a_backend_says_a_device_is_missing_with_device_unavailable_error() -> None:
    """Worded as its refusal of a name it does not know, a missing device still reads as
    "cannot run here" when the backend raises ``DeviceUnavailableError``."""
    from dirac_conformance import Unavailable, load_target

    class Terse(NumpyBackend):
        def from_numpy(self, a, device=None):  # type: ignore[no-untyped-def]
            if device in (None, "cpu"):
                return super().from_numpy(a, device)
            error = dc.DeviceUnavailableError if device == "cuda" else ValueError
            raise error("no such device")

    with pytest.raises(Unavailable, match="Terse: device 'cuda' is not available here"):
        load_target(Terse(), device="cuda")
    with pytest.raises(ValueError, match="Terse: device 'gpu' is not a device of this"):
        load_target(Terse(), device="gpu")


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


def test_an_expected_failure_is_neither_shrunk_nor_searched_again() -> None:
    class Counted(NcreluGradAtZero):
        calls = 0

        def ncrelu_vjp(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            type(self).calls += 1
            return super().ncrelu_vjp(*args, **kwargs)

    known = Xfail("ncrelu_vjp", "known", dtype="float64")
    expected = run_check(Counted, "ncrelu_vjp", "float64", xfail=known)
    searched, Counted.calls = Counted.calls, 0
    failed = run_check(Counted, "ncrelu_vjp", "float64")
    assert (expected.status, failed.status) == ("xfail", "fail")
    # the unexpected failure is shrunk: the backend is called more often than the search
    # needed; the examples column counts the search alone, up to the first failure
    assert searched < Counted.calls
    assert expected.examples == failed.examples <= searched
    assert expected.reproducer.startswith("import numpy as np")


@pytest.mark.parametrize("deadline", [0, -1.0, float("nan"), float("inf")])
def test_a_deadline_no_example_can_meet_is_refused_at_every_door(deadline) -> None:
    """run_check, run_suite and the options of the CLI and the pytest plugin (both parsed by
    ``seconds``) apply one rule: 0 or -1 made every check fail as a hang (blaming the backend),
    nan meant no deadline, and the plugin turned 0 into the default."""
    with pytest.raises(ValueError, match="deadline must be a positive finite number"):
        run_check("numpy", "dirac_tensor", "float64", FEW, deadline=deadline)
    with pytest.raises(ValueError, match="deadline must be a positive finite number"):
        run_suite("numpy", ops="dirac_tensor", settings=FEW, deadline=deadline)
    with pytest.raises(argparse.ArgumentTypeError, match="positive finite number of seconds"):
        seconds(str(deadline))
    with pytest.raises(TypeError, match="deadline must be None or a number"):
        run_check("numpy", "dirac_tensor", "float64", FEW, deadline=True)


def test_a_deadline_below_the_watchers_period_is_refused_at_every_door() -> None:
    """The watcher looks every 0.05 s: a deadline of 1e-9 was accepted and honoured 0.05 s
    late."""
    message = r"deadline must be at least 0.1 seconds \(the watcher looks every 0.05 s\)"
    with pytest.raises(ValueError, match=message):
        run_check("numpy", "dirac_tensor", "float64", FEW, deadline=1e-9)
    with pytest.raises(ValueError, match=message):
        hunt(NcreluGradAtZero, deadline=0.05)
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be at least 0\.1 seconds"):
        seconds("1e-9")
    assert seconds("0.1") == 0.1
