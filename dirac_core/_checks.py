"""Argument checks shared by the public API: every user-facing error is raised here.

Messages name the argument, the value given and what is accepted, so that every backend fails
in the same words.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np

FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
POLICIES = ("tile", "min")


def as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer (Python or NumPy, not bool), else None."""
    if isinstance(value, bool | np.bool_):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def is_real(value: Any) -> bool:
    """A real scalar: Python or NumPy int/float, not bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def is_python_or_numpy_scalar(value: Any) -> bool:
    """A real number that is not an array: ``1``, ``2.5``, ``np.float32(2)``, ``np.int64(1)``."""
    return is_real(value) and (not hasattr(value, "shape") or isinstance(value, np.generic))


def dtype_name(dtype: Any) -> str:
    """The name of a dtype object (NumPy, CuPy or torch) or string, e.g. ``"float32"``."""
    if isinstance(dtype, str):
        if dtype in FLOAT_DTYPES:
            return dtype
        try:
            return np.dtype(dtype).name  # "f4", "double", ...
        except TypeError:
            return dtype
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(dtype, type):  # a NumPy scalar type such as np.float32
        return np.dtype(dtype).name
    return str(dtype).rsplit(".", 1)[-1]  # torch.float32 -> "float32"


def array_dtype(x: Any) -> str:
    return dtype_name(x.dtype)


def shape_of(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def require_array(x: Any, name: str) -> None:
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}: {x!r:.80}")


def require_float(x: Any, name: str) -> str:
    """Check that ``x`` is a floating array; return its dtype name."""
    require_array(x, name)
    dt = array_dtype(x)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a floating dtype {FLOAT_DTYPES}, got dtype {dt}")
    return dt


def require_same_dtype(dt: str, other: Any, name: str, ref_name: str) -> None:
    got = require_float(other, name)
    if got != dt:
        raise TypeError(f"{name} has dtype {got} but {ref_name} has {dt}; they must match")


def require_ndim(x: Any, name: str, minimum: int, what: str) -> tuple[int, ...]:
    shape = shape_of(x)
    if len(shape) < minimum:
        raise ValueError(f"{name} must have at least {minimum} dims ({what}), got shape {shape}")
    return shape


def require_nonempty(x: Any, name: str, what: str) -> tuple[int, ...]:
    """Every dim of ``x`` is >= 1 (a weight with no filters or an empty kernel is an error)."""
    shape = shape_of(x)
    if 0 in shape:
        raise ValueError(f"{name} has shape {shape}; every dim must be >= 1 ({what})")
    return shape


def require_shape(x: Any, name: str, expected: tuple[int, ...], what: str) -> None:
    shape = shape_of(x)
    if shape != expected:
        raise ValueError(f"{name} has shape {shape}; expected {expected} ({what})")


def positive_int(value: Any, name: str) -> int:
    number = as_int(value)
    if number is None:
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}: {value!r}")
    if number < 1:
        raise ValueError(f"{name} must be a positive int, got {number}")
    return number


def eps_value(eps: Any, name: str = "eps", *, allow_zero: bool = False) -> float:
    if not is_real(eps):
        raise TypeError(f"{name} must be a float, got {type(eps).__name__}: {eps!r}")
    ok = math.isfinite(eps) and (eps >= 0 if allow_zero else eps > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite float {bound}, got {eps!r}")
    return float(eps)


def bool_value(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return bool(value)


def policy_value(policy: Any) -> str:
    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r} is not accepted; use one of {POLICIES}")
    return policy


def groups_for(groups: Any, out_channels: int, in_channels: int | None = None) -> int:
    """Check ``groups`` divides the output (and, if given, the total input) channel count."""
    groups = positive_int(groups, "groups")
    if out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide the output channel count {out_channels}"
        )
    if in_channels is not None and in_channels % groups:
        raise ValueError(f"groups={groups} must divide the input channel count {in_channels}")
    return groups


def axis_value(axis: Any, ndim: int) -> int:
    number = as_int(axis)
    if number is None:
        raise TypeError(f"axis must be an int, got {type(axis).__name__}: {axis!r}")
    axis = number
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for an array of {ndim} dims")
    return axis % ndim


def scale_shape(value: Any, name: str, out_channels: int) -> tuple[int, ...]:
    """Shape check for alpha/beta: a scalar or a vector of length O."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a real scalar or an array, got bool")
    if is_python_or_numpy_scalar(value):
        return ()
    require_float(value, name)
    shape = shape_of(value)
    if shape not in ((), (out_channels,)):
        raise ValueError(
            f"{name} has shape {shape}; accepted shapes are () (a scalar) or "
            f"({out_channels},) (one per output channel)"
        )
    return shape
