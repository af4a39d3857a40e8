"""The array namespace of the inputs and the dtype the arithmetic runs in."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat


def namespace(*arrays: Any) -> ModuleType:
    """The Array API namespace of the (non-None) arrays, through ``array-api-compat``."""
    return array_api_compat.array_namespace(*(a for a in arrays if a is not None))


def work_dtype(xp: ModuleType, dtype: Any) -> Any:
    """float32 for half-precision dtypes (float16, bfloat16), else ``dtype``: half inputs
    accumulate in float32 and are rounded once at the end."""
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def to_work(xp: ModuleType, x: Any) -> Any:
    """``x`` in its working dtype (a new array: inputs are never modified)."""
    return xp.astype(x, work_dtype(xp, x.dtype))


def eps_in(xp: ModuleType, dtype: Any, eps: float, *, subnormals: bool = True) -> float:
    """``eps`` kept inside ``dtype``'s positive finite range, so that neither the comparison
    nor the division by it can overflow to inf or round to zero.

    The floor is the smallest subnormal, or with ``subnormals=False`` the smallest normal
    number, for libraries that flush subnormals to zero (XLA on CPU does).
    """
    info = xp.finfo(dtype)
    floor = float(info.smallest_normal) * (float(info.eps) if subnormals else 1.0)
    return min(max(eps, floor), float(info.max))
