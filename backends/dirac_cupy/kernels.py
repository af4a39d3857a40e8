"""Launching the fused CUDA kernels of ``dirac_kernels.cu`` from CuPy.

The source is compiled once per device by NVRTC through :class:`cupy.RawModule`, with one
template instantiation per (kernel, storage dtype) listed by :func:`name_expressions` and the
options :data:`OPTIONS` (CI compiles the same list with nvcc and the same options). Each
kernel function is looked up once per device and kept. Every launcher takes CuPy arrays
already validated by the public API and returns CuPy arrays; no launch is made for an empty
grid (a CUDA error); the index constants come from :mod:`dirac_cupy.fused_math`, which also
holds the same maths as array code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dirac_core.delta import weight_geometry, without_taps
from dirac_core.normalize import working_eps
from dirac_core.xp import work_dtype

from .fused_math import (
    BLOCK,
    fold_eps,
    ncrelu_layout,
    unit_scales,
    weight_split,
)

SOURCE = Path(__file__).with_name("dirac_kernels.cu")

_MAX_GRID = 65535  # grid-stride loops cover the rest

CUDA_TYPES: dict[str, str] = {"float64": "double", "float32": "float", "float16": "__half"}
"""dtype name -> storage type in the CUDA source (the arithmetic is double for all three).
Other dtypes (bfloat16) have no kernels: the backend runs the generic path for them."""

SCALE_KINDS: dict[str, int] = {"float64": 0, "float32": 1, "float16": 2}
"""How a scale's dtype is told to the kernels (``scale_at`` in the source)."""

KERNELS = ("dirac_weight_forward", "dirac_weight_backward", "reduce_narrow", "ncrelu_forward",
           "ncrelu_backward", "fold_batchnorm")

OPTIONS = ("-fmad=false",)
"""NVRTC options: no fused multiply-adds, so that the kernels round as the mirror does. (CuPy
appends its own, ``-ftz=true`` among them.)"""


def _name(kernel: str, dtype: str) -> str:
    return f"{kernel}<{CUDA_TYPES[dtype]}>"


def name_expressions() -> list[str]:
    """Every template instantiation the backend launches, e.g. ``"ncrelu_forward<__half>"``."""
    return [_name(k, d) for k in KERNELS for d in CUDA_TYPES]


def has_kernels(*arrays: Any) -> bool:
    """Whether the kernels cover every array's dtype (not bfloat16, for one)."""
    return all(a.dtype.name in CUDA_TYPES for a in arrays)


@cache
def _module(device_id: int) -> Any:
    import cupy

    module = cupy.RawModule(
        code=SOURCE.read_text(), options=OPTIONS, name_expressions=name_expressions()
    )
    module.compile()  # compile now, so a failure surfaces at the first launch, not later
    return module


def compile_for(device_id: int) -> None:
    """Compile the kernels for a device (raises what CuPy raises: its compile error, or the
    RuntimeError/ImportError of a missing NVRTC or CUDA headers)."""
    _module(device_id)


def compile_for_current_device() -> None:
    """:func:`compile_for` the current device."""
    import cupy

    compile_for(cupy.cuda.Device().id)


@cache
def _function(device_id: int, name: str) -> Any:
    return _module(device_id).get_function(name)


def _device_of(x: Any) -> int:
    return int(x.device.id)


def _launch(kernel: str, like: Any, grid: tuple[int], args: tuple[Any, ...]) -> None:
    """Launch ``kernel`` for ``like``'s dtype on ``like``'s device; nothing for an empty grid."""
    if grid[0] == 0:
        return
    _function(_device_of(like), _name(kernel, like.dtype.name))(grid, (BLOCK,), args)


def _scale(x: Any) -> tuple[Any, np.int32, np.int64]:
    """A 0-d or ``(O,)`` scale as the kernels read it: itself (no conversion kernel, which CuPy
    compiles with flush-to-zero), its kind, and its step (0 for a scalar)."""
    import cupy

    return cupy.ascontiguousarray(x), np.int32(SCALE_KINDS[x.dtype.name]), np.int64(x.ndim)


def _eps(eps: float, dtype: str) -> np.float64:
    """``eps`` in the working dtype's positive finite range, as the reference takes it."""
    return np.float64(working_eps(eps, work_dtype(np.dtype(dtype))))


STAGES = {"all": 0, "max": 1, "squares": 2, "sums": 3, "output": 4}
"""The weight kernels' stages (``STAGE_*`` in the source)."""

PARTIALS = 6
"""Doubles of partial results per block of a split filter (``PARTIALS`` in the source)."""


def _stages(parts: int, normalize: bool, backward: bool) -> list[str]:
    """The launches of a weight kernel: one for whole filters, else one per reduction."""
    if parts == 1:
        return ["all"]
    reductions = ["max", "squares"] if normalize else []
    return [*reductions, *(["sums"] if backward else []), "output"]


def _weight_launches(kernel: str, w: Any, geo: Any, normalize: bool, head: tuple[Any, ...],
                     tail: tuple[Any, ...]) -> None:
    """Launch a weight kernel, whole filters (one block each) or split ones (``parts`` blocks
    each, a launch per stage, partial results in a float64 workspace)."""
    import cupy

    parts, chunk = weight_split(geo.out_channels, geo.length)
    partial = cupy.empty(PARTIALS * geo.out_channels * parts if parts > 1 else 1, np.float64)
    for stage in _stages(parts, normalize, kernel.endswith("backward")):
        _launch(kernel, w, (geo.out_channels * parts,), (
            *head, np.int64(geo.length), np.int64(chunk), np.int64(parts), partial,
            np.int32(STAGES[stage]), *tail,
        ))


def dirac_weight(
    w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool, groups: int, policy: str,
    identity: bool = True,
) -> Any:
    """``alpha * delta + beta * normalize(W)``: one launch, one block per filter (a launch per
    reduction when few long filters are split, see :func:`fused_math.weight_split`). Without
    ``identity``, ``beta * normalize(W)`` alone: the kernel is given no taps."""
    import cupy

    w = cupy.ascontiguousarray(w)
    geo = weight_geometry(w.shape, groups, policy)
    out = cupy.empty_like(w)
    taps = geo if identity else without_taps(geo)
    _weight_launches("dirac_weight_forward", w, geo, normalize,
                     (w, *_scale(alpha), *_scale(beta), out),
                     (*_geometry_args(taps), _eps(eps, w.dtype.name), np.int32(normalize)))
    return out


def weight_backward(
    g: Any, w: Any, beta: Any, *, eps: float, normalize: bool, groups: int, policy: str
) -> tuple[Any, Any]:
    """``dW`` and the per-filter parts ``(2, O)`` of ``dalpha`` and ``dbeta``: one launch (a
    launch per reduction for split filters)."""
    import cupy

    w, g = cupy.ascontiguousarray(w), cupy.ascontiguousarray(g)
    geo = weight_geometry(w.shape, groups, policy)
    dw = cupy.empty_like(w)
    scale_parts = cupy.empty((2, geo.out_channels), dtype=np.float64)
    _weight_launches("dirac_weight_backward", w, geo, normalize,
                     (g, w, *_scale(beta), dw, scale_parts[0], scale_parts[1]),
                     (*_geometry_args(geo), _eps(eps, w.dtype.name), np.int32(normalize)))
    return dw, scale_parts


def dirac_weight_vjp(
    g: Any, w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool, groups: int,
    policy: str,
) -> tuple[Any, Any, Any]:
    """``(dW, dalpha, dbeta)``: the backward launch, then one launch per scale summing its
    parts over ``O`` (a scalar scale) and rounding to the scale's dtype."""
    dw, parts = weight_backward(
        g, w, beta, eps=eps, normalize=normalize, groups=groups, policy=policy
    )
    return dw, _reduce_narrow(parts[0], alpha), _reduce_narrow(parts[1], beta)


def normalize_filters_vjp(g: Any, w: Any, *, eps: float) -> Any:
    """``dW`` of filter normalization: the backward launch only (``beta = 1``); the scale
    gradients it does not need are neither summed nor rounded."""
    _, one = unit_scales(w)
    dw, _ = weight_backward(g, w, one, eps=eps, normalize=True, groups=1, policy="tile")
    return dw


def _reduce_narrow(part: Any, like: Any) -> Any:
    """A float64 ``(O,)`` gradient part in ``like``'s shape and dtype: summed over ``O`` for a
    scalar ``like``, rounded by the ``reduce_narrow`` kernel."""
    import cupy

    out = cupy.empty(like.shape, dtype=like.dtype)
    # A scalar's gradient over no filters is an empty sum: one output, count 0, written 0.
    total, count = (1, part.size) if like.ndim == 0 else (part.size, 1)
    _launch("reduce_narrow", out, (min(total, _MAX_GRID),),
            (cupy.ascontiguousarray(part), out, np.int64(total), np.int64(count)))
    return out


def fold_batchnorm(
    weight: Any, bias: Any, gamma: Any, beta: Any, mean: Any, var: Any, *, eps: float
) -> tuple[Any, Any]:
    """``(W', b')`` of batch-norm folding in one launch, computed in double."""
    import cupy

    weight = cupy.ascontiguousarray(weight)
    vectors = [cupy.ascontiguousarray(v) for v in (gamma, beta, mean, var)]
    out_weight, out_bias = cupy.empty_like(weight), cupy.empty_like(vectors[0])
    out_channels = weight.shape[0]
    length = weight.size // out_channels if out_channels else 0
    has_bias = bias is not None
    bias = cupy.ascontiguousarray(bias) if has_bias else vectors[2]  # unread without a bias
    _launch("fold_batchnorm", weight, _grid(max(weight.size, out_channels)), (
        weight, bias, np.int32(has_bias), *vectors, out_weight, out_bias,
        np.int64(out_channels), np.int64(length), fold_eps(eps, weight.dtype),
    ))
    return out_weight, out_bias


def _geometry_args(geo: Any) -> tuple[Any, ...]:
    *sizes, policy_min = geo.delta_args()
    return (*(np.int64(s) for s in sizes), np.int32(policy_min))


def _grid(total: int) -> tuple[int]:
    """Blocks for a grid-stride loop over ``total`` entries (none for none)."""
    return (min(-(-total // BLOCK), _MAX_GRID),)


def ncrelu(x: Any, *, axis: int) -> Any:
    """NCReLU in one pass over ``x``: each thread writes both halves of its entry."""
    import cupy

    x = cupy.ascontiguousarray(x)
    layout = ncrelu_layout(x.shape, axis)
    shape = (*x.shape[:axis], 2 * x.shape[axis], *x.shape[axis + 1 :])
    y = cupy.empty(shape, dtype=x.dtype)
    _launch("ncrelu_forward", x, _grid(layout.total),
            (x, y, np.int64(layout.total), np.int64(layout.block)))
    return y


def ncrelu_vjp(g: Any, x: Any, *, axis: int) -> Any:
    """``dx``: the positive-half gradient where ``x > 0``, the negative half where ``x < 0``."""
    import cupy

    g, x = cupy.ascontiguousarray(g), cupy.ascontiguousarray(x)
    layout = ncrelu_layout(x.shape, axis)
    dx = cupy.empty_like(x)
    _launch("ncrelu_backward", x, _grid(layout.total),
            (g, x, dx, np.int64(layout.total), np.int64(layout.block)))
    return dx
