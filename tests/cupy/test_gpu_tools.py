"""The GPU benchmark and check script, as far as they run without a GPU: the benchmark's
cases, inputs and calls (on the NumPy reference, at tiny shapes), its table, ``--help`` and
``--dry-run``; the script's shell syntax."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dirac_core.reference import NumpyBackend

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_gpu.py"
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_gpu"]


def test_cases_cover_every_op_at_cifar_and_imagenet_shapes(bench):
    selected = bench.cases()
    ops = {"dirac_weight", "dirac_weight_vjp", "ncrelu", "ncrelu_vjp", "conv", "conv_vjp"}
    for label in bench.LAYERS:
        assert {c.op for c in selected if c.label == label} == ops
    cifar = next(c for c in selected if c.op == "conv")
    assert cifar.shapes == {"x": (128, 128, 32, 32), "w": (64, 128, 3, 3)}  # NCReLU 128 -> 64
    assert {c.label for c in bench.cases(quick=True)} == {next(iter(bench.LAYERS))}


@pytest.mark.parametrize(
    "op", ["dirac_weight", "dirac_weight_vjp", "ncrelu", "ncrelu_vjp", "conv", "conv_vjp"]
)
def test_each_call_runs_on_the_reference_at_tiny_shapes(bench, op):
    shapes = {"x": (2, 4, 5, 5), "w": (3, 4, 3, 3)}
    if op.startswith("dirac_weight"):
        shapes = {"w": (3, 4, 3, 3)}
    elif op.startswith("ncrelu"):
        shapes = {"x": (2, 4, 5, 5)}
    case = bench.Case(op, "tiny", shapes)
    result = bench._call(NumpyBackend(), case, bench._inputs(case, "float64"))()
    first = result[0] if isinstance(result, tuple) else result
    expected = {"ncrelu": (2, 8, 5, 5), "conv": (2, 3, 5, 5), "conv_vjp": (2, 4, 5, 5)}
    assert first.shape == expected.get(op, next(iter(shapes.values())))


def test_table_reports_ratios_and_bandwidth(bench):
    rows = [
        bench.Row("ncrelu", "CIFAR", "x(1,)", "float32", 0.5, 1.0, 2.0),
        bench.Row("conv", "CIFAR", "x(1,)", "float32", 1.0, 1.0, None),
    ]
    bw = [bench.Bandwidth("big", (4, 8, 3, 3), "float32", 3000.0, 1000.0, 4000.0)]
    table = bench.format_table(rows, bw)
    assert "4.00x" in table and "2.00x" in table  # torch/cupy and generic/cupy of row 1
    assert "n/a" in table.splitlines()[3]
    assert "fused 3000 GB/s (0.75 of a D2D copy at 4000 GB/s), generic 1000 GB/s" in table


def test_help_and_dry_run_need_no_gpu():
    run = [sys.executable, str(BENCH)]
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--dry-run" in helped.stdout
    dry = subprocess.run([*run, "--dry-run", "--quick"], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "conv_vjp" in dry.stdout and "bandwidth" in dry.stdout
    bad = subprocess.run([*run, "--repeat", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--repeat >= 1" in bad.stderr


def test_gpu_check_script_is_valid_bash():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not on PATH")
    done = subprocess.run([bash, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--no-index" in SCRIPT.read_text()  # the GPU machine has no network
