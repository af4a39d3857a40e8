"""The ``dirac-conformance`` command."""

from __future__ import annotations

import json
import re

import pytest

from dirac_conformance.cli import main


def test_passing_backend_prints_table_and_writes_json(tmp_path, capsys) -> None:
    report = tmp_path / "report.json"
    assert main(["numpy", "--ops", "ncrelu,conv", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "worst rel err" in out and "6/6 checks conform" in out
    data = json.loads(report.read_text())
    assert data["backend"] == "numpy" and data["profile"] == "ci"
    assert {(r["op"], r["dtype"], r["status"]) for r in data["results"]} == {
        (op, dtype, "pass") for op in ("ncrelu", "conv") for dtype in ("float64", "float32",
                                                                      "float16")
    }


def test_failing_backend_exits_1_and_shows_the_falsifying_example(capsys) -> None:
    spec = "dirac_conformance.mutants:NcreluGradAtZero"
    assert main([spec, "--ops", "ncrelu_vjp"]) == 1
    out = capsys.readouterr().out
    # The table, then hypothesis' minimal failing case and the reason.
    assert "FAIL" in out and "case=Case(float64:" in out and "exact op" in out


def test_xfails_turn_failures_into_expected_ones(tmp_path, capsys) -> None:
    known = tmp_path / "known.jsonl"
    known.write_text('{"op": "ncrelu_vjp", "reason": "gradient at zero"}\n')
    spec = "dirac_conformance.mutants:NcreluGradAtZero"
    assert main([spec, "--ops", "ncrelu_vjp", "--xfails", str(known)]) == 0
    assert "XFAIL" in capsys.readouterr().out
    # A strict xfail that passes is a failure: the bug was fixed, the entry must go.
    assert main(["numpy", "--ops", "ncrelu_vjp", "--xfails", str(known)]) == 1


def test_unavailable_backend_exits_3_with_the_reason(capsys) -> None:
    assert main(["numpy@gpu"]) == 3
    assert "cannot run here" in capsys.readouterr().out


def test_mutants_report_kill_rate(tmp_path, capsys) -> None:
    report = tmp_path / "kills.json"
    assert main(["--mutants", "--json", str(report)]) == 0
    assert "kill rate: " in capsys.readouterr().out
    assert json.loads(report.read_text())["kill_rate"] == 1.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give either a BACKEND or --mutants"),
        (["numpy", "--mutants"], "give either a BACKEND or --mutants"),
        (["no-such-backend"], r"backend='no-such-backend' is not known"),
        (["numpy", "--ops", "convolve"], r"unknown op\(s\) \['convolve'\]"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)
