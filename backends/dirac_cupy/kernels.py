"""Launching the fused CUDA kernels of ``dirac_kernels.cu`` from CuPy.

The source is compiled once per device by NVRTC through :class:`cupy.RawModule`, with one
template instantiation per (kernel, storage dtype) listed by :func:`name_expressions` (CI
compiles the same list with nvcc). Every launcher takes CuPy arrays already validated by the
public API and returns CuPy arrays; the index constants come from
:mod:`dirac_cupy.fused_math`, which also holds the same maths as array code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dirac_core.normalize import working_eps
from dirac_core.xp import work_dtype

from .fused_math import ncrelu_layout, reduce_part, weight_geometry

SOURCE = Path(__file__).with_name("dirac_kernels.cu")

BLOCK = 256  # threads per block; DIRAC_BLOCK in the source
_MAX_GRID = 65535  # grid-stride loops cover the rest

CUDA_TYPES: dict[str, str] = {"float64": "double", "float32": "float", "float16": "__half"}
"""dtype name -> storage type in the CUDA source (the arithmetic is double for all three)."""

SCALE_KINDS: dict[str, int] = {"float64": 0, "float32": 1, "float16": 2}
"""How a scale's dtype is told to the kernels (``scale_at`` in the source)."""

KERNELS = ("dirac_weight_forward", "dirac_weight_backward", "narrow", "ncrelu_forward",
           "ncrelu_backward")


def _name(kernel: str, dtype: str) -> str:
    return f"{kernel}<{CUDA_TYPES[dtype]}>"


def name_expressions() -> list[str]:
    """Every template instantiation the backend launches, e.g. ``"ncrelu_forward<__half>"``."""
    return [_name(k, d) for k in KERNELS for d in CUDA_TYPES]


@cache
def _module(device_id: int) -> Any:
    import cupy

    module = cupy.RawModule(code=SOURCE.read_text(), name_expressions=name_expressions())
    module.compile()  # compile now, so a failure surfaces at the first launch, not later
    return module


def compile_for_current_device() -> None:
    """Compile the kernels for the current device (raises CuPy's compile error if any)."""
    import cupy

    _module(cupy.cuda.Device().id)


def _function(name: str) -> Any:
    import cupy

    return _module(cupy.cuda.Device().id).get_function(name)


def _scale(x: Any) -> tuple[Any, np.int32, np.int64]:
    """A 0-d or ``(O,)`` scale as the kernels read it: itself (no conversion kernel, which CuPy
    compiles with flush-to-zero), its kind, and its step (0 for a scalar)."""
    import cupy

    return cupy.ascontiguousarray(x), np.int32(SCALE_KINDS[x.dtype.name]), np.int64(x.ndim)


def _eps(eps: float, dtype: str) -> np.float64:
    """``eps`` in the working dtype's positive finite range, as the reference takes it."""
    return np.float64(working_eps(eps, work_dtype(np.dtype(dtype))))


def dirac_weight(
    w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool, groups: int, policy: str
) -> Any:
    """``alpha * delta + beta * normalize(W)`` in one launch (one block per filter)."""
    import cupy

    w = cupy.ascontiguousarray(w)
    dtype = w.dtype.name
    geo = weight_geometry(w.shape, groups, policy)
    out = cupy.empty_like(w)
    _function(_name("dirac_weight_forward", dtype))(
        (geo.out_channels,),
        (BLOCK,),
        (
            w, *_scale(alpha), *_scale(beta), out, np.int64(geo.length),
            *_geometry_args(geo), _eps(eps, dtype), np.int32(normalize),
        ),
    )
    return out


def dirac_weight_vjp(
    g: Any, w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool, groups: int,
    policy: str,
) -> tuple[Any, Any, Any]:
    """``(dW, dalpha, dbeta)`` in one launch, plus for each scale a sum over ``O`` (a scalar
    scale) and a launch rounding it to the scale's dtype."""
    import cupy

    w, g = cupy.ascontiguousarray(w), cupy.ascontiguousarray(g)
    dtype = w.dtype.name
    geo = weight_geometry(w.shape, groups, policy)
    dw = cupy.empty_like(w)
    parts = cupy.empty((2, geo.out_channels), dtype=np.float64)
    _function(_name("dirac_weight_backward", dtype))(
        (geo.out_channels,),
        (BLOCK,),
        (
            g, w, *_scale(beta), dw, parts[0], parts[1], np.int64(geo.length),
            *_geometry_args(geo), _eps(eps, dtype), np.int32(normalize),
        ),
    )
    dalpha = _narrow(reduce_part(parts[0], alpha), alpha)
    return dw, dalpha, _narrow(reduce_part(parts[1], beta), beta)


def _narrow(part: Any, like: Any) -> Any:
    """A float64 gradient in ``like``'s dtype, rounded by the ``narrow`` kernel."""
    import cupy

    out = cupy.empty(part.shape, dtype=like.dtype)
    total = part.size
    _function(_name("narrow", like.dtype.name))(
        _grid(total), (BLOCK,), (cupy.ascontiguousarray(part), out, np.int64(total))
    )
    return out


def _geometry_args(geo: Any) -> tuple[Any, ...]:
    *sizes, policy_min = geo.delta_args()
    return (*(np.int64(s) for s in sizes), np.int32(policy_min))


def _grid(total: int) -> tuple[int]:
    return (max(1, min(-(-total // BLOCK), _MAX_GRID)),)


def ncrelu(x: Any, *, axis: int) -> Any:
    """NCReLU in one pass over ``x``: each thread writes both halves of its entry."""
    import cupy

    x = cupy.ascontiguousarray(x)
    layout = ncrelu_layout(x.shape, axis)
    shape = (*x.shape[:axis], 2 * x.shape[axis], *x.shape[axis + 1 :])
    y = cupy.empty(shape, dtype=x.dtype)
    if layout.total:
        _function(_name("ncrelu_forward", x.dtype.name))(
            _grid(layout.total), (BLOCK,), (x, y, np.int64(layout.total), np.int64(layout.block))
        )
    return y


def ncrelu_vjp(g: Any, x: Any, *, axis: int) -> Any:
    """``dx``: the positive-half gradient where ``x > 0``, the negative half where ``x < 0``."""
    import cupy

    g, x = cupy.ascontiguousarray(g), cupy.ascontiguousarray(x)
    layout = ncrelu_layout(x.shape, axis)
    dx = cupy.empty_like(x)
    if layout.total:
        _function(_name("ncrelu_backward", x.dtype.name))(
            _grid(layout.total),
            (BLOCK,),
            (g, x, dx, np.int64(layout.total), np.int64(layout.block)),
        )
    return dx
