"""The Python side of ``scripts/gpu_check.sh``: one subcommand per step that needs Python.

Each prints what it measured as it goes, says which path (fused kernels or generic) it
measured, and writes a one-line verdict to ``--verdict FILE`` for the script's summary.

- ``env``: versions, GPUs, whether the project runs from a source tree, the usable backends;
- ``warm``: compile the fused kernels (strict: a compile error fails the step) and run every
  op once per dtype on both paths, so that the later steps start with a warm kernel cache
  (CuPy's own kernels included); reports the compile time;
- ``conformance SPEC``: the conformance suite, one check x dtype at a time under a time
  budget (checks not started before the budget ends are listed as not run).

Run ``python scripts/gpu_steps.py --help``; nothing here needs a GPU unless a step is asked
for one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FUSED_OPS = ("dirac_weight", "dirac_weight_vjp", "normalize_filters", "normalize_filters_vjp",
             "ncrelu", "ncrelu_vjp")
"""The checks of the ops the cupy backend fuses: run first, so a short budget covers them."""


def _verdict(path: str | None, text: str) -> None:
    print(f"verdict: {text}", flush=True)
    if path:
        Path(path).write_text(text + "\n")


# ---------------------------------------------------------------------------- env


def env(args: argparse.Namespace) -> int:
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
    missing = [name for name in SOURCE_TREE if name not in report]
    if missing:
        _verdict(args.verdict, f"FAIL: backends {missing} not found (is backends/ on the path?)")
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
    for backend in (fused, generic):
        for dtype in backend.dtypes:
            start = time.perf_counter()
            _every_op(backend, dtype)
            print(f"  {backend.path:<8} {dtype:<8} every op once: "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    _verdict(args.verdict, f"path fused: kernels compiled in {compiled:.1f} s; both paths warm "
             f"({time.perf_counter() - started:.0f} s)")
    return 0


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


# ---------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--verdict", metavar="FILE", help="write the one-line verdict here")
    sub = p.add_subparsers(dest="step", required=True)
    sub.add_parser("env", help="versions, GPUs and usable backends")
    sub.add_parser("warm", help="compile the fused kernels (strict) and warm both paths")
    c = sub.add_parser("conformance", help="the conformance suite under a time budget")
    c.add_argument("spec", help="backend spec, e.g. cupy or torch@cuda")
    c.add_argument("--examples", type=int, default=100, help="examples per check x dtype")
    step_limit = float(os.environ.get("STEP_LIMIT_S", 160))
    c.add_argument("--budget", type=float, default=0.75 * step_limit,
                   help="seconds after which no further check starts (default: 3/4 of the "
                   "step's limit, $STEP_LIMIT_S, leaving time to finish the check under way)")
    c.add_argument("--ops", help="only these checks (comma separated)")
    c.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    return {"env": env, "warm": warm, "conformance": conformance}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
