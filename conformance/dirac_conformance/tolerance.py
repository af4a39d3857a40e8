"""The tolerance model: how far a backend's result may be from the float64 reference.

Each output element ``y`` of an op is a sum of ``n`` terms (``n = 1`` for elementwise ops).
The reference ``r`` is computed in float64 from the very inputs the backend received (already
rounded to the tested dtype), so any difference is the backend's own rounding. Classical error
analysis bounds that by ``~ n * u * m`` where ``u`` is the unit roundoff and ``m`` the sum of
the *absolute values* of the terms (the condition magnitude: the op evaluated on ``|inputs|``).
Rounding errors behave like a random walk, so we allow ``sqrt(n)`` rather than ``n``:

.. math::

    e = \\max_i \\frac{|y_i - r_i|}{\\sqrt{\\max(n, 1)} \\cdot \\max(m_i, t)} \\le \\mathrm{rtol}_d

with ``t`` the smallest normal number of the dtype (below it precision degrades gracefully) and
``rtol_d`` per dtype (:data:`RTOL`, a few units of roundoff: float64 ``2e-13``, float32
``2e-6``, float16 ``2e-3``, bfloat16 ``1.6e-2``). ``e`` is the "worst relative error" the suite
reports. Exact ops (the Dirac tensor, NCReLU and its VJP) must match bit for bit in value.
A NaN or infinity where the reference is finite is a failure, unless the reference is beyond
the dtype's range: then the dtype's infinity of the same sign is the correct result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .dtypes import round_to, smallest_normal

RTOL: dict[str, float] = {
    "float64": 2e-13,  # ~1800 u: float64 backends may reassociate sums freely
    "float32": 2e-6,  # ~34 u
    "float16": 2e-3,  # ~4 u (half inputs must accumulate in at least float32)
    "bfloat16": 1.6e-2,  # ~4 u
}
"""Per-dtype relative tolerance, applied per ``sqrt(n)`` terms of accumulation."""


@dataclass(frozen=True)
class Output:
    """One array an op returned, with what it is checked against.

    Attributes
    ----------
    name : str
        Which output (``"y"``, ``"dw"``, ...), for messages.
    got : numpy.ndarray or None
        The backend's result converted to NumPy (``None`` if the backend returned None).
    ref : numpy.ndarray or None
        The float64 reference on the same inputs.
    magnitude : numpy.ndarray or None
        The condition magnitude ``m`` (broadcastable to ``ref``); ``None`` for exact outputs.
    terms : int
        ``n``, the number of terms summed into each element.
    """

    name: str
    got: np.ndarray | None
    ref: np.ndarray | None
    magnitude: np.ndarray | None = None
    terms: int = 1


class Mismatch(AssertionError):
    """A backend's result differs from the reference beyond the tolerance."""


def relative_error(out: Output, dtype: str) -> float:
    """The worst scaled error ``e`` of one output (see the module docstring); 0 if equal.

    Raises
    ------
    Mismatch
        Shapes differ, one side is None and the other is not, or ``got`` is non-finite where
        the reference is finite in ``dtype``.
    """
    if out.got is None or out.ref is None:
        if out.got is out.ref:
            return 0.0
        raise Mismatch(f"{out.name}: got {_describe(out.got)}, expected {_describe(out.ref)}")
    errors = _errors(out, dtype)
    return float(errors.max(initial=0.0))


def _errors(out: Output, dtype: str) -> np.ndarray:
    """Per-element scaled errors (``inf`` for an exact output that differs)."""
    got = np.asarray(out.got, dtype=np.float64)
    ref = np.asarray(out.ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise Mismatch(f"{out.name}: got shape {got.shape}, expected {ref.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflowing the dtype is the point
        in_range = np.isfinite(round_to(ref, dtype))
    bad = ~np.isfinite(got) & in_range
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise Mismatch(f"{out.name}{list(index)}: got {got[index]!r}, expected {ref[index]!r}")
    if out.magnitude is None:
        return np.where(got == ref, 0.0, np.inf)
    # Beyond the dtype's range the correct result is the infinity of the same sign.
    overflowed = np.where(got == np.sign(ref) * np.inf, 0.0, np.inf)
    denom = np.maximum(np.abs(np.broadcast_to(out.magnitude, ref.shape)), smallest_normal(dtype))
    with np.errstate(invalid="ignore"):
        scaled = np.abs(got - ref) / denom / math.sqrt(max(out.terms, 1))
    return np.where(in_range, scaled, overflowed)


def check_outputs(outputs: list[Output], dtype: str) -> float:
    """The worst error over ``outputs``; raise :class:`Mismatch` if any exceeds ``RTOL[dtype]``.

    Examples
    --------
    >>> check_outputs([Output("y", np.ones(2), np.ones(2), np.ones(2))], "float64")
    0.0
    """
    worst = 0.0
    for out in outputs:
        err = relative_error(out, dtype)
        if err > RTOL[dtype]:
            raise Mismatch(_explain(out, dtype, err))
        worst = max(worst, err)
    return worst


def _explain(out: Output, dtype: str, err: float) -> str:
    errors = _errors(out, dtype)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(errors)), errors.shape))
    got = np.asarray(out.got, dtype=np.float64)[index]
    ref = np.asarray(out.ref, dtype=np.float64)[index]
    kind = "exact op" if out.magnitude is None else f"error {err:.3g} > rtol {RTOL[dtype]:g}"
    return f"{out.name} ({dtype}): {kind}; worst at {list(index)}: got {got!r}, expected {ref!r}"


def _describe(x: object) -> str:
    return "None" if x is None else f"an array of shape {np.shape(x)}"
