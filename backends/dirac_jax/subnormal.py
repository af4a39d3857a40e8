"""Exact power-of-two scaling that XLA's flush to zero cannot touch.

XLA on CPU runs with flush-to-zero and denormals-are-zero: inside a compiled program a
subnormal operand of a float operation reads as 0 and a subnormal result becomes 0 (no flag
turns it off; ``jnp.ldexp`` and ``jnp.frexp`` are wrong on subnormals there too). Reading a
float's bits (``lax.bitcast_convert_type``) and integer arithmetic are exact, so the two
functions here work on bits:

- :func:`exponent`, ``floor(log2|x|)`` of any float, subnormals included (with sentinels for
  zero and non-finite values), from which a caller picks a scale;
- :func:`ldexp`, ``x * 2**n`` correctly rounded (to nearest, ties to even) into a float dtype
  of the caller's choice, for any ``x`` and any result, subnormal input and output included;
- :func:`sign_proxy`, ``x`` with its subnormals raised into the normal range, for comparisons
  with zero.

A caller scales its operands into the normal range, computes there, and scales the results
back with :func:`ldexp` (rounding once into the result's dtype). Both are plain elementwise
integer programs, so they are exact on every platform, with or without a flush.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ZERO_EXPONENT = -(1 << 20)
"""What :func:`exponent` gives for a zero: below every finite exponent."""

NONFINITE_EXPONENT = 1 << 20
"""What :func:`exponent` gives for an infinity or NaN: above every finite exponent."""

_LAYOUTS = {  # bits, stored mantissa bits, exponent bias
    "float64": (64, 52, 1023), "float32": (32, 23, 127), "float16": (16, 10, 15),
    "bfloat16": (16, 7, 127),
}
_UNSIGNED = {16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}


class _Format:
    """The bit layout of a binary float dtype."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = jnp.dtype(dtype)
        self.bits, self.mant, self.bias = _LAYOUTS[self.dtype.name]
        self.top = (1 << (self.bits - 1 - self.mant)) - 1  # exponent field of inf and NaN
        self.uint = _UNSIGNED[self.bits]


def _decode(x: jax.Array, work: Any) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(sign, sig, q, special)``: ``|x| = sig * 2**q`` with the integer significand ``sig``
    (in the unsigned dtype ``work``, zero for zeros), the sign bit, and where ``x`` is inf or
    NaN (``sig`` and ``q`` meaningless there)."""
    f = _Format(x.dtype)
    bits = lax.bitcast_convert_type(x, f.uint).astype(work)
    sign = bits >> (f.bits - 1)
    field = ((bits >> f.mant) & f.top).astype(jnp.int32)
    fraction = bits & ((1 << f.mant) - 1)
    sig = jnp.where(field > 0, fraction | (1 << f.mant), fraction).astype(work)
    q = jnp.maximum(field, 1) - f.bias - f.mant
    return sign, sig, q, field == f.top


def _work(*formats: _Format) -> Any:
    return jnp.uint64 if max(f.bits for f in formats) > 32 else jnp.uint32


def _log2(sig: jax.Array) -> jax.Array:
    """``floor(log2 sig)`` of a positive integer array (-1 for zero), as int32."""
    width = np.iinfo(sig.dtype).bits
    return (width - 1 - lax.clz(sig)).astype(jnp.int32)


def exponent(x: jax.Array) -> jax.Array:
    """``floor(log2|x|)`` of each element as int32, read from its bits: exact for subnormals
    too; :data:`ZERO_EXPONENT` for zeros, :data:`NONFINITE_EXPONENT` for infinities and NaN.

    The exponent is monotone in ``|x|`` (zeros lowest, non-finite highest), so the maximum over
    a filter is the exponent of its max-abs.

    Parameters
    ----------
    x : jax.Array
        A float array (float16, bfloat16, float32 or float64).

    Returns
    -------
    jax.Array
        int32, ``x``'s shape.

    Examples
    --------
    >>> import numpy as np
    >>> exponent(jnp.array([1.0, 3.0, 1e-45, 0.0, np.inf], jnp.float32)).tolist()
    [0, 1, -149, -1048576, 1048576]
    """
    sign, sig, q, special = _decode(x, _work(_Format(x.dtype)))
    del sign
    e = jnp.where(sig == 0, ZERO_EXPONENT, _log2(sig) + q)
    return jnp.where(special, NONFINITE_EXPONENT, e)


def ldexp(x: jax.Array, n: Any, dtype: Any = None) -> jax.Array:
    """``x * 2**n`` rounded once (to nearest, ties to even) into ``dtype``, from the bits.

    Exact whenever the result is a number of ``dtype`` (subnormal input or output included),
    correctly rounded otherwise, ``inf`` past ``dtype``'s range; zeros keep their sign, inf
    and NaN pass through. Unlike ``jnp.ldexp`` it gives the same bits with and without a flush
    to zero, so it is how values cross into and out of the normal range under XLA on CPU.

    Parameters
    ----------
    x : jax.Array
        A float array.
    n : int or jax.Array
        Integer power of two (int32 range), broadcasting against ``x``.
    dtype : dtype, optional
        The float dtype of the result (default ``x.dtype``): narrower or wider than ``x``'s.

    Returns
    -------
    jax.Array
        ``dtype``, the broadcast shape of ``x`` and ``n``.

    Examples
    --------
    >>> x = jnp.array([1.5, 3.0, -1.0], jnp.float32)
    >>> [float(v) for v in ldexp(x, -149)]          # 1.5 * 2**-149 rounds to the even 2**-148
    [2.802596928649634e-45, 4.203895392974451e-45, -1.401298464324817e-45]
    >>> float(ldexp(ldexp(x, -140)[1:2], 140)[0])   # a subnormal scaled back exactly
    3.0
    """
    src, tgt = _Format(x.dtype), _Format(x.dtype if dtype is None else dtype)
    work = _work(src, tgt)
    width = np.iinfo(work).bits
    sign, sig, q, special = _decode(x, work)
    q = q + jnp.asarray(n, jnp.int32)
    top = _log2(sig)
    # Bits of sig below the result's last place: its precision, or the subnormal spacing.
    drop = jnp.maximum(top - tgt.mant, (1 - tgt.bias) - tgt.mant - q)
    # Past src.mant + 2 every bit is dropped and the remainder is below half: clip the shift.
    shift = jnp.clip(drop, 0, src.mant + 2).astype(work)
    kept = sig >> shift
    rest = sig & ((jnp.ones((), work) << shift) - 1)
    half = (jnp.ones((), work) << shift) >> 1
    up = (shift > 0) & ((rest > half) | ((rest == half) & ((kept & 1) == 1)))
    widened = sig << jnp.clip(-drop, 0, width - 1).astype(work)
    mantissa = jnp.where(drop > 0, kept + up.astype(work), widened)
    # The implicit bit carries into the exponent field (a rounding up to the next binade too).
    field = jnp.clip(top + q + tgt.bias, 1, tgt.top) - 1
    inf = jnp.asarray(tgt.top << tgt.mant, work)
    magnitude = jnp.minimum((field.astype(work) << tgt.mant) + mantissa, inf)
    magnitude = jnp.where(sig == 0, jnp.zeros((), work), magnitude)
    nan = inf | (1 << (tgt.mant - 1))
    src_fraction = lax.bitcast_convert_type(x, src.uint).astype(work) & ((1 << src.mant) - 1)
    magnitude = jnp.where(special, jnp.where(src_fraction == 0, inf, nan), magnitude)
    bits = (sign << (tgt.bits - 1)) | magnitude
    return lax.bitcast_convert_type(bits.astype(tgt.uint), tgt.dtype)


def sign_proxy(x: jax.Array) -> jax.Array:
    """``x`` with each subnormal entry raised to a normal number of its sign (the exponent
    field set to 1), from the bits: compared with zero it reads as ``x`` does in IEEE
    arithmetic (zeros, NaN and normal numbers are left as they are), where a comparison of
    ``x`` itself under a flush to zero reads a subnormal as 0.

    Examples
    --------
    >>> x = jnp.array([1e-45, -1e-45, 0.0, -0.0, 2.0], jnp.float32)
    >>> (jax.jit(lambda v: v > 0)(x).tolist(), jax.jit(lambda v: sign_proxy(v) > 0)(x).tolist())
    ([False, False, False, False, True], [True, False, False, False, True])
    """
    f = _Format(x.dtype)
    bits = lax.bitcast_convert_type(x, f.uint)
    low = jnp.asarray(1 << f.mant, f.uint)
    subnormal = ((bits >> f.mant) & f.top == 0) & (bits & (low - 1) != 0)
    return lax.bitcast_convert_type(jnp.where(subnormal, bits | low, bits), f.dtype)


def unit_rows(rows: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(rows * 2**shift, shift, peak)``: each row of a 2-d array scaled by a power of two so
    that its max-abs ``peak`` (``(O, 1)``, exact) lies in ``[1, 2**24)`` (float32; ``2**53``
    float64), ``[1, 2)`` unless the row is entirely subnormal; ``shift`` (``(O, 1)`` int32) is 0
    for a non-finite row, and a zero row stays zero (``peak`` 0).

    Only float max-reductions, fast on every platform: a row whose max-abs is normal has it
    read exactly however subnormals compare; a row with none above the normal range is raised
    by a fixed power first, which brings its smallest subnormal to 1.

    Examples
    --------
    >>> rows, shift, peak = unit_rows(jnp.array([[3.0, -12.0], [1e-45, 0.0]], jnp.float32))
    >>> rows.tolist(), shift.tolist(), peak.tolist()
    ([[0.375, -1.5], [1.0, 0.0]], [[-3], [149]], [[1.5], [1.0]])
    """
    f = _Format(rows.dtype)
    e = exponent(jnp.max(jnp.abs(rows), axis=1, keepdims=True, initial=0))
    lowest = 1 - f.bias  # the smallest normal exponent
    shift = jnp.where(e >= lowest, -e, f.mant - lowest)  # zeros and subnormals: the fixed raise
    shift = jnp.where(e == NONFINITE_EXPONENT, 0, shift)
    out = scaled(rows, shift)
    return out, shift, jnp.max(jnp.abs(out), axis=1, keepdims=True, initial=0)


def _power_of_two(e: jax.Array, f: _Format) -> jax.Array:
    """``2**e`` in ``f``'s dtype, for ``e`` clipped to its normal exponents."""
    field = jnp.clip(e + f.bias, 1, 2 * f.bias).astype(f.uint)
    return lax.bitcast_convert_type(field << f.mant, f.dtype)


def scaled(x: jax.Array, n: Any) -> jax.Array:
    """``x * 2**n`` in ``x``'s dtype, exact where the result is a normal number, for any ``x``
    (subnormal included); a result below the normal range is left to the float arithmetic
    (0 under a flush to zero), inf and NaN pass through. :func:`ldexp` rounds every result;
    this is the cheaper way into the normal range: the significand, converted to a float
    exactly, times two normal powers of two.

    Examples
    --------
    >>> float(jax.jit(scaled)(jnp.float32(1e-45), 149))   # 2**-149 * 2**149
    1.0
    """
    f = _Format(x.dtype)
    sign, sig, q, special = _decode(x, f.uint)
    p = q + jnp.asarray(n, jnp.int32)
    half = p >> 1
    magnitude = sig.astype(f.dtype) * _power_of_two(half, f) * _power_of_two(p - half, f)
    out = jnp.where(sign == 1, -magnitude, magnitude)
    return jnp.where(special, x, out)


def total(x: jax.Array) -> jax.Array:
    """The sum of all elements of ``x`` (0-d, ``x``'s dtype), subnormal terms counted: summed
    scaled into the normal range (:func:`unit_rows`), scaled back with :func:`ldexp`.

    Examples
    --------
    >>> tiny = jnp.full(4, 2.0**-140, jnp.float32)                # subnormal terms
    >>> float(jax.jit(total)(tiny)) == 2.0**-138
    True
    """
    terms, shift, _ = unit_rows(x.reshape(1, -1))
    return ldexp(jnp.sum(terms), -shift[0, 0])
