"""The tolerance model: how far a backend's result may be from the float64 reference.

Each output element ``y`` of an op is a sum of ``n`` terms (``n = 1`` for elementwise ops).
The reference ``r`` is computed in float64 from the very inputs the backend received (already
rounded to the tested dtype), so any difference is the backend's own rounding. Classical error
analysis bounds that by ``~ n * u * m`` where ``u`` is the unit roundoff of the dtype the sum
is *accumulated* in and ``m`` the sum of the *absolute values* of the terms (the condition
magnitude: the op evaluated on ``|inputs|``). Rounding errors behave like a random walk, so
we allow ``sqrt(n)`` rather than ``n``.

float64 and float32 accumulate in themselves; each element may differ by

.. math::

    b_i = \\mathrm{rtol}_d \\sqrt{\\max(n, 1)} \\max(m_i, t_d)

with ``t_d`` the smallest normal number of the dtype (below it precision degrades gracefully)
and ``rtol_d`` (:data:`RTOL`) a few units of roundoff: float64 ``2e-13``, float32 ``2e-6``.

float16 and bfloat16 must accumulate in float32 and be *rounded once* at the end (the spec),
so their bound has two parts, the float32 accumulation and one rounding to the dtype:

.. math::

    b_i = u_d |r_i| + \\mathrm{rtol}_{float32} \\sqrt{\\max(n, 1)} m_i + s_d / 2

with ``u_d`` the dtype's unit roundoff (:data:`ROUNDING`: ``2**-11`` for float16, ``2**-8``
for bfloat16) and ``s_d`` its smallest subnormal (the absolute rounding error of a subnormal
result). A backend that *accumulates* in half precision fails this by orders of magnitude on
the suite's long sums (see ``docs/conformance.md``): a sequential float16 sum of 4096 ones
stops growing at 2048, 800 times the bound; one whose partial sums pass 65504 becomes inf.

An element conforms when ``|got_i - r_i| <= b_i``; the suite reports ``e = max_i
|got_i - r_i| / b_i``, the share of the tolerance used (``e <= 1`` passes). Exact ops (the
Dirac tensor, NCReLU and its VJP, the identities) must match bit for bit in value. A NaN or
infinity where the reference is finite is a failure, unless the reference is beyond the dtype's
range: then the dtype's infinity of the same sign is the correct result.
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
    "float16": 2e-6,  # accumulated in float32 (the final rounding is ROUNDING)
    "bfloat16": 2e-6,  # accumulated in float32 (the final rounding is ROUNDING)
}
"""Per-dtype relative tolerance of the accumulation, applied per ``sqrt(n)`` terms."""

ROUNDING: dict[str, float] = {"float64": 0.0, "float32": 0.0, "float16": 2.0**-11,
                              "bfloat16": 2.0**-8}
"""The one final rounding a half-precision result may carry, relative to the result (the
dtype's unit roundoff); 0 where the accumulation bound already covers it."""

_SMALLEST_SUBNORMAL = {"float16": 2.0**-24, "bfloat16": 2.0**-133}


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
    """A backend's result differs from the reference beyond the tolerance.

    ``error`` is the share of the tolerance the failing element used (``inf`` for an exact
    output that differs, a non-finite value, or a wrong shape, type or dtype).
    """

    def __init__(self, message: str, error: float = math.inf) -> None:
        super().__init__(message)
        self.error = error


def bound(ref: np.ndarray, magnitude: np.ndarray, terms: int, dtype: str) -> np.ndarray:
    """The allowed absolute error ``b_i`` of each element (see the module docstring).

    Examples
    --------
    >>> round(float(bound(np.array(4096.0), np.array(4096.0), 4096, "float16")), 3)
    2.524
    """
    root = math.sqrt(max(terms, 1))
    mag = np.abs(np.broadcast_to(magnitude, np.shape(ref)))
    if not ROUNDING[dtype]:
        return np.asarray(RTOL[dtype] * root * np.maximum(mag, smallest_normal(dtype)))
    return np.asarray(ROUNDING[dtype] * np.abs(ref) + RTOL[dtype] * root * mag
                      + _SMALLEST_SUBNORMAL[dtype] / 2)


def relative_error(out: Output, dtype: str) -> float:
    """The share of the tolerance used by the worst element of one output; 0 if equal.

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
    """Per-element shares of the tolerance (``inf`` for an exact output that differs)."""
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
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.abs(got - ref) / bound(ref, out.magnitude, out.terms, dtype)
    return np.where(in_range, scaled, overflowed)


def check_outputs(outputs: list[Output], dtype: str) -> float:
    """The worst share of the tolerance over ``outputs``; raise :class:`Mismatch` if any
    element exceeds its bound.

    Examples
    --------
    >>> check_outputs([Output("y", np.ones(2), np.ones(2), np.ones(2))], "float64")
    0.0
    """
    worst = 0.0
    for out in outputs:
        err = relative_error(out, dtype)
        if err > 1.0:
            raise Mismatch(_explain(out, dtype, err), err)
        worst = max(worst, err)
    return worst


def _explain(out: Output, dtype: str, err: float) -> str:
    errors = _errors(out, dtype)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(errors)), errors.shape))
    got = np.asarray(out.got, dtype=np.float64)[index]
    ref = np.asarray(out.ref, dtype=np.float64)[index]
    kind = "exact op" if out.magnitude is None else f"error {err:.3g} x the tolerance"
    return f"{out.name} ({dtype}): {kind}; worst at {list(index)}: got {got!r}, expected {ref!r}"


def _describe(x: np.ndarray | None) -> str:
    return "None" if x is None else f"an array of shape {np.shape(x)}"
