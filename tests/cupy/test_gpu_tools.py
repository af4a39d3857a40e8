"""The GPU benchmark and check script, as far as they run without a GPU: the benchmark's
cases, inputs and calls (on the NumPy reference, at tiny shapes), its table, ``--help`` and
``--dry-run``; the script's time limits, its step driver, and the whole script rehearsed on
the CPU from an uninstalled source tree, as the bare GPU machine will run it."""

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from dirac_core.reference import NumpyBackend

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_gpu.py"
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
STEPS = ROOT / "scripts" / "gpu_steps.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up by name
    sys.path.insert(0, str(BENCH.parent))  # as when run as a script: timing.py beside it
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH.parent))
    yield module
    del sys.modules["bench_gpu"]


@pytest.fixture(scope="module")
def steps():
    spec = importlib.util.spec_from_file_location("gpu_steps", STEPS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert "pip install" not in SCRIPT.read_text()  # no network there: nothing installs


STEPS_OF_THE_SCRIPT = {"env", "warm", "conformance-cupy", "conformance-torch-cuda",
                       "tests-cupy", "ddp", "bench-gpu", "bench-memory"}
QUICK_SKIPS = {"bench-memory"}  # skipped by --quick: no limit of its own there


def _limits(mode: str) -> tuple[int, dict[str, int]]:
    """``(default TOTAL_S, {step: limit})`` of the script's full or quick mode."""
    text = SCRIPT.read_text()
    branch = text.split("if (( QUICK )); then", 1)[1].split("\nfi", 1)[0]
    quick, full = branch.split("else", 1)
    part = quick if mode == "quick" else full
    total = int(re.search(r"DEFAULT_TOTAL_S=(\d+)", part).group(1))
    pairs = re.search(r"LIMITS=\(([^)]*)\)", part).group(1).split()
    return total, {k: int(v) for k, v in zip(pairs[::2], pairs[1::2], strict=True)}


@pytest.mark.parametrize(("mode", "minutes"), [("full", 7.5), ("quick", 4)])
def test_step_limits_and_kill_margins_sum_within_the_total(mode, minutes):
    total, limits = _limits(mode)
    assert set(limits) == STEPS_OF_THE_SCRIPT - (QUICK_SKIPS if mode == "quick" else set())
    kill_after = int(re.search(r"KILL_AFTER=(\d+)", SCRIPT.read_text()).group(1))
    # Each killed step may take KILL_AFTER s more (timeout --kill-after): still within total.
    assert sum(limits.values()) + kill_after * len(limits) <= total <= minutes * 60


@pytest.mark.parametrize("mode", ["full", "quick"])
def test_the_warm_limit_covers_a_cold_cache_traced_on_the_cpu(mode, tmp_path):
    """The warm step compiles every CuPy kernel of both paths (about a hundred) on a bare
    machine: its limit must exceed the traced estimate with a margin."""
    _, limits = _limits(mode)
    done = _steps("--verdict", str(tmp_path / "v"), "trace", "--limit", str(limits["warm"]))
    assert done.returncode == 0, done.stdout + done.stderr
    count = int(re.search(r"(\d+) distinct CuPy kernels", done.stdout).group(1))
    assert count > 60  # the generic path's ufuncs, reductions and copies, per dtype and ndim


def _steps(*args, env=None):
    return subprocess.run([sys.executable, str(STEPS), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_conformance_step_reports_path_and_what_the_budget_left_out(tmp_path):
    verdict, report = tmp_path / "verdict", tmp_path / "report.json"
    done = _steps("--verdict", str(verdict), "conformance", "dirac_cupy.mirror:MirrorBackend",
                  "--ops", "ncrelu,dirac_weight", "--examples", "3", "--json", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "path measured: cupy_mirror" in done.stdout
    assert verdict.read_text().startswith("path cupy_mirror (no fused kernels); 6/6 checks")
    assert json.loads(report.read_text())["not_run"] == []
    late = _steps("--verdict", str(verdict), "conformance", "numpy", "--ops", "ncrelu",
                  "--budget", "0")
    assert late.returncode == 0 and "3 not run within 0 s: ncrelu/float64" in late.stdout


def test_warm_step_fails_without_a_usable_cupy(tmp_path):
    status = dc_available("cupy")
    if status == "":
        pytest.skip("CuPy runs here: the warm step would pass")
    done = _steps("--verdict", str(tmp_path / "v"), "warm")
    assert done.returncode == 1 and "FAIL: the cupy backend cannot run here" in done.stdout


def dc_available(name: str) -> str:
    import dirac_core as dc

    return dc.available_backends().get(name, "missing")


@pytest.mark.slow
def test_gpu_check_rehearses_from_an_uninstalled_source_tree(uninstalled, source_tree, tmp_path):
    """The whole script, CuPy steps skipped, from a checkout that is not installed: the budget
    arithmetic, the env checks, the ddp step on two CPU processes, the streamed table."""
    pytest.importorskip("torch")
    env = {**uninstalled, "OUT": str(tmp_path)}
    script = source_tree / SCRIPT.relative_to(ROOT)
    done = subprocess.run(["bash", str(script), "--rehearse"], env=env, capture_output=True,
                          text=True, timeout=400)
    out = done.stdout
    failed = [log.read_text()[-3000:] for log in sorted(tmp_path.glob("*.log"))
              if re.search(rf"^{log.stem}\s+(FAIL|TIMEOUT)", out, flags=re.M)]
    assert done.returncode == 0, "\n".join([*failed, out[-3000:], done.stderr[-2000:]])
    budget = re.search(r"=== budget: 8 steps, limits \+ 5 s kill margin each = (\d+) s", out)
    assert budget and int(budget.group(1)) <= 450
    assert "verdict: warm limit 100 s is" in out  # the traced cold-cache estimate, with margin
    env_log = (tmp_path / "env.log").read_text()
    assert "source tree: backends from SOURCE_TREE" in env_log
    # The compiler pieces come first, before any version (here: CuPy does not import).
    assert env_log.index("compiler    not checked") < env_log.index("numpy ")
    summary = out.split("=== summary", 1)[1]
    for step, status in [("env", "pass"), ("warm", "skipped"), ("conformance-cupy", "skipped"),
                         ("conformance-torch-cuda", "pass"), ("tests-cupy", "skipped"),
                         ("ddp", "pass"), ("bench-gpu", "pass"), ("bench-memory", "pass")]:
        assert re.search(rf"^{step}\s+{status}\s", summary, flags=re.M), summary
    # Each verdict is printed when its step ends, before the next step starts.
    assert out.index(">>> env ") < out.index("=== conformance-torch-cuda")
    usable = re.search(r"^env .*backends usable: (.*)$", summary, flags=re.M).group(1)
    assert {"numpy", "torch"} <= set(usable.split(", "))
    torch_line = r"path torch \(no fused kernels\); (\d+)/(\d+) checks conform"
    good, total = re.search(torch_line, summary).groups()
    assert good == total and int(total) > 12  # every check, each dtype, all conform
    assert re.search(r"^ddp .*2 ranks \(gloo, cpu\): one DDP step .* identical on every rank",
                     summary, flags=re.M), summary
    # The table's rows were printed as measured, inside the step, before its verdict ...
    step = out.split("=== bench-gpu", 1)[1].split(">>> bench-gpu", 1)[0]
    assert step.index("conv_vjp ") < step.index("path measured in the cupy column")
    # ... and the table is repeated, whole, at the very end.
    table = out.split("=== benchmark table", 1)[1].split("\n", 1)[1]
    assert table.startswith("op ") and "conv_vjp" in table and "bandwidth" in table
    assert "path measured in the cupy column: fused (MirrorBackend" in table
    assert json.loads((tmp_path / "bench_gpu.json").read_text())["cases"]


def test_a_table_cut_short_keeps_its_rows(bench, capsys):
    """Rows are printed as each case is measured: what a timeout leaves is still a table."""
    from dirac_core.reference import NumpyBackend as Reference

    rig = bench.Rig(Reference(), Reference(), bench.Timer(lambda: time.perf_counter), None)
    selected = bench.cases(tiny=True)[:2]
    rows = bench.run_cases(rig, selected, "float64", 0, 1)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [bench.format_row(r) for r in rows]


def test_bench_timers_go_through_the_shared_timing_helper(bench, monkeypatch):
    calls = []

    def timed(step, steps, clock):
        calls.append(steps)
        return 0.002

    monkeypatch.setattr(bench, "timed", timed)
    assert bench.Timer(lambda: time.perf_counter)(lambda: None, 1, 7) == pytest.approx(2.0)
    assert calls == [7]
    ticks = iter([10.0, 10.5])
    clock = bench.event_clock(lambda: next(ticks), lambda a, b: b - a)
    assert clock() == 0.5  # seconds between the clock's start event and a new one


def test_budget_arithmetic_refuses_limits_beyond_the_total(tmp_path):
    """A script whose limits do not fit stops before running any step."""
    text = SCRIPT.read_text().replace("LIMITS=(env 20 warm 100", "LIMITS=(env 60 warm 100")
    broken = tmp_path / "scripts" / "gpu_check.sh"
    broken.parent.mkdir()
    broken.write_text(text)
    done = subprocess.run(["bash", str(broken), "--rehearse"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "OUT": str(tmp_path / "out"),
                                           "PYTHON": sys.executable})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the step limits exceed 450 s" in done.stderr and "=== env" not in done.stdout


def test_env_names_the_package_of_missing_compiler_pieces(steps, monkeypatch):
    """NVRTC or cuda_fp16.h missing: the env step says which package provides it."""

    def no_nvrtc():
        raise RuntimeError("CuPy failed to load libnvrtc.so.12")

    def no_header(code):
        return types.SimpleNamespace(compile=lambda: (_ for _ in ()).throw(
            RuntimeError("catastrophic error: cannot open source file \"cuda_fp16.h\"")))

    nvrtc = types.SimpleNamespace(getVersion=no_nvrtc)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(nvrtc=nvrtc), RawModule=no_header)
    (problem,) = steps.compiler_pieces(fake, 12)
    assert "NVRTC cannot be loaded (RuntimeError" in problem
    assert "nvidia-cuda-nvrtc-cu12" in problem and "cupy-cuda12x[ctk]" in problem
    nvrtc.getVersion = lambda: (12, 4)
    (problem,) = steps.compiler_pieces(fake, 13)
    assert "cuda_fp16.h" in problem and "nvidia-cuda-runtime " in problem + " "
    fake.RawModule = lambda code: types.SimpleNamespace(compile=lambda: None)
    assert steps.compiler_pieces(fake, 12) == []


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_warm_step_calls_every_op_of_the_protocol(steps, dtype, monkeypatch):
    """What the warm step runs on each path, here on the mirror (recording the ops called)."""
    from dirac_core import OPS
    from dirac_cupy.mirror import MirrorBackend

    called = set()

    class Recording(MirrorBackend):
        def __getattribute__(self, name):
            if name in OPS:
                called.add(name)
            return super().__getattribute__(name)

    steps._every_op(Recording(), dtype, device=None)
    assert called == set(OPS)


def test_launch_counted_benchmark_runs_without_a_gpu():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cupy_launches.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "w(1, 10000000): blocks per weight launch 1 -> 1024; launches 1 -> 3" in done.stdout
    assert "normalize_filters_vjp: 1 launch per call against 3" in done.stdout
    assert "1 kept against 100 looked up per launch" in done.stdout
    assert "cupy" not in sys.modules or hasattr(sys.modules["cupy"], "ndarray")



@pytest.mark.parametrize("first, verdict, rc", [
    ("torch.distributed.DistNetworkError: The server socket has failed to listen on any local "
     "network address. port: 41234, useIpv6: false, code: -98, name: EADDRINUSE, message: "
     "address already in use\ntorch.distributed.elastic.multiprocessing.errors.ChildFailedError: "
     "\n", "identical on every rank (retried once after: torch.distributed.DistNetworkError: ", 0),
    ("FAIL: 2 ranks (gloo, cpu): one DDP step (synchronized batch norm) in 0.20 s, weights "
     "DIFFER between ranks\ntorch.distributed.elastic.multiprocessing.errors.ChildFailedError: "
     "\n",
     "FAIL: torchrun with 2 ranks exited 1: torch.distributed.elastic.multiprocessing.errors."
     "ChildFailedError:", 1),
])
def test_ddp_retries_a_failed_launch_once_but_not_a_finding(steps, monkeypatch, tmp_path,
                                                             first, verdict, rc):
    """A launch that failed (here: a rendezvous port another job took) is retried once, named
    in the verdict; ranks whose weights differ fail the step at once, the error in the verdict."""
    report = tmp_path / "report"
    launches = []

    class Launch:  # subprocess.Popen as the step uses it: the first launch fails
        def __init__(self, cmd, **kwargs):
            launches.append(cmd)
            self.returncode, text = (1, first) if len(launches) == 1 else (0, "")
            if self.returncode == 0:
                report.write_text("2 ranks (gloo, cpu): weights identical on every rank\n")
            self.stdout = io.StringIO(text)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(steps.subprocess, "Popen", Launch)
    out = tmp_path / "verdict"
    assert steps.main(["--verdict", str(out), "ddp", "--cpu", "--report", str(report)]) == rc
    assert verdict in out.read_text()
    assert len(launches) == 2 - rc
