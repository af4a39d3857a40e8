"""The dtypes under test: NumPy representations, rounding, and per-dtype special magnitudes.

Test data is generated in float64 and *rounded* to the tested dtype, so the backend and the
float64 reference see the very same numbers. bfloat16 has no NumPy dtype of its own; it is
represented by ``ml_dtypes.bfloat16`` (the NumPy extension type JAX and ONNX use), imported
only when bfloat16 is tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dirac_core import xp
from dirac_core.validation import FLOAT_DTYPES

SUPPORTED = FLOAT_DTYPES
"""Every floating dtype of the specification; bfloat16 carried by ``ml_dtypes``."""


def numpy_dtype(name: str) -> Any:
    """The NumPy dtype that carries values of ``name`` into ``Backend.from_numpy``.

    Raises
    ------
    ValueError
        ``name`` is not one of :data:`SUPPORTED`.
    """
    if name not in SUPPORTED:
        raise ValueError(f"dtype={name!r} is not testable; accepted: {SUPPORTED}")
    return xp.numpy_dtype(name)


def round_to(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` rounded (to nearest) to ``name`` and returned as float64: exactly the values a
    backend receives.

    >>> float(round_to(np.array(1 + 2.0**-12), "float16"))
    1.0
    """
    return np.asarray(a, dtype=np.float64).astype(numpy_dtype(name)).astype(np.float64)


def smallest_normal(name: str) -> float:
    """The smallest positive normal number of ``name`` (below it, precision degrades)."""
    return {"float64": 2.0**-1022, "float32": 2.0**-126, "float16": 2.0**-14,
            "bfloat16": 2.0**-126}[name]


def huge(name: str) -> float:
    """A magnitude whose square overflows ``name`` while a filter's norm still fits.

    A backend that forms ``sum(v**2)`` naively returns inf/0 here; the spec requires the norm
    computed without overflow (scale by the max-abs first).
    """
    return {"float64": 1e160, "float32": 1e30, "float16": 1e3, "bfloat16": 1e30}[name]


def tiny(name: str) -> float:
    """A normal magnitude whose square underflows to zero in ``name``."""
    return {"float64": 1e-170, "float32": 1e-30, "float16": 1e-4, "bfloat16": 1e-30}[name]
