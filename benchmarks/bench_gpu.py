"""GPU benchmark: the cupy backend against torch on CUDA, at DiracNet layer shapes.

For the Dirac weight, NCReLU and the convolution, forward and VJP, at CIFAR and ImageNet layer
shapes, it times through the ``Backend`` protocol (what ``dirac_core``'s public functions call):

- ``cupy``: the cupy backend with its fused kernels (the default);
- ``generic``: the cupy backend on its generic path (the reference on CuPy arrays);
- ``torch``: the torch backend on CUDA (cuDNN convolutions forced to IEEE float32).

and prints ratios computed in the same run: ``torch/cupy`` (> 1: cupy is faster) and
``generic/cupy`` (what fusing gains). It also measures the achieved bandwidth of the fused
Dirac weight (read W once, write W_hat once) against a device-to-device copy of the same
bytes. Timing: ``--repeat`` calls after ``--warmup`` calls, through ``benchmarks/timing.py``
with a clock read from CUDA events on the stream the calls run on.

Run ``python benchmarks/bench_gpu.py`` on a GPU machine (``scripts/gpu_check.sh`` does), or
``--dry-run`` anywhere to list the cases without touching a GPU. ``--rehearse`` runs the whole
pipeline on the CPU at tiny shapes, standing in the kernels' CPU mirror for the fused path,
the reference for the generic one and torch on the CPU for torch (its numbers mean nothing;
CI runs it so the GPU run does not meet a broken script). The table is printed row by row as
each case is measured, so a run cut short still shows what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from math import prod
from typing import Any

import numpy as np
from timing import timed  # this directory is on the path when run as a script

EPS = 1e-12
SAME = {"stride": (1, 1), "padding": "same", "dilation": (1, 1), "groups": 1}
WEIGHT_ARGS = {"eps": EPS, "normalize": True, "groups": 1, "policy": "tile"}


@dataclass(frozen=True)
class Case:
    """One timed call: an op of the protocol, at named shapes."""

    op: str  # dirac_weight[_vjp], ncrelu[_vjp], conv[_vjp]
    label: str  # where the shape comes from
    shapes: dict[str, tuple[int, ...]] = field(hash=False)

    def describe(self) -> str:
        return " ".join(f"{k}{tuple(v)}" for k, v in self.shapes.items())


# A Dirac layer taking C channels: NCReLU (C -> 2C), then a 3x3 conv 2C -> C'.
LAYERS = {
    "CIFAR 32x32, NCReLU 128->64": {"batch": 128, "channels": 64, "out": 64, "size": 32},
    "ImageNet 56x56, 64 ch": {"batch": 64, "channels": 64, "out": 64, "size": 56},
    "ImageNet 14x14, 256 ch": {"batch": 64, "channels": 256, "out": 256, "size": 14},
}

# Weights for the bandwidth measurement: the largest ImageNet Dirac conv, one beyond L2, and
# one long filter (its blocks split it: fused_math.weight_split).
BANDWIDTH_WEIGHTS = {
    "ImageNet last group 1024->512": (512, 1024, 3, 3),
    "4x that (beyond L2)": (1024, 2048, 3, 3),
    "one long filter (split)": (1, 10**7),
}


# --rehearse: the same layers, shrunk so the CPU stand-ins finish in a moment.
TINY = {"batch": 2, "channels": 4, "out": 4, "size": 6}
TINY_BANDWIDTH = {"tiny": (8, 16, 3, 3)}


def cases(quick: bool = False, tiny: bool = False) -> list[Case]:
    """Every timed case; ``quick`` keeps the CIFAR layer only, ``tiny`` shrinks every layer."""
    out = []
    for label, layer in LAYERS.items():
        layer = TINY if tiny else layer
        n, c, o, s = layer["batch"], layer["channels"], layer["out"], layer["size"]
        weight = (o, 2 * c, 3, 3)
        activation = (n, c, s, s)
        conv_input = (n, 2 * c, s, s)
        out += [
            Case("dirac_weight", label, {"w": weight}),
            Case("dirac_weight_vjp", label, {"w": weight}),
            Case("ncrelu", label, {"x": activation}),
            Case("ncrelu_vjp", label, {"x": activation}),
            Case("conv", label, {"x": conv_input, "w": weight}),
            Case("conv_vjp", label, {"x": conv_input, "w": weight}),
        ]
        if quick:
            break
    return out


# ---------------------------------------------------------------------------- inputs and calls


def _inputs(case: Case, dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Host arrays for a case: the named shapes plus the output gradient ``g`` for VJPs."""
    rng = np.random.default_rng(seed)
    arrays = {k: rng.normal(size=v).astype(dtype) for k, v in case.shapes.items()}
    if case.op.startswith("dirac_weight"):
        arrays["alpha"] = np.asarray(5.0, dtype=dtype)
        arrays["beta"] = np.asarray(1e-3, dtype=dtype)
        g_shape = case.shapes["w"]
    elif case.op.startswith("ncrelu"):
        n, c, *rest = case.shapes["x"]
        g_shape = (n, 2 * c, *rest)
    else:
        n, _, *rest = case.shapes["x"]
        g_shape = (n, case.shapes["w"][0], *rest)  # "same" padding keeps the spatial size
    arrays["g"] = rng.normal(size=g_shape).astype(dtype)
    return arrays


def _call(backend: Any, case: Case, a: dict[str, Any]) -> Callable[[], Any]:
    """A no-argument closure running the case on native arrays ``a``."""
    calls = {
        "dirac_weight": lambda: backend.dirac_weight(a["w"], a["alpha"], a["beta"], **WEIGHT_ARGS),
        "dirac_weight_vjp": lambda: backend.dirac_weight_vjp(
            a["g"], a["w"], a["alpha"], a["beta"], **WEIGHT_ARGS
        ),
        "ncrelu": lambda: backend.ncrelu(a["x"], axis=1),
        "ncrelu_vjp": lambda: backend.ncrelu_vjp(a["g"], a["x"], axis=1),
        "conv": lambda: backend.conv(a["x"], a["w"], None, **SAME),
        "conv_vjp": lambda: backend.conv_vjp(a["g"], a["x"], a["w"], None, **SAME),
    }
    return calls[case.op]


# ---------------------------------------------------------------------------- timing


def event_clock(record: Callable[[], Any], seconds_between: Callable[[Any, Any], float]
                ) -> Callable[[], float]:
    """A clock for :func:`timing.timed` read from CUDA events: seconds since it was made, each
    reading recorded on the current stream and waited for (so it counts the queued work)."""
    start = record()

    def now() -> float:
        return seconds_between(start, record())

    return now


def cupy_clock() -> Callable[[], float]:
    import cupy

    def record() -> Any:
        event = cupy.cuda.Event()
        event.record()
        event.synchronize()
        return event

    return event_clock(record, lambda a, b: cupy.cuda.get_elapsed_time(a, b) / 1e3)


def torch_clock() -> Callable[[], float]:
    import torch

    def record() -> Any:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        event.synchronize()
        return event

    return event_clock(record, lambda a, b: a.elapsed_time(b) / 1e3)


class Timer:
    """Milliseconds per call: ``warmup`` untimed calls, then :func:`timing.timed` over
    ``repeat`` calls by ``clock`` (a fresh one per measurement: CUDA events, or the wall)."""

    def __init__(self, clock: Callable[[], Callable[[], float]]) -> None:
        self.clock = clock

    def __call__(self, fn: Callable[[], Any], warmup: int, repeat: int) -> float:
        for _ in range(warmup):
            fn()
        return timed(fn, repeat, self.clock()) * 1e3


@dataclass
class Row:
    op: str
    label: str
    shapes: str
    dtype: str
    cupy_ms: float
    generic_ms: float
    torch_ms: float | None

    @property
    def torch_over_cupy(self) -> float | None:
        return None if self.torch_ms is None else self.torch_ms / self.cupy_ms

    @property
    def generic_over_cupy(self) -> float:
        return self.generic_ms / self.cupy_ms


@dataclass
class Rig:
    """What is timed: the fused and generic paths and torch, their devices and clocks."""

    fused: Any
    generic: Any
    timer: Callable[[Callable[[], Any], int, int], float]
    device: Any
    torch: Any = None
    torch_timer: Any = None
    torch_device: str = "cuda"
    free: Callable[[], None] = lambda: None


def gpu_rig() -> Rig:
    """The cupy backend (fused, strict where ``DIRAC_CUPY_STRICT=1``; and generic) on device 0,
    and torch on CUDA if it has a GPU."""
    import cupy

    from dirac_cupy import CupyBackend

    torch_backend, why = _torch_backend("cuda")
    if torch_backend is None:
        print(f"note: no torch column: {why}", file=sys.stderr)
    return Rig(CupyBackend(fused=True), CupyBackend(fused=False), Timer(cupy_clock), 0,
               torch_backend, Timer(torch_clock) if torch_backend is not None else None, "cuda",
               # cached blocks go back between cases: one case's im2col buffers must not
               # crowd the next
               cupy.get_default_memory_pool().free_all_blocks)


def rehearsal_rig() -> Rig:
    """CPU stand-ins: the kernels' mirror (fused), the reference (generic), torch on the CPU."""
    from dirac_core.reference import NumpyBackend
    from dirac_cupy.mirror import MirrorBackend

    torch_backend, why = _torch_backend("cpu")
    if torch_backend is None:
        print(f"note: no torch column: {why}", file=sys.stderr)
    wall = Timer(lambda: time.perf_counter)
    return Rig(MirrorBackend(), NumpyBackend(), wall, None, torch_backend, wall, "cpu")


def _torch_backend(device: str) -> tuple[Any, str]:
    """The torch backend and ``""``, or ``None`` and why torch on ``device`` is not measured."""
    try:
        import torch

        import dirac_core as dc
    except ImportError as exc:
        return None, f"torch is not installed ({exc})"
    if device == "cuda" and not torch.cuda.is_available():
        return None, "torch has no CUDA device (a CPU build, or no driver)"
    return dc.get_backend("torch"), ""


def run_cases(rig: Rig, selected: list[Case], dtype: str, warmup: int, repeat: int
              ) -> list[Row]:
    rows = []
    for case in selected:
        host = _inputs(case, dtype)
        native = {k: rig.fused.from_numpy(v, rig.device) for k, v in host.items()}
        fused_ms = rig.timer(_call(rig.fused, case, native), warmup, repeat)
        generic_ms = rig.timer(_call(rig.generic, case, native), warmup, repeat)
        torch_ms = None
        if rig.torch is not None:
            on_torch = {k: rig.torch.from_numpy(v, rig.torch_device) for k, v in host.items()}
            torch_ms = rig.torch_timer(_call(rig.torch, case, on_torch), warmup, repeat)
            del on_torch
        del native
        rig.free()
        row = Row(case.op, case.label, case.describe(), dtype, fused_ms, generic_ms, torch_ms)
        rows.append(row)
        print(format_row(row), flush=True)  # as measured: a run cut short keeps its rows
    return rows


@dataclass
class Bandwidth:
    label: str
    shape: tuple[int, ...]
    dtype: str
    fused_gbs: float
    generic_gbs: float
    copy_gbs: float


def run_bandwidth(rig: Rig, weights: dict[str, tuple[int, ...]], dtype: str, warmup: int,
                  repeat: int) -> list[Bandwidth]:
    """GB/s of ``dirac_weight`` (bytes of W read once plus W_hat written once) and of a
    device-to-device copy of the same bytes, for each weight shape (printed as measured)."""
    out = []
    for label, shape in weights.items():
        out.append(_bandwidth(rig, label, shape, dtype, warmup, repeat))
        print(format_bandwidth(out[-1]), flush=True)
    return out


def _bandwidth(
    rig: Rig, label: str, shape: tuple[int, ...], dtype: str, warmup: int, repeat: int
) -> Bandwidth:
    w = rig.fused.from_numpy(np.random.default_rng(1).normal(size=shape).astype(dtype),
                             rig.device)
    alpha, beta = (rig.fused.from_numpy(np.asarray(v, np.float32), rig.device)
                   for v in (5.0, 1e-3))
    moved = 2 * w.nbytes / 1e9
    timings = [
        rig.timer(lambda b=b: b.dirac_weight(w, alpha, beta, **WEIGHT_ARGS), warmup, repeat)
        for b in (rig.fused, rig.generic)
    ]
    dst = w.copy()
    copy_ms = rig.timer(lambda: dst.__setitem__(Ellipsis, w), warmup, repeat)
    return Bandwidth(
        label, shape, dtype, *(moved / (ms / 1e3) for ms in (*timings, copy_ms))
    )


# ---------------------------------------------------------------------------- report


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


HEADER = (f"{'op':<17} {'layer':<30} {'dtype':<8} {'cupy ms':>9} {'generic ms':>10} "
          f"{'torch ms':>9} {'torch/cupy':>10} {'generic/cupy':>12}")
RATIOS = "ratios > 1: cupy (fused) is faster than torch / than the generic path"


def format_row(r: Row) -> str:
    torch_ms = "n/a" if r.torch_ms is None else f"{r.torch_ms:.4f}"
    return (f"{r.op:<17} {r.label:<30} {r.dtype:<8} {r.cupy_ms:>9.4f} {r.generic_ms:>10.4f} "
            f"{torch_ms:>9} {_ratio(r.torch_over_cupy):>10} {_ratio(r.generic_over_cupy):>12}")


def format_bandwidth(bw: Bandwidth) -> str:
    return (f"dirac_weight bandwidth, {bw.label} w{bw.shape} {bw.dtype}: fused "
            f"{bw.fused_gbs:.0f} GB/s ({bw.fused_gbs / bw.copy_gbs:.2f} of a D2D copy at "
            f"{bw.copy_gbs:.0f} GB/s), generic {bw.generic_gbs:.0f} GB/s")


def format_table(rows: list[Row], bandwidth: list[Bandwidth]) -> str:
    """The whole table (as the run prints it, line by line): header, one line per case, the
    ratios' sense, then the bandwidth lines."""
    lines = [HEADER, "-" * len(HEADER), *map(format_row, rows), RATIOS]
    return "\n".join(lines + [format_bandwidth(bw) for bw in bandwidth])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="cupy backend vs torch on CUDA at DiracNet layer shapes (ratios, CUDA "
        "events), and the Dirac weight's bandwidth vs a device-to-device copy.",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "float64"])
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    p.add_argument("--repeat", type=int, default=20, help="timed calls per measurement")
    p.add_argument("--quick", action="store_true", help="the CIFAR layer only")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--dry-run", action="store_true", help="list the cases and exit; needs no GPU"
    )
    p.add_argument(
        "--rehearse", action="store_true",
        help="run everything on the CPU at tiny shapes (the kernels' mirror, the reference, "
        "torch on the CPU): checks the pipeline, measures nothing",
    )
    args = p.parse_args(argv)
    if args.warmup < 0 or args.repeat < 1:
        p.error(f"--warmup must be >= 0 and --repeat >= 1, got {args.warmup} and {args.repeat}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = cases(args.quick, tiny=args.rehearse)
    weights = TINY_BANDWIDTH if args.rehearse else BANDWIDTH_WEIGHTS
    if args.dry_run:
        for case in selected:
            print(f"{case.op:<17} {case.label:<30} {case.describe()}")
        for label, shape in weights.items():
            print(f"{'bandwidth':<17} {label:<30} w{shape} ({prod(shape)} entries)")
        return 0
    if args.rehearse:
        rig = rehearsal_rig()
    else:
        from dirac_cupy import CupyBackend

        status = CupyBackend().available()
        if not status:
            print(f"bench_gpu: the cupy backend cannot run here: {status.reason}",
                  file=sys.stderr)
            return 2
        rig = gpu_rig()
    print(HEADER, "-" * len(HEADER), sep="\n", flush=True)
    rows = run_cases(rig, selected, args.dtype, args.warmup, args.repeat)
    print(RATIOS, flush=True)
    bandwidth = run_bandwidth(rig, weights, args.dtype, args.warmup, args.repeat)
    # A kernel that failed to compile would leave the fused column timing the generic path.
    path = getattr(rig.fused, "path", "fused")
    print(f"path measured in the cupy column: {path} ({rig.fused!r})")
    if args.json:
        payload = {
            "path": path,
            "cases": [asdict(r) for r in rows],
            "bandwidth": [asdict(b) for b in bandwidth],
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
    if path != "fused":
        print("bench_gpu: the fused kernels did not run; the cupy column is not theirs",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
