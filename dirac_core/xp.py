"""The array module of the inputs, so the reference runs unchanged under CuPy."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def array_module(*arrays: Any) -> ModuleType:
    """``cupy`` if any argument is a CuPy array, else ``numpy`` (cupy is never imported here
    unless one of its arrays is passed in)."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy

            module: ModuleType = cupy
            return module
    return np


def work_dtype(dtype: Any) -> np.dtype:
    """The dtype arithmetic runs in: at least float32 (half inputs accumulate in float32)."""
    return np.promote_types(dtype, np.float32)
