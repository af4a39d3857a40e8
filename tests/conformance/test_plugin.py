"""The pytest plugin, run in a child pytest so its options and hooks are the real ones."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _pytest(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfs", *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_runs_checks_per_backend_and_prints_the_table(tmp_path, gpuless) -> None:
    mutant = "dirac_conformance.mutants:NcreluGradAtZero"
    known = tmp_path / "known.jsonl"
    known.write_text(
        f'{{"backend": "{mutant}", "op": "ncrelu_vjp", "dtype": "float16", "reason": "gh-7"}}\n'
    )
    run = _pytest(tmp_path, "--pyargs", "dirac_conformance", "--dirac-backend", "numpy",
                  "--dirac-backend", mutant, "--dirac-backend", "gpuless.py@cuda",
                  "--dirac-ops", "ncrelu_vjp", "--dirac-xfails", str(known))
    out = run.stdout
    assert run.returncode == 1, out
    # numpy: 3 pass; mutant: float64 and float32 fail, float16 is the listed xfail.
    assert "2 failed, 3 passed, 1 skipped, 1 xfailed" in out
    assert "gpuless.py@cuda: device 'cuda' is not available here" in out  # skipped, why
    assert "worst error / tolerance per op x dtype" in out
    assert "FAILED" in out and "NcreluGradAtZero-ncrelu_vjp-float64" in out
    # the listed xfail ran as one (the table says so): stopped at its first failing example
    assert any(line.split()[1:4] == ["ncrelu_vjp", "float16", "XFAIL"]
               for line in out.splitlines() if "NcreluGradAtZero" in line), out


def test_harmless_without_its_options(tmp_path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    assert True\n")
    run = _pytest(tmp_path, "test_plain.py")
    assert run.returncode == 0 and "1 passed" in run.stdout
    assert "dirac" not in run.stdout
    bare = _pytest(tmp_path, "--pyargs", "dirac_conformance")
    assert bare.returncode == 0 and "1 skipped" in bare.stdout


def test_require_available_fails_unmatched_and_xpass_entries_are_named(tmp_path,
                                                                        gpuless) -> None:
    known = tmp_path / "known.jsonl"
    known.write_text('{"op": "ncrelu", "reason": "gh-8"}\n'
                     '{"op": "conv", "backend": "numpyy", "reason": "typo"}\n')
    # Under xdist, as in `make test`: the controller reports the unmatched entry.
    run = _pytest(tmp_path, "-n", "2", "--pyargs", "dirac_conformance", "--dirac-backend",
                  "numpy", "--dirac-backend", "gpuless.py@cuda", "--dirac-require-available",
                  "--dirac-ops", "ncrelu", "--dirac-xfails", str(known))
    out = run.stdout
    assert run.returncode == 1, out
    assert "4 failed" in out  # 3 strict XPASS and the unavailable backend
    assert f"{known}:1: delete the entry once this passes" in out
    assert f"xfail entry {known}:2 matches no test" in out
    assert "gpuless.py@cuda cannot run here (--dirac-require-available)" in out


def test_a_crashing_backend_is_a_failing_test_not_a_skip(tmp_path) -> None:
    (tmp_path / "crashing.py").write_text(
        "from dirac_core.reference import NumpyBackend\n\n\n"
        "class Crashing(NumpyBackend):\n"
        "    def available(self):\n"
        "        raise RuntimeError('driver query failed')\n")
    run = _pytest(tmp_path, "--pyargs", "dirac_conformance", "--dirac-backend",
                  "crashing.py", "--dirac-ops", "ncrelu")
    out = run.stdout
    assert run.returncode == 1, out
    assert "1 failed" in out and "skipped" not in out
    assert "is broken (a crash is a failure, not a skip)" in out
    assert "available() raised RuntimeError('driver query failed')" in out


def test_bad_selections_are_usage_errors_and_dtypes_select(tmp_path) -> None:
    """An unknown --dirac-ops ended in a traceback from the terminal summary; an empty one
    ran every check; there was no --dirac-dtypes."""
    base = ("--pyargs", "dirac_conformance", "--dirac-backend", "numpy")
    for options, message in [
        (("--dirac-ops", "bogus"), "--dirac-ops: unknown op(s) ['bogus']"),
        (("--dirac-ops", ""), "--dirac-ops='' selects nothing"),
        (("--dirac-ops", "dirac_tensor", "--dirac-dtypes", "float64,float64"),
         "--dirac-dtypes='float64,float64' names 'float64' more than once"),
        (("--dirac-ops", "dirac_tensor", "--dirac-dtypes", "float8"),
         "--dirac-dtypes ['float8'] are not dtypes the suite tests"),
    ]:
        run = _pytest(tmp_path, *base, *options)
        assert run.returncode == 4, run.stdout + run.stderr  # pytest's usage error
        assert f"ERROR: dirac_conformance: {message}" in run.stderr, run.stderr
        assert "Traceback" not in run.stdout + run.stderr
    # A dtype the backend lacks is known once it is loaded: a usage error at startup too, in
    # one line as the CLI's (it was a collection error with the plugin's traceback).
    run = _pytest(tmp_path, *base, "--dirac-ops", "dirac_tensor", "--dirac-dtypes", "bfloat16")
    assert run.returncode == 4, run.stdout + run.stderr
    assert ("ERROR: dirac_conformance: --dirac-dtypes ['bfloat16'] are not tested on numpy"
            in run.stderr), run.stderr
    assert "collecting" not in run.stdout, run.stdout
    run = _pytest(tmp_path, *base, "--dirac-ops", "dirac_tensor ",
                  "--dirac-dtypes", "float64, float16")
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout
    assert "float32" not in run.stdout


def test_a_mistyped_device_is_a_usage_error_not_a_green_skip(tmp_path, gpuless) -> None:
    for spec in ("gpuless.py@gpu", "numpy@@cpu", "numpy@"):
        run = _pytest(tmp_path, "--pyargs", "dirac_conformance", "--dirac-backend", spec,
                      "--dirac-ops", "dirac_tensor")
        assert run.returncode == 4 and "skipped" not in run.stdout, run.stdout
        assert "ERROR: dirac_conformance: " in run.stderr and spec in run.stderr, run.stderr
        assert "collecting" not in run.stdout, run.stdout


def test_an_unreadable_xfails_file_is_a_usage_error_at_startup(tmp_path) -> None:
    """The CLI's one line (exit 2), not a collection error with the plugin's traceback."""
    run = _pytest(tmp_path, "--pyargs", "dirac_conformance", "--dirac-backend", "numpy",
                  "--dirac-xfails", str(tmp_path / "missing.jsonl"))
    assert run.returncode == 4, run.stdout + run.stderr
    assert "ERROR: dirac_conformance: xfails file" in run.stderr, run.stderr
    assert "collecting" not in run.stdout, run.stdout


def test_a_device_reads_as_at_the_cli(tmp_path) -> None:
    """``jax@cuda`` without JAX's CUDA plugin: a skip naming the device and what JAX has (it
    was a usage error); ``array_api@gpu``: a usage error listing the devices it accepts."""
    import jax

    if any(d.platform != "cpu" for d in jax.devices()):
        pytest.skip("this machine has a JAX accelerator")
    run = _pytest(tmp_path, "--pyargs", "dirac_conformance", "--dirac-backend", "jax@cuda",
                  "--dirac-ops", "dirac_tensor")
    assert run.returncode == 0 and "1 skipped" in run.stdout, run.stdout + run.stderr
    assert "jax@cuda: device 'cuda' is not available here" in run.stdout, run.stdout
    assert "present: cpu" in run.stdout
    run = _pytest(tmp_path, "--pyargs", "dirac_conformance", "--dirac-backend",
                  "array_api@gpu", "--dirac-ops", "dirac_tensor")
    assert run.returncode == 4, run.stdout + run.stderr
    assert ("ERROR: dirac_conformance: array_api@gpu: device 'gpu' is not a device of this "
            "backend") in run.stderr and "it accepts None, 'cpu'" in run.stderr, run.stderr
