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

float16 and bfloat16 must accumulate in float32 and be *rounded once* at the end (the spec).
Such a result is the half-precision rounding of a float32 value within ``a_i = rtol_float32
sqrt(max(n, 1)) m_i`` of the reference, and rounding to nearest is monotone, so it lies in

.. math::

    [\\mathrm{round}_d(r_i - a_i),\\ \\mathrm{round}_d(r_i + a_i)]

and the allowed error ``b_i`` is the distance from ``r_i`` to the end of that interval on the
side of ``got_i``. This is exact, not an estimate: a result rounded once always passes, and a
result rounded twice (an intermediate rounded to the dtype, then rounded again) lands one unit
in the last place outside the interval whenever the two roundings disagree, at many times the
tolerance (``docs/conformance.md`` reports the factor per op). A backend that *accumulates* in
half precision fails by orders of magnitude on the suite's long sums: a sequential float16 sum
of 4096 ones stops growing at 2048; one whose partial sums pass 65504 becomes inf.

An element conforms when ``|got_i - r_i| <= b_i``; the suite reports ``e = max_i
|got_i - r_i| / b_i``, the share of the tolerance used (``e <= 1`` passes). Exact ops (the
Dirac tensor, NCReLU and its VJP, the identities) must match bit for bit in value. A NaN or
infinity where the reference is finite is a failure, unless the reference is beyond the dtype's
range: then the dtype's infinity of the same sign is the correct result; or unless the terms'
magnitudes sum past the range of the dtype the result is accumulated in (float32 for float32
and half precision), where partial sums may overflow on the way to a total within it. Where
the reference is NaN (non-finite input, ``docs/spec.md``) the result must be NaN; where it is
infinite, the same infinity or NaN.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dtypes import round_to, smallest_normal

RTOL: dict[str, float] = {
    "float64": 2e-13,  # ~1800 u: float64 backends may reassociate sums freely
    "float32": 2e-6,  # ~34 u
    "float16": 2e-6,  # accumulated in float32 (the final rounding is ROUNDING)
    "bfloat16": 2e-6,  # accumulated in float32 (the final rounding is ROUNDING)
}
"""Per-dtype relative tolerance of the accumulation, applied per ``sqrt(n)`` terms."""

ROUNDED_ONCE = ("float16", "bfloat16")
"""The dtypes whose results are float32 values rounded once to the dtype (see the module
docstring): their tolerance is the rounding interval, not a relative bound."""


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
    dtype : str or None
        The precision this output is held to, when not the op's dtype (a scale's gradient).
    native : object
        The backend's own result (``None`` when not kept), for checks that write into it.
    nonfinite : str
        What a non-finite reference element demands: ``"ieee"``, NaN where it is NaN and the
        same infinity (or NaN) where it is infinite; ``"any"``, some inf or NaN (results a
        non-finite cotangent reaches, whose kind depends on the order of arithmetic);
        ``"free"``, nothing (an element the spec leaves open). With ``"any"`` and ``"free"``
        a non-finite result passes anywhere (the cotangent spread): over a reference in the
        dtype's range, and as NaN where the reference lies beyond it.
    signed_zeros : bool
        For an exact output: a zero must also have the reference's sign (NCReLU, whose zero
        signs the spec fixes); otherwise ``-0.0 == 0.0``.
    """

    name: str
    got: np.ndarray | None
    ref: np.ndarray | None
    magnitude: np.ndarray | None = None
    terms: int = 1
    dtype: str | None = None
    native: Any = field(default=None, repr=False, compare=False)
    nonfinite: str = "ieee"
    signed_zeros: bool = False


class Mismatch(AssertionError):
    """A backend's result differs from the reference beyond the tolerance.

    ``error`` is the share of the tolerance the failing element used (``inf`` for an exact
    output that differs, a non-finite value, or a wrong shape, type or dtype); ``output`` names
    the output (``""`` when the failure is not about one output's values).
    """

    def __init__(self, message: str, error: float = math.inf, output: str = "") -> None:
        super().__init__(message)
        self.error = error
        self.output = output


def bound(ref: np.ndarray, magnitude: np.ndarray, terms: int, dtype: str) -> np.ndarray:
    """The allowed absolute error of each element of a float64 or float32 result (see the
    module docstring; half-precision results use :func:`interval`).

    Examples
    --------
    >>> float(bound(np.array(1.0), np.array(1.0), 4, "float32"))
    4e-06
    """
    root = math.sqrt(max(terms, 1))
    mag = np.abs(np.broadcast_to(magnitude, np.shape(ref)))
    return np.asarray(RTOL[dtype] * root * np.maximum(mag, smallest_normal(dtype)))


def interval(ref: np.ndarray, magnitude: np.ndarray, terms: int, dtype: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: the results each element may take (inclusive, float64; infinite where the
    interval passes the dtype's range).

    float64 and float32: ``ref -+`` :func:`bound`. float16 and bfloat16: the roundings to the
    dtype of ``ref -+ a``, ``a`` float32's accumulation error (a result rounded once from an
    accurate float32 value lies there, and nothing else does).

    Examples
    --------
    >>> lo, hi = interval(np.array(1.0 + 2.0**-12), np.array(1.0), 1, "float16")
    >>> float(lo), float(hi)                  # the one float16 1.0 + 2**-12 rounds to
    (1.0, 1.0)
    """
    ref = np.asarray(ref, dtype=np.float64)
    if dtype not in ROUNDED_ONCE:
        b = bound(ref, magnitude, terms, dtype)
        return ref - b, ref + b
    a = RTOL["float32"] * math.sqrt(max(terms, 1)) * np.abs(np.broadcast_to(magnitude,
                                                                            ref.shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rounding past the range gives inf
        return round_to(ref - a, dtype), round_to(ref + a, dtype)


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
        raise Mismatch(f"{out.name}: got {_describe(out.got)}, expected {_describe(out.ref)}",
                       output=out.name)
    errors = _errors(out, dtype)
    return float(errors.max(initial=0.0))


def _errors(out: Output, dtype: str) -> np.ndarray:
    """Per-element shares of the tolerance (``inf`` for an exact output that differs)."""
    got = np.asarray(out.got, dtype=np.float64)
    ref = np.asarray(out.ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise Mismatch(f"{out.name}: got shape {got.shape}, expected {ref.shape}",
                       output=out.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflowing the dtype is the point
        in_range = np.isfinite(round_to(ref, dtype))
    if out.nonfinite != "ieee":
        # A non-finite cotangent may spread past what it reaches (0 * inf is NaN): a
        # non-finite result over a finite reference is not held against the backend.
        got = np.where(in_range & ~np.isfinite(got), ref, got)
    elif out.magnitude is not None:
        # Terms whose magnitudes sum past the working dtype's range may overflow on the way
        # to a total within it, depending on the order of summation.
        got = np.where(in_range & ~np.isfinite(got) & _overflowing(out.magnitude, ref, dtype),
                       ref, got)
    bad = ~np.isfinite(got) & in_range
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise Mismatch(f"{out.name} ({dtype}) at {list(index)}: got {float(got[index])!r}, "
                       f"expected {float(ref[index])!r} (finite in {dtype})", output=out.name)
    # Beyond the dtype's range the correct result is the infinity of the same sign. Where the
    # reference itself is NaN (non-finite input) the result must be NaN; where it is infinite,
    # the same infinity or NaN (a sum with an infinite term is NaN once finite partial sums
    # overflow the other way, which depends on the dtype and the order of summation).
    with np.errstate(invalid="ignore"):
        special = np.where(np.isnan(ref), np.isnan(got), (got == np.copysign(np.inf, ref))
                           | (np.isinf(ref) & np.isnan(got)))
    if out.nonfinite != "ieee":
        # Beyond the dtype's range counts too: a spread NaN may land where inf was due.
        loose = ~in_range & (~np.isfinite(got) | (out.nonfinite == "free"))
        special = special | loose
    outside = np.where(special, 0.0, np.inf)
    if out.magnitude is None:
        same = got == ref
        if out.signed_zeros:
            same &= np.signbit(got) == np.signbit(ref)
        return np.where(in_range, np.where(same, 0.0, np.inf), outside)
    return np.where(in_range, _shares(got, ref, out, dtype), outside)


def _overflowing(magnitude: np.ndarray, ref: np.ndarray, dtype: str) -> np.ndarray:
    """Where the condition magnitude (the sum of the terms' absolute values) passes the range
    of the dtype results in ``dtype`` are accumulated in (float64 for float64, else
    float32)."""
    top = float(np.finfo(np.float64 if dtype == "float64" else np.float32).max)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.abs(np.broadcast_to(magnitude, ref.shape)) > top)


def _shares(got: np.ndarray, ref: np.ndarray, out: Output, dtype: str) -> np.ndarray:
    """``|got - ref|`` over the distance from ``ref`` to the end of the allowed interval on
    ``got``'s side (elements where the reference is finite and within the dtype's range)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        mag = np.where(np.isfinite(ref), np.asarray(out.magnitude, dtype=np.float64), 0.0)
        lo, hi = interval(np.where(np.isfinite(ref), ref, 0.0), mag, out.terms, dtype)
        allowed = np.where(got > ref, hi - ref, ref - lo)
        share = np.abs(got - ref) / allowed
    # got == ref uses none of it (also when nothing is allowed); an infinity inside the
    # interval (a result rounding past the range) all of it.
    return np.where(got == ref, 0.0, np.where(np.isnan(share), 1.0, share))


def check_outputs(outputs: list[Output], dtype: str) -> float:
    """The worst share of the tolerance over ``outputs``; raise :class:`Mismatch` naming every
    output with an element beyond its bound (each with its worst element).

    Examples
    --------
    >>> check_outputs([Output("y", np.ones(2), np.ones(2), np.ones(2))], "float64")
    0.0
    """
    worst, bad = 0.0, []
    for out in outputs:
        held = out.dtype or dtype
        err = relative_error(out, held)
        if err > 1.0:
            bad.append((out, held, err))
        worst = max(worst, err)
    if bad:
        raise Mismatch("\n".join(_explain(out, held, err) for out, held, err in bad),
                       max(err for _, _, err in bad), ", ".join(out.name for out, _, _ in bad))
    return worst


def _explain(out: Output, dtype: str, err: float) -> str:
    errors = _errors(out, dtype)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(errors)), errors.shape))
    got = float(np.asarray(out.got, dtype=np.float64)[index])
    ref = float(np.asarray(out.ref, dtype=np.float64)[index])
    where = f"{out.name} ({dtype}), worst at {list(index)}: got {got!r}, expected {ref!r}"
    with np.errstate(over="ignore"):
        beyond = math.isfinite(ref) and not math.isfinite(float(round_to(np.array(ref), dtype)))
    if beyond:  # the reference overflows the dtype: its infinity is the one correct result
        return (f"{where}, beyond {dtype}'s range, so the result must be "
                f"{math.copysign(math.inf, ref)!r}")
    if out.magnitude is None or not math.isfinite(ref):
        return f"{where}; exact op" if out.magnitude is None else where
    mag = np.broadcast_to(np.asarray(out.magnitude, np.float64), errors.shape)[index]
    lo, hi = interval(np.array(ref), mag, out.terms, dtype)
    allowed = float(hi) - ref if got > ref else ref - float(lo)
    return (f"{where}; |got - expected| = {abs(got - ref):.3g}, tolerance {allowed:.3g}: "
            f"error {err:.3g} x the tolerance")


def _describe(x: np.ndarray | None) -> str:
    return "None" if x is None else f"an array of shape {np.shape(x)}"
