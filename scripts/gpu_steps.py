"""The Python side of ``scripts/gpu_check.sh``: one subcommand per step that needs Python.

Each prints what it measured as it goes, says which path (fused kernels or generic) it
measured, and writes a one-line verdict to ``--verdict FILE`` for the script's summary.

- ``env``: first the compiler pieces the fused kernels need (NVRTC and the CUDA headers,
  naming the package that provides a missing one), then versions, GPUs, whether the project
  runs from a source tree, the usable backends;
- ``warm``: compile the fused kernels (strict: a compile error fails the step) and run every
  op once per dtype on both paths, so that the later steps start with a warm kernel cache
  (CuPy's own kernels included); reports the compile time, and paces itself: after three
  quarters of its limit it warms nothing more (the later steps compile what is left);
- ``trace``: on any machine, the distinct CuPy kernels the warm step makes CuPy compile (the
  generic path's elementwise and reduction kernels, traced on NumPy) and the cold-cache time
  that implies, against the warm step's limit;
- ``conformance SPEC``: the conformance suite, one check x dtype at a time under a time
  budget (checks not started before the budget ends are listed as not run);
- ``ddp``: one data-parallel training step of a small DiracNet on every GPU of this node
  (NCCL; gloo on two CPU processes under ``--cpu``), checking that every rank ends with the
  same weights.

Run ``python scripts/gpu_steps.py --help``; nothing here needs a GPU unless a step is asked
for one.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

FUSED_OPS = ("dirac_weight", "dirac_weight_vjp", "normalize_filters", "normalize_filters_vjp",
             "ncrelu", "ncrelu_vjp")
"""The checks of the ops the cupy backend fuses: run first, so a short budget covers them."""


def _verdict(path: str | None, text: str) -> None:
    print(f"verdict: {text}", flush=True)
    if path:
        Path(path).write_text(text + "\n")


# ---------------------------------------------------------------------------- env


HEADER_PROBE = ('#include <cuda_fp16.h>\n'
                'extern "C" __global__ void probe(__half* x) { x[0] = x[0]; }\n')
"""The smallest source that needs NVRTC and the header the fused kernels include."""


def _wheels(major: int | None) -> tuple[str, str]:
    """The PyPI wheels holding NVRTC and the CUDA runtime headers for a CUDA major version."""
    suffix = "" if major is not None and major >= 13 else "-cu12"
    return f"nvidia-cuda-nvrtc{suffix}", f"nvidia-cuda-runtime{suffix}"


def compiler_pieces(cupy: Any, major: int | None) -> list[str]:
    """What is missing for NVRTC to compile the fused kernels, each naming its package: the
    NVRTC library (asked for its version), then ``cuda_fp16.h`` (a one-line kernel compiled).
    Empty when both are there."""
    nvrtc, runtime = _wheels(major)
    extra = f"pip install 'cupy-cuda{major or 12}x[ctk]'"
    try:
        version = cupy.cuda.nvrtc.getVersion()
    except Exception as exc:  # RuntimeError/ImportError/OSError: CuPy could not load it
        return [f"NVRTC cannot be loaded ({type(exc).__name__}: {exc}); it comes with the CUDA "
                f"toolkit's libnvrtc or the wheel {nvrtc} ({extra} pulls it)"]
    print(f"nvrtc       {version[0]}.{version[1]}", flush=True)
    try:
        cupy.RawModule(code=HEADER_PROBE).compile()
    except Exception as exc:
        return [f"NVRTC cannot compile '#include <cuda_fp16.h>' ({type(exc).__name__}: "
                f"{str(exc).strip()[:200]}); the header comes with the CUDA toolkit "
                f"(CUDA_PATH/include) or the wheel {runtime} ({extra} pulls it)"]
    print("headers     cuda_fp16.h compiles", flush=True)
    return []


def _header_locations() -> list[str]:
    """Where ``cuda_fp16.h`` is on disk (the toolkit's and the wheels' include folders)."""
    roots = [os.environ.get("CUDA_PATH", ""), "/usr/local/cuda", sysconfig.get_paths()["purelib"]]
    found = []
    for root in filter(None, roots):
        found += glob.glob(os.path.join(root, "include", "cuda_fp16.h"))
        found += glob.glob(os.path.join(root, "nvidia", "*", "include", "cuda_fp16.h"))
    return sorted(set(found))


def env(args: argparse.Namespace) -> int:
    from dirac_cupy.availability import driver_cuda_major

    # First what the fused kernels need to compile: a missing piece is named with its package.
    major = driver_cuda_major()
    print(f"driver      CUDA {major if major is not None else 'none found'}; cuda_fp16.h on "
          f"disk: {', '.join(_header_locations()) or 'not found'}", flush=True)
    missing: list[str] = []
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:
        print(f"compiler    not checked: CuPy does not import ({exc})", flush=True)
    else:
        missing = compiler_pieces(cupy, major)
        for problem in missing:
            print(f"MISSING     {problem}", flush=True)
    for name in ("numpy", "cupy", "torch", "hypothesis", "pytest"):
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # a broken CUDA library raises more than ImportError
            print(f"{name:<11} MISSING: {exc}")
            continue
        extra = ""
        if name == "torch":
            extra = f" (CUDA {mod.version.cuda}, GPU {mod.cuda.is_available()})"
        print(f"{name:<11} {mod.__version__}{extra}")
    from importlib.metadata import entry_points

    import dirac_core as dc
    from dirac_core.registry import GROUP, SOURCE_TREE

    installed = bool(list(entry_points(group=GROUP)))
    print(f"dirac_core  {Path(dc.__file__).parent} "
          f"({'installed' if installed else 'source tree: backends from SOURCE_TREE'})")
    report = dc.available_backends()
    for backend, reason in report.items():
        print(f"backend {backend:<12} {'usable' if not reason else 'NOT usable: ' + reason}")
    absent = [name for name in SOURCE_TREE if name not in report]
    if absent or missing:
        why = [f"backends {absent} not found (is backends/ on the path?)"] if absent else []
        _verdict(args.verdict, f"FAIL: {'; '.join(why + missing)}")
        return 1
    usable = sorted(name for name, reason in report.items() if not reason)
    _verdict(args.verdict, f"backends usable: {', '.join(usable)}")
    return 0


# ---------------------------------------------------------------------------- warm


def warm(args: argparse.Namespace) -> int:
    from dirac_cupy import CupyBackend, kernels

    status = CupyBackend().available()
    if not status:
        _verdict(args.verdict, f"FAIL: the cupy backend cannot run here: {status.reason}")
        return 1
    started = time.perf_counter()
    kernels.compile_for_current_device()  # raises the compile error: this step fails
    compiled = time.perf_counter() - started
    print(f"fused kernels compiled for device 0 in {compiled:.1f} s "
          f"({len(kernels.name_expressions())} instantiations)", flush=True)
    fused, generic = CupyBackend(fused=True, strict=True), CupyBackend(fused=False)
    left = _warm_all([fused, generic], started, args.budget)
    spent = time.perf_counter() - started
    detail = f"path fused: kernels compiled in {compiled:.1f} s; "
    if left:
        detail += (f"warmed for {spent:.0f} s, then stopped (budget {args.budget:.0f} s); "
                   f"left to the later steps: {', '.join(left)}")
    else:
        detail += f"both paths warm ({spent:.0f} s)"
    _verdict(args.verdict, detail)
    return 0


def _warm_all(backends: list[Any], started: float, budget: float) -> list[str]:
    """Every op once per (path, dtype) until ``budget`` seconds after ``started``; returns the
    (path, dtype) pairs not warmed."""
    left = []
    for backend in backends:
        for dtype in backend.dtypes:
            if time.perf_counter() - started > budget:
                left.append(f"{backend.path}/{dtype}")
                continue
            start = time.perf_counter()
            _every_op(backend, dtype)
            print(f"  {backend.path:<8} {dtype:<8} every op once: "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    return left


def _every_op(backend: Any, dtype: str, device: Any = 0) -> None:
    """Each op of the protocol once, small: compiles (or loads from the cache) the kernels
    this path and dtype need, CuPy's own among them."""
    import dirac_core as dc

    rng = np.random.default_rng(0)

    def native(*shape: int) -> Any:
        return backend.from_numpy(rng.normal(size=shape).astype(dtype), device)

    w, x, g, y = native(4, 3, 3, 3), native(2, 3, 5, 5), native(2, 6, 5, 5), native(2, 4, 5, 5)
    vec = backend.from_numpy(rng.random(4).astype(dtype) + 0.5, device)
    args = {"eps": 1e-3, "normalize": True, "groups": 1, "policy": "tile", "backend": backend}
    dc.dirac_weight(w, vec, 0.5, **args)
    dc.dirac_weight_vjp(w, w, 0.5, vec, **args)
    dc.normalize_filters_vjp(w, w, backend=backend)
    dc.ncrelu_vjp(g, x, backend=backend)
    dc.conv(dc.ncrelu(x, backend=backend), dc.dirac_tensor((4, 6, 3, 3), dtype=dtype,
            backend=backend, device=device), vec, padding="same", backend=backend)
    dc.conv_vjp(y, x, w, vec, padding=1, backend=backend)
    dc.fold_batchnorm(w, vec, vec, vec, vec, vec, backend=backend)


# ---------------------------------------------------------------------------- conformance


def conformance(args: argparse.Namespace) -> int:
    from hypothesis import settings

    from dirac_conformance import format_table, load_target, run_check
    from dirac_conformance.checks import CHECKS
    from dirac_conformance.runner import is_failure, profile_settings
    from dirac_conformance.target import Unavailable

    try:
        target = load_target(args.spec)
    except Unavailable as exc:
        _verdict(args.verdict, f"FAIL: {args.spec} cannot run here: {exc}")
        return 1
    ops = args.ops.split(",") if args.ops else [*FUSED_OPS, *(c for c in CHECKS
                                                               if c not in FUSED_OPS)]
    config = settings(profile_settings("ci"), max_examples=args.examples)
    started = time.perf_counter()
    results, not_run = [], []
    for op in ops:
        for dtype in target.dtypes:
            if time.perf_counter() - started > args.budget:
                not_run.append(f"{op}/{dtype}")
                continue
            tick = time.perf_counter()
            r = run_check(target, CHECKS[op], dtype, config)
            results.append(r)
            print(f"{r.op:<22} {r.dtype:<8} {r.status.upper():<5} {r.examples:>4} examples "
                  f"worst {r.worst:.2e} ({time.perf_counter() - tick:.1f} s)", flush=True)
            if is_failure(r):
                print(f"    {r.message}", flush=True)
    path = _path(target.backend)
    print(f"\npath measured: {path}\n{format_table(results)}")
    failed = [f"{r.op}/{r.dtype}" for r in results if is_failure(r)]
    if args.json:
        Path(args.json).write_text(json.dumps({
            "backend": target.label, "path": path, "examples": args.examples,
            "seconds": time.perf_counter() - started, "not_run": not_run,
            "results": [r.as_dict() for r in results]}, indent=2) + "\n")
    summary = f"path {path}; {len(results) - len(failed)}/{len(results)} checks conform"
    if not_run:
        summary += f"; {len(not_run)} not run within {args.budget:.0f} s: {', '.join(not_run)}"
    if failed or (target.backend.name == "cupy" and path != "fused"):
        _verdict(args.verdict, f"FAIL: {summary}; failed: {', '.join(failed) or 'none'}")
        return 1
    _verdict(args.verdict, summary)
    return 0


def _path(backend: Any) -> str:
    """What the suite measured: the cupy backend's path (after the run, so a fallback shows)."""
    return getattr(backend, "path", f"{backend.name} (no fused kernels)")


# ---------------------------------------------------------------------------- trace

COLD_KERNEL_S = 0.5
"""Assumed seconds for CuPy to compile (NVRTC) and load one of its small elementwise or
reduction kernels with a cold cache: the unit of the warm step's budget. A GPU run prints the
real cost per (path, dtype) in the warm step's log."""

FUSED_COMPILE_S = 20.0
"""Assumed seconds for NVRTC to compile every instantiation of ``dirac_kernels.cu``."""

WARM_MARGIN = 1.25
"""The warm step's limit must exceed the traced cold-cache estimate by this factor."""


def _signature(values: Any) -> tuple[str, ...]:
    """Dtype and number of dims of each array among ``values``: CuPy compiles one kernel per
    combination (its indexer is specialised by ndim)."""
    return tuple(f"{v.dtype.name}/{v.ndim}" if isinstance(v, np.ndarray | np.generic)
                 else type(v).__name__ for v in values if isinstance(v, np.ndarray | np.generic
                                                                    | float | int))


class _Traced(np.ndarray):
    """NumPy arrays that record each distinct kernel CuPy would compile for what is done to
    them: per (ufunc, method) or array function, and the dtypes and ndims of its arrays; a
    conversion per dtype pair; an assignment per dtype."""

    seen: ClassVar[set[tuple[str, ...]]] = set()

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        _Traced.seen.add((ufunc.__name__, method, *_signature(inputs),
                          str(kwargs.get("axis"))))
        plain = [x.view(np.ndarray) if isinstance(x, np.ndarray) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in kwargs["out"])
        result = getattr(ufunc, method)(*plain, **kwargs)
        return result.view(_Traced) if isinstance(result, np.ndarray) else result

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        flat = [a for arg in args for a in (arg if isinstance(arg, list | tuple) else [arg])]
        _Traced.seen.add((func.__name__, *_signature(flat)))
        return super().__array_function__(func, types, args, kwargs)

    def astype(self, dtype: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if np.dtype(dtype) != self.dtype:
            _Traced.seen.add(("astype", self.dtype.name, np.dtype(dtype).name, str(self.ndim)))
        return super().astype(dtype, *args, **kwargs)

    def __setitem__(self, key: Any, value: Any) -> None:
        _Traced.seen.add(("setitem", self.dtype.name, str(self.ndim), *_signature([value])))
        super().__setitem__(key, value)


def traced_kernels() -> set[tuple[str, ...]]:
    """The distinct CuPy kernels of the warm step's generic path, in every dtype it warms
    (the fused path adds its own module; its other ops are the generic ones)."""
    from dirac_core.reference import NumpyBackend

    class Tracing(NumpyBackend):
        def from_numpy(self, a: np.ndarray, device: Any = None) -> Any:
            return np.array(a).view(_Traced)

    _Traced.seen = set()
    tracing = Tracing()
    with np.errstate(all="ignore"):
        for dtype in ("float64", "float32", "float16"):
            _every_op(tracing, dtype, device=None)
    return set(_Traced.seen)


def trace(args: argparse.Namespace) -> int:
    kinds = traced_kernels()
    estimate = len(kinds) * COLD_KERNEL_S + FUSED_COMPILE_S
    limit = args.limit
    print(f"warm step, traced on the CPU: {len(kinds)} distinct CuPy kernels on the generic path "
          f"(float64/32/16) + the fused module; cold cache ~ {len(kinds)} x {COLD_KERNEL_S} s + "
          f"{FUSED_COMPILE_S:.0f} s = {estimate:.0f} s")
    ok = limit >= WARM_MARGIN * estimate
    _verdict(args.verdict, f"{'' if ok else 'FAIL: '}warm limit {limit:.0f} s is "
             f"{limit / estimate:.2f}x the cold-cache estimate {estimate:.0f} s "
             f"(at least {WARM_MARGIN}x wanted)")
    return 0 if ok else 1


# ---------------------------------------------------------------------------- ddp


DIFFER = "DIFFER between ranks"
"""What a worker reports when the ranks ended with different weights: a finding, not a launch
failure, so it is never retried."""


def _first_error(output: str) -> str:
    """The line that names a failure: the first exception a worker printed (torchrun's own
    ``ChildFailedError`` summary only if no worker printed one)."""
    lines = [line.strip() for line in output.splitlines()
             if re.search(r"\b[\w.]*(Error|Exception): ", line + " ")]
    own = [line for line in lines if "ChildFailedError" not in line]
    return (own or lines or ["no error line in its output"])[0][:200]


def _run_streamed(cmd: list[str]) -> tuple[int, str]:
    """Run ``cmd``, printing its output as it comes (a step cut by its limit keeps what was
    printed) and returning its exit status and output."""
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    return process.returncode, "".join(lines)


def ddp(args: argparse.Namespace) -> int:
    """Launch :func:`ddp_worker` on every GPU of this node (two CPU processes with --cpu).

    A launch that failed (a rendezvous port another job took between its choice and its bind,
    a connection the loaded machine reset) is retried once, and the verdict names the first
    attempt's error; ranks that end with different weights fail the step at once. A failure's
    verdict carries the worker's error line.
    """
    import torch

    ranks = args.ranks or (2 if args.cpu else torch.cuda.device_count())
    if ranks < 1:
        _verdict(args.verdict, "FAIL: no CUDA device for the NCCL step")
        return 1
    report = Path(args.report or os.devnull)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={ranks}", __file__, "ddp-worker", "--report", str(report),
           *(["--cpu"] if args.cpu else [])]
    retried = ""
    for attempt in (1, 2):
        returncode, output = _run_streamed(cmd)
        if returncode == 0:
            break
        error = _first_error(output)
        if attempt == 2 or DIFFER in output:
            _verdict(args.verdict, f"FAIL: torchrun with {ranks} ranks exited "
                     f"{returncode}{retried}: {error}")
            return 1
        retried = f" (retried once after: {error})"
    summary = report.read_text().strip() if args.report else f"{ranks} ranks"
    _verdict(args.verdict, summary + retried)
    return 0


def ddp_worker(args: argparse.Namespace) -> int:
    """One training step of a small DiracNet under DistributedDataParallel, different data per
    rank, batch norm synchronized over the ranks (``--sync-bn``); every rank must end with the
    same weights."""
    import torch

    from dirac_torch import diracnet_cifar
    from diracnets import distributed
    from diracnets.sync_bn import synchronize_batchnorm

    context, device = distributed.setup("cpu" if args.cpu else "auto")
    # One rank (a one-GPU node): setup() joins no group, but DDP needs one, NCCL included.
    own_group = not torch.distributed.is_initialized()
    if own_group:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        torch.manual_seed(0)
        model = diracnet_cifar(10, 1).to(device)
        synchronize_batchnorm(model)  # its all-reduces run over NCCL on GPUs
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        generator = torch.Generator().manual_seed(1 + context.rank)  # each rank its own batch
        x = torch.randn(8, 3, 32, 32, generator=generator).to(device)
        y = torch.randint(0, 10, (8,), generator=generator).to(device)
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(ddp_model(x), y)
        loss.backward()
        optimizer.step()
        seconds = time.perf_counter() - started
        distributed.broadcast_buffers(model, context)  # batch-norm statistics are per rank
        prints = distributed.gather(distributed.fingerprint(model), context)
        if context.is_main:
            backend = torch.distributed.get_backend()
            same = len(set(prints)) == 1
            line = (f"{'' if same else 'FAIL: '}{context.world} ranks ({backend}, {device.type}): "
                    f"one DDP step (synchronized batch norm) in {seconds:.2f} s, weights "
                    f"{'identical on every rank' if same else DIFFER}")
            print(line, flush=True)
            Path(args.report).write_text(line + "\n")
            return 0 if same else 1
        return 0
    finally:
        if own_group:
            torch.distributed.destroy_process_group()
        distributed.teardown(context)


# ---------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--verdict", metavar="FILE", help="write the one-line verdict here")
    sub = p.add_subparsers(dest="step", required=True)
    step_limit = float(os.environ.get("STEP_LIMIT_S", 160))
    sub.add_parser("env", help="compiler pieces, versions, GPUs and usable backends")
    w = sub.add_parser("warm", help="compile the fused kernels (strict) and warm both paths")
    w.add_argument("--budget", type=float, default=0.75 * step_limit,
                   help="seconds after which nothing more is warmed (default: 3/4 of the "
                   "step's limit, $STEP_LIMIT_S)")
    t = sub.add_parser("trace", help="the warm step's CuPy kernels, traced on the CPU")
    t.add_argument("--limit", type=float, required=True, help="the warm step's limit, seconds")
    c = sub.add_parser("conformance", help="the conformance suite under a time budget")
    c.add_argument("spec", help="backend spec, e.g. cupy or torch@cuda")
    c.add_argument("--examples", type=int, default=100, help="examples per check x dtype")
    c.add_argument("--budget", type=float, default=0.75 * step_limit,
                   help="seconds after which no further check starts (default: 3/4 of the "
                   "step's limit, $STEP_LIMIT_S, leaving time to finish the check under way)")
    c.add_argument("--ops", help="only these checks (comma separated)")
    c.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    for name, text in (("ddp", "one DDP training step on every GPU (NCCL)"),
                       ("ddp-worker", "one rank of the ddp step (run by torchrun)")):
        d = sub.add_parser(name, help=text)
        d.add_argument("--cpu", action="store_true", help="two CPU processes over gloo")
        d.add_argument("--report", metavar="FILE", help="rank 0 writes its line here")
        d.add_argument("--ranks", type=int, help="processes (default: the GPUs; 2 with --cpu)")
    args = p.parse_args(argv)
    steps = {"env": env, "warm": warm, "trace": trace, "conformance": conformance, "ddp": ddp,
             "ddp-worker": ddp_worker}
    return steps[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
