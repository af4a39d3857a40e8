"""The ``dirac-conformance`` command."""

from __future__ import annotations

import json
import os
import re
import textwrap

import pytest

from dirac_conformance import meta
from dirac_conformance.checks import CHECKS
from dirac_conformance.cli import main

MUTANT = "dirac_conformance.mutants:NcreluGradAtZero"

FILE_BACKEND = """
from dirac_core.reference import NumpyBackend


class FileBackend(NumpyBackend):
    name = "from-file"
"""


def test_passing_backend_prints_table_and_writes_json(tmp_path, capsys) -> None:
    report = tmp_path / "report.json"
    assert main(["numpy", "--ops", "ncrelu,conv", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "err/tol" in out and "6/6 checks conform" in out
    data = json.loads(report.read_text())
    assert data["backend"] == "numpy" and data["profile"] == "ci" and data["ok"] is True
    assert {(r["op"], r["dtype"], r["status"]) for r in data["results"]} == {
        (op, dtype, "pass") for op in ("ncrelu", "conv") for dtype in ("float64", "float32",
                                                                      "float16")
    }


def test_failing_row_shows_the_failing_error_and_a_pasteable_reproducer(capsys) -> None:
    assert main([MUTANT, "--ops", "ncrelu_vjp", "--fail-fast"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if " FAIL " in line)
    assert row.split()[-1] == "inf"  # the failing example's error, not the best passing one
    assert "exact op" in out and "reproduce with:" in out
    block = []
    for line in out.split("reproduce with:\n\n")[1].splitlines():
        if line and not line.startswith("    "):
            break
        block.append(line)
    snippet = textwrap.dedent("\n".join(block))
    namespace: dict[str, object] = {}
    with pytest.raises(AssertionError, match="exact op"):  # it runs as printed, and fails
        exec(compile(snippet, "<reproducer>", "exec"), namespace)
    got, want = namespace["got"], namespace["want"]
    assert (got != want).any()  # and it shows the bug


def test_xfails_expected_failures_xpass_names_the_entry_and_unmatched_are_reported(
        tmp_path, capsys) -> None:
    known = tmp_path / "known.jsonl"
    known.write_text('{"op": "ncrelu_vjp", "reason": "gradient at zero"}\n'
                     '{"op": "conv", "backend": "mybakend", "reason": "typo in the backend"}\n')
    assert main([MUTANT, "--ops", "ncrelu_vjp", "--xfails", str(known)]) == 0
    out = capsys.readouterr().out
    assert "XFAIL" in out
    assert f"xfail entry {known}:2 matches no check that ran" in out
    # A strict xfail that passes is a failure: the bug was fixed, the entry must go.
    assert main(["numpy", "--ops", "ncrelu_vjp", "--xfails", str(known)]) == 1
    out = capsys.readouterr().out
    assert f"delete the xfail entry {known}:1" in out and "XPASS" in out


def test_unavailable_backend_exits_3_or_fails_when_required(gpuless, capsys) -> None:
    assert main([f"{gpuless}@cuda:1"]) == 3
    assert "cannot run here" in capsys.readouterr().out
    assert main([f"{gpuless}@cuda", "--require-available"]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "device 'gpu' is not a device of this backend"),  # as a made-up name
        ("cuda:x", "is not a device name"),
        ("@cpu", "is not a device name"),
        ("", "names no device after '@'"),
    ],
)
def test_a_mistyped_device_is_a_usage_error_not_a_skip(device, message, gpuless,
                                                       capsys) -> None:
    """``torch@gpu``, ``numpy@@cpu``, ``numpy@`` were reported as "cannot run here"."""
    for spec in (f"{gpuless}@{device}", f"numpy@{device}"):
        assert main([spec, "--ops", "dirac_tensor"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_torch_devices_mistyped_or_missing() -> None:
    pytest.importorskip("torch")
    import torch

    for spec in ("torch@gpu", "torch@cuda:x", "torch@CUDA"):
        assert main([spec, "--ops", "dirac_tensor"]) == 2
    if not torch.cuda.is_available():  # a device torch knows that this machine lacks
        assert main(["torch@cuda", "--ops", "dirac_tensor"]) == 3


@pytest.mark.parametrize(("spec", "status", "message"), [
    ("jax@cuda", 3, "JAX has no 'cuda' devices here (install JAX's CUDA plugin"),
    ("jax@gpu", 3, "JAX has no 'gpu' devices here"),
    ("jax@cpu:7", 3, "JAX has 1 cpu device(s) here"),
    ("jax@cdua", 2, "is not a JAX platform; accepted: cpu, gpu, cuda, rocm, tpu"),
    ("array_api@gpu", 2, "it accepts None, 'cpu' or one of"),  # array-api-strict has no GPU
])
def test_a_device_reads_alike_at_the_cli_and_the_api(spec, status, message, capsys) -> None:
    """``jax@cuda`` without JAX's CUDA plugin was a usage error ("not a device the backend
    knows": JAX words a missing platform as an unknown one); a missing device is "cannot run
    here" (exit 3, ``Unavailable``), a mistyped one a usage error (exit 2, ``ValueError``),
    each naming the target, the device and what there is."""
    pytest.importorskip("jax")
    import jax

    from dirac_conformance import Unavailable, load_target

    if status == 3 and any(d.platform != "cpu" for d in jax.devices()):
        pytest.skip("this machine has a JAX accelerator")
    device = spec.partition("@")[2]
    assert main([spec, "--ops", "dirac_tensor"]) == status
    out = capsys.readouterr()
    said = out.out if status == 3 else out.err
    assert f"{spec}: device {device!r}" in said and message in said, said
    with pytest.raises(Unavailable if status == 3 else ValueError) as caught:
        load_target(spec)
    assert str(caught.value).startswith(f"{spec}: device {device!r}") and message in str(
        caught.value)


def test_backend_from_a_file_with_or_without_its_name(tmp_path, capsys) -> None:
    path = tmp_path / "my_backend.py"
    path.write_text(FILE_BACKEND)
    assert main([str(path), "--ops", "ncrelu"]) == 0
    assert main([f"{path}:FileBackend", "--ops", "ncrelu"]) == 0
    assert "3/3 checks conform" in capsys.readouterr().out


def test_no_check_ran_is_a_failure(tmp_path, capsys) -> None:
    path = tmp_path / "ints.py"
    path.write_text(FILE_BACKEND + "    dtypes = ('int8',)\n")
    assert main([str(path)]) == 1
    assert "no check ran" in capsys.readouterr().out


def test_mutants_report_kill_rate_and_classes(tmp_path, capsys, monkeypatch, hunted) -> None:
    """The command hunts each mutant with hunt's defaults; the kills are the meta-suite
    tests' own (one hunt per mutant and session, not two)."""
    calls = set()

    def once(mutant, profile, *, checks, settings, deadline):
        calls.add((profile, tuple(c.name for c in checks), settings, deadline))
        return hunted(mutant)

    monkeypatch.setattr(meta, "hunt", once)
    report = tmp_path / "kills.json"
    assert main(["--mutants", "--json", str(report)]) == 0
    assert calls == {("meta", tuple(CHECKS), None, meta.META_DEADLINE)}
    out = capsys.readouterr().out
    assert "kill rate: " in out and "class half-accumulation: 3/3 killed" in out
    assert json.loads(report.read_text())["kill_rate"] == 1.0


def test_third_party_mutant_set_from_a_file(tmp_path, capsys) -> None:
    path = tmp_path / "my_mutants.py"
    path.write_text(textwrap.dedent("""
        from dirac_core.reference import NumpyBackend

        class DoubledRelu(NumpyBackend):
            '''NCReLU's positive half doubled.'''
            first = "ncrelu"

            def ncrelu(self, x, *, axis):
                return super().ncrelu(x, axis=axis) * 2

        MUTANTS = [DoubledRelu]
    """))
    assert main(["--mutants", str(path)]) == 0
    assert "DoubledRelu  KILLED by ncrelu/float64" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-backend"], r"backend='no-such-backend' is not known"),
        (["numpy", "--ops", "convolve"], r"unknown op\(s\) \['convolve'\]"),
        (["numpy", "--ops", ""], r"--ops='' selects nothing or holds an empty name"),
        (["numpy", "--ops", "ncrelu,"], r"--ops='ncrelu,' selects nothing or holds an empty"),
        (["numpy", "--dtypes", ""], r"--dtypes='' selects nothing or holds an empty name"),
        (["numpy", "--ops", "ncrelu, ncrelu"], r"--ops=.* names 'ncrelu' more than once"),
        (["numpy", "--dtypes", "float64,float64"],
         r"--dtypes=.* names 'float64' more than once"),
        (["numpy", "--xfails", "/no/such/known.jsonl"], "xfails file .* does not exist"),
        (["numpy", "--xfails", "/dev/zero"], "is a character device, not a regular file"),
        (["numpy", "--xfails", "{tmp}/fifo"], "is a FIFO"),
        (["numpy", "--xfails", "{tmp}"], "is a directory"),
        (["numpy", "--xfails", "{tmp}/deep.jsonl"], "deep.jsonl:1: nested deeper than 32"),
        (["numpy", "--xfails", "{tmp}/big.jsonl"], "bytes; at most 1,048,576 are read"),
        (["numpy", "--xfails", "{tmp}/types.jsonl"], "types.jsonl:1: op=3 is an int"),
        (["--mutants", "{tmp}/raising.py"], "could not be imported: ZeroDivisionError"),
        (["--mutants", "{tmp}/raising.py:MUTANTS"], "could not be imported: ZeroDivisionError"),
        (["numpy", "--json", "{tmp}"], "is a directory"),
        (["numpy", "--json", "{tmp}/missing/report.json"], "does not exist"),
        (["dirac_core.api:conv"], "is a function, not a Backend: it lacks available"),
        (["os:path"], "not a Backend"),
        (["{tmp}/empty.py"], "defines no backend"),
        (["{tmp}/partial.py", "--ops", "ncrelu"],
         r"defines no backend: OnlyNcrelu lacks available, .*conv_vjp \(inherit what you do "
         r"not implement from dirac_core.reference.NumpyBackend\)"),
        (["{tmp}/partial.py:OnlyNcrelu"], r"is class OnlyNcrelu, not a Backend: it lacks "
         r"available, .* \(a backend with only some ops can inherit"),
        (["{tmp}/absent.py"], "does not exist"),
        (["--mutants", "os:sep"], "must be a non-empty sequence"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(argv: list[str], message: str, tmp_path,
                                               capsys) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    (tmp_path / "partial.py").write_text(
        "class OnlyNcrelu:\n    def ncrelu(self, x, *, axis):\n        return x\n")
    (tmp_path / "raising.py").write_text("MUTANTS = [1 / 0]\n")
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would wait for a writer
    (tmp_path / "deep.jsonl").write_text('{"op": ' + "[" * 50_000 + "\n")
    (tmp_path / "big.jsonl").write_text("# padding\n" * 200_000)
    (tmp_path / "types.jsonl").write_text('{"op": 3, "reason": ["x"]}\n')
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_mutants_refuse_the_options_they_do_not_use(capsys) -> None:
    """The meta-suite hunts on every dtype, stops at the first failure and counts a crash as a
    kill: --dtypes, --xfails, --fail-fast and --require-available were silently ignored."""
    argv = ["--mutants", "--ops", "ncrelu", "--dtypes", "int7", "--xfails", "/no/such.jsonl",
            "--fail-fast", "--require-available"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--mutants takes --ops, --profile, --deadline and --json, not --dtypes, --xfails, "
        "--fail-fast, --require-available")
    assert main(["--mutants", "--ops", "no_such_op"]) == 2
    assert "--ops: unknown op(s) ['no_such_op']" in capsys.readouterr().err


def test_mutants_take_ops_and_deadline(tmp_path, capsys) -> None:
    path = tmp_path / "my_mutants.py"
    path.write_text(textwrap.dedent("""
        import time
        from dirac_core.reference import NumpyBackend

        class DoubledRelu(NumpyBackend):
            '''NCReLU's output doubled.'''
            def ncrelu(self, x, *, axis):
                return super().ncrelu(x, axis=axis) * 2

        class SlowRelu(NumpyBackend):
            '''NCReLU that takes a second.'''
            def ncrelu(self, x, *, axis):
                time.sleep(1.0)
                return super().ncrelu(x, axis=axis)

        MUTANTS = [DoubledRelu, SlowRelu]
    """))
    report = tmp_path / "kills.json"
    assert main(["--mutants", str(path), "--ops", "dirac_tensor", "--json", str(report)]) == 1
    assert "DoubledRelu  SURVIVED" in capsys.readouterr().out  # only the check it was given
    assert main(["--mutants", str(path), "--ops", "ncrelu", "--deadline", "0.5", "--json",
                 str(report)]) == 0
    kills = json.loads(report.read_text())["mutants"]
    assert "no result within the deadline of 0.5 s" in kills[1]["message"]


def test_backend_and_mutants_are_exclusive(capsys) -> None:
    for argv in ([], ["numpy", "--mutants"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "give either a BACKEND or --mutants" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import no_such_library_anywhere\n" + FILE_BACKEND, "could not be imported"),
        (FILE_BACKEND + "    def __init__(self):\n        raise OSError('libcudart')\n",
         "could not be instantiated"),
        (FILE_BACKEND + "    def available(self):\n        raise RuntimeError('driver')\n",
         r"available\(\) raised RuntimeError\('driver'\)"),
        (FILE_BACKEND + "    def available(self):\n        pass\n",
         r"available\(\) returned None"),
        (FILE_BACKEND + "    @property\n    def dtypes(self):\n"
         "        raise RuntimeError('driver')\n",
         r"raised reading its name or dtypes: RuntimeError\('driver'\)"),
    ],
)
def test_a_crashing_backend_fails_in_one_line_and_is_never_skipped(body: str, message: str,
                                                                   tmp_path, capsys) -> None:
    path = tmp_path / "crashing.py"
    path.write_text(body)
    for extra in ([], ["--require-available"]):
        assert main([f"{path}:FileBackend", *extra]) == 1
        out, err = capsys.readouterr()
        assert re.search(message, out) and out.startswith("FAILED: ") and "is broken" in out
        assert "Traceback" not in out + err and out.count("\n") == 1


def test_a_hanging_op_fails_at_the_deadline_and_stops_the_run(tmp_path, capsys) -> None:
    path = tmp_path / "hanging.py"
    path.write_text(FILE_BACKEND + "    def ncrelu(self, x, *, axis):\n"
                    "        import time\n        time.sleep(3600)\n")
    report = tmp_path / "report.json"
    assert main([str(path), "--ops", "ncrelu,conv", "--deadline", "0.5", "--json",
                 str(report)]) == 1
    out = capsys.readouterr().out
    assert "no result within the deadline of 0.5 s" in out and "reproduce with:" in out
    assert "the checks after it did not run" in out
    data = json.loads(report.read_text())
    assert [(r["op"], r["status"], r["hung"]) for r in data["results"]] == [
        ("ncrelu", "fail", True)]


def test_ctrl_c_inside_a_backend_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "interrupted.py"
    path.write_text(FILE_BACKEND + "    def ncrelu(self, x, *, axis):\n"
                    "        raise KeyboardInterrupt\n")
    assert main([str(path), "--ops", "ncrelu"]) == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C)" in err and err.count("\n") == 1 and "Traceback" not in err


def test_dtypes_option_selects_and_refuses(capsys) -> None:
    assert main(["numpy", "--ops", "ncrelu", "--dtypes", "float16,float64"]) == 0
    out = capsys.readouterr().out
    assert "2/2 checks conform" in out and "float32" not in out
    assert main(["numpy", "--ops", "ncrelu", "--dtypes", "float8"]) == 2
    assert "--dtypes ['float8'] are not dtypes the suite tests" in capsys.readouterr().err
    assert main(["numpy", "--ops", "ncrelu", "--dtypes", "bfloat16"]) == 2
    # named as the option, as the plugin names --dirac-dtypes (it read "dtypes [...]")
    assert "--dtypes ['bfloat16'] are not tested on numpy" in capsys.readouterr().err


def test_blanks_around_names_are_read_as_run_suite_reads_them(capsys) -> None:
    """``--ops "dirac_tensor, ncrelu"`` was an unknown op here and accepted by run_suite."""
    assert main(["numpy", "--ops", " dirac_tensor ", "--dtypes", "float64, float16"]) == 0
    assert "2/2 checks conform" in capsys.readouterr().out


def test_json_report_is_strict_json_with_null_for_an_infinite_error(tmp_path, capsys) -> None:
    """An exact output that differs has error inf, which json.dump wrote as ``Infinity``."""
    from dirac_conformance.runner import Result
    from dirac_core.untrusted import parse_json

    report = tmp_path / "report.json"
    assert main(["dirac_conformance.mutants:MinFillDelta", "--ops", "dirac_tensor",
                 "--dtypes", "float64", "--json", str(report)]) == 1
    data = parse_json(report.read_text(), str(report))
    (result,) = data["results"]
    assert result["status"] == "fail" and result["worst"] is None
    assert [f["error"] for f in result["failures"]] == [None]
    # and it reads back as the result it was (the pytest plugin passes results this way)
    back = Result.from_dict(result)
    assert back.worst == float("inf") and back.failures[0].error == float("inf")


def test_json_is_written_in_one_shape_whatever_the_outcome(tmp_path, gpuless, capsys) -> None:
    """An unavailable backend wrote no file; a broken one wrote a file of another shape."""
    crashing = tmp_path / "crashing.py"
    crashing.write_text(FILE_BACKEND + "    def available(self):\n"
                        "        raise RuntimeError('driver')\n")
    runs = {
        "ran": (["numpy", "--ops", "dirac_tensor", "--dtypes", "float64"], 0),
        "unavailable": ([f"{gpuless}@cuda"], 3),
        "required": ([f"{gpuless}@cuda", "--require-available"], 1),
        "broken": ([f"{crashing}:FileBackend"], 1),
    }
    reports = {}
    for name, (argv, status) in runs.items():
        path = tmp_path / f"{name}.json"
        assert main([*argv, "--json", str(path)]) == status
        reports[name] = json.loads(path.read_text())
    capsys.readouterr()
    keys = {"backend", "profile", "ok", "seconds", "results", "unmatched_xfails",
            "unavailable", "broken"}
    assert all(set(r) == keys for r in reports.values()), reports
    assert reports["ran"]["ok"] is True and len(reports["ran"]["results"]) == 1
    assert reports["ran"]["unavailable"] is None and reports["ran"]["broken"] is None
    for name in ("unavailable", "required"):
        assert "has no CUDA device" in reports[name]["unavailable"]
        assert reports[name]["ok"] is False and reports[name]["results"] == []
    assert "RuntimeError('driver')" in reports["broken"]["broken"]
    assert reports["broken"]["ok"] is False and reports["broken"]["unavailable"] is None
