"""The Dirac weight and its VJP computed on filters rescaled into the normal range.

:func:`combine` and :func:`combine_vjp` are :func:`dirac_core.weight.combine` and
:func:`~dirac_core.weight.combine_vjp` for XLA, whose CPU arithmetic flushes subnormals to
zero. Each filter ``v = W[o]`` is scaled by a power of two ``2**k`` so that its max-abs lies in
``[1, 2)`` (a filter of subnormals only: at least 1, see :func:`dirac_jax.subnormal.unit_rows`;
an all-zero filter by the power that brings ``eps`` there), ``eps`` by the same factor, the
gradient's filter and ``beta`` likewise; the spec's maths
(:func:`dirac_core.normalize.normalized`, :func:`~dirac_core.normalize.normalized_vjp`) runs on
those, and each result is scaled back with :func:`dirac_jax.subnormal.ldexp`, rounding once
into its dtype, subnormal or not.

The algebra is exact: ``v / max(||v||, eps)`` is unchanged when ``v`` and ``eps`` are scaled
together, its VJP scales as ``g / v``, and a power-of-two scaling of a normal number commutes
with rounding. Two more powers of two keep ``eps`` in range: a scaled ``eps`` above
``2**EPS_RANGE`` clamps the filter for sure (a scaled norm is below ``2**53 sqrt(n)``), so it is
lowered to that and the clamped result ``v / eps`` raised back; one below ``2**-EPS_RANGE``
clamps nothing and is raised (only the decision reads it).

The spec's maths then sees each filter divided by its max-abs (correctly rounded, so its
max-abs is exactly 1), and ``eps`` likewise: XLA computes a division by a per-filter value
through its reciprocal, an ulp off, which at a filter whose norm equals ``eps`` exactly would
take the wrong branch of the VJP; a division by 1 is exact either way. This costs a rounding or
two of ``eps / max-abs`` in the clamped results (a unit in the last place).

Out of reach: an entry more than ``2**126`` (float32; ``2**1022`` float64) below its filter's
max-abs, or an ``alpha`` below the normal range, still reads as zero.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from dirac_core.normalize import normalized, normalized_vjp

from .subnormal import NONFINITE_EXPONENT, ZERO_EXPONENT, exponent, ldexp, unit_rows

EPS_RANGE = 96
"""A scaled ``eps`` is kept in ``[2**-EPS_RANGE, 2**(EPS_RANGE + 1))``: a scaled filter's
max-abs is below ``2**53`` (:func:`dirac_jax.subnormal.unit_rows`), its norm below
``2**53 sqrt(n)``."""


def _unit_shift(e: jax.Array) -> jax.Array:
    """The power of two that brings a value of exponent ``e`` into ``[1, 2)``; 0 for a zero
    or a non-finite value."""
    return jnp.where((e > ZERO_EXPONENT) & (e < NONFINITE_EXPONENT), -e, 0)


def _per_row(scale: jax.Array, dtype: Any) -> jax.Array:
    """A 0-d or ``(O,)`` scale as ``dtype``, ``()`` or ``(O, 1)``."""
    scale = scale.astype(dtype)
    return scale.reshape(-1, 1) if scale.ndim else scale


class _Filters(NamedTuple):
    """The filters of ``W`` and ``eps`` scaled into the normal range, and ``beta`` split."""

    rows: jax.Array  # (O, n) work dtype: W's filters times 2**shift
    shift: jax.Array  # (O, 1) int32
    peak: jax.Array  # (O, 1): each scaled filter's max-abs (1 for a zero or non-finite one)
    unit: jax.Array  # (O, n): rows / peak, correctly rounded: max-abs exactly 1
    unit_eps: jax.Array  # (O, 1): eps times 2**(shift - lowered) / peak, kept near 1
    lowered: jax.Array  # (O, 1) int32, > 0 only for filters clamped for sure
    beta: jax.Array  # () or (O, 1): beta's significand, in [1, 2) or 0
    beta_exp: jax.Array  # () or (O, 1) int32: beta = self.beta * 2**beta_exp

    def direction(self, normalize: bool) -> tuple[jax.Array, jax.Array]:
        """``(d, e)``: ``normalize(W)`` (or ``W``) as ``d * 2**e``, ``d`` normal."""
        if normalize:
            return normalized(self.unit, self.unit_eps), -self.lowered
        return self.rows, -self.shift

    def normalized_vjp(self, g: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(d, e)``: the VJP of the normalization for the scaled filters' gradient ``g``, as
        ``d * 2**e`` over the unscaled ones (it scales as ``g / W``)."""
        return normalized_vjp(g, self.unit, self.unit_eps) / self.peak, self.shift - self.lowered


def _exact_quotient(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a / b`` for ``b`` of shape ``(O, 1)``, correctly rounded. XLA rewrites a division by a
    broadcast as a multiplication by the reciprocal, an ulp off: at a filter whose norm is
    exactly ``eps`` that flips the spec's branch. ``b + 0 * a`` is ``b`` (NaN where ``a`` is
    not finite) but no broadcast, and IEEE arithmetic forbids folding ``0 * a`` away; it fuses
    into the division (an optimization barrier would stop all fusion: 3x slower)."""
    return a / (b + 0 * a)


def _filters(w: jax.Array, beta: jax.Array, eps: jax.Array) -> _Filters:
    rows, shift, peak = unit_rows(w.reshape(w.shape[0], -1).astype(eps.dtype))
    eps_exp = exponent(eps)
    zero = peak == 0
    shift = jnp.where(zero, -eps_exp, shift)  # a zero filter: eps brought near 1 instead
    at = eps_exp + shift
    kept = jnp.clip(at, -EPS_RANGE, EPS_RANGE)
    # The spec's maths divides each filter by its max-abs: given filters whose max-abs is 1,
    # that division is exact however XLA computes it.
    peak = jnp.where(zero | ~jnp.isfinite(peak), 1, peak)
    b = _per_row(beta, eps.dtype)
    b_exp = -_unit_shift(exponent(b))
    return _Filters(rows, shift, peak, _exact_quotient(rows, peak),
                    ldexp(eps, shift + kept - at) / peak, jnp.maximum(at - EPS_RANGE, 0),
                    ldexp(b, -b_exp), b_exp)


def _identity_term(alpha: jax.Array, delta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(alpha * delta, delta != 0)`` over ``(O, n)`` rows."""
    rows = delta.reshape(delta.shape[0], -1)
    return _per_row(alpha, delta.dtype) * rows, rows != 0


def combine(w: jax.Array, alpha: jax.Array, beta: jax.Array, delta: jax.Array, eps: jax.Array,
            normalize: bool) -> jax.Array:
    """``alpha * delta + beta * normalize(W)`` in ``w``'s dtype, as
    :func:`dirac_core.weight.combine`; ``eps`` a 0-d array of the working dtype (``delta``'s),
    any positive number it holds, subnormal included.

    Examples
    --------
    >>> w = jnp.full((1, 3), 1.5, jnp.float32)
    >>> one = jnp.ones((), jnp.float32)
    >>> eps = jnp.asarray(1.5 * 2.0**127, jnp.float32)    # clamps: 1.5 / eps = 2**-127
    >>> out = jax.jit(combine, static_argnums=5)(w, 0 * one, one, jnp.zeros((1, 3)), eps, True)
    >>> float(out[0, 0]) == 2.0**-127                     # a subnormal, not a flushed 0
    True
    >>> taps = jnp.ones((1, 3))                           # alpha = 0 at the taps: the same
    >>> float(jax.jit(combine, static_argnums=5)(w, 0 * one, one, taps, eps, True)[0, 0])
    5.877471754111438e-39
    """
    f = _filters(w, beta, eps)
    d, d_exp = f.direction(normalize)
    t, t_exp = f.beta * d, f.beta_exp + d_exp
    identity, on = _identity_term(alpha, delta)
    term = ldexp(t, t_exp)
    rounded = term if w.dtype == term.dtype else ldexp(t, t_exp, w.dtype)  # once, from t
    # At a tap with alpha = 0 the sum is the term itself: XLA's add would flush a subnormal
    # term to zero (a zero term still goes through the add, for IEEE's sign of 0 + -0).
    added = on & ((identity != 0) | (exponent(rounded) == ZERO_EXPONENT))  # from the bits
    out = jnp.where(added, (identity + term).astype(w.dtype), rounded)
    return out.reshape(w.shape)


def _sum_to(per_row: jax.Array, per_row_exp: jax.Array, like: jax.Array) -> jax.Array:
    """``per_row * 2**per_row_exp`` (``(O, 1)`` each) in ``like``'s shape (``()`` or ``(O,)``)
    and dtype, rounded once; a total is summed on a common scale (its largest term's)."""
    if like.ndim:
        return ldexp(per_row[:, 0], per_row_exp[:, 0], like.dtype)
    e = exponent(per_row)
    top = jnp.max(jnp.where((e > ZERO_EXPONENT) & (e < NONFINITE_EXPONENT), e + per_row_exp,
                            ZERO_EXPONENT), initial=ZERO_EXPONENT)
    top = jnp.where(top == ZERO_EXPONENT, 0, top)
    return ldexp(jnp.sum(ldexp(per_row, per_row_exp - top)), top, like.dtype)


def combine_vjp(g: jax.Array, w: jax.Array, alpha: jax.Array, beta: jax.Array,
                delta: jax.Array, eps: jax.Array, normalize: bool
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(dW, dalpha, dbeta)`` as :func:`dirac_core.weight.combine_vjp`, with ``eps`` as for
    :func:`combine`; each gradient in its argument's dtype, rounded once."""
    f = _filters(w, beta, eps)
    grad = g.reshape(f.rows.shape).astype(eps.dtype)
    unit_grad, g_shift, _ = unit_rows(grad)
    g_exp = -g_shift
    _, on = _identity_term(jnp.ones((), eps.dtype), delta)
    # g at the taps (a select: its bits), scaled per row by their own max-abs, not the row's:
    # a subnormal tap of g counts, and so does a tap far below the rest of its row.
    at_taps, taps_shift, _ = unit_rows(jnp.where(on, grad, jnp.zeros((), grad.dtype)))
    dalpha = _sum_to(jnp.sum(at_taps, axis=1, keepdims=True), -taps_shift, alpha)
    d, d_exp = f.direction(normalize)
    dbeta = _sum_to(jnp.sum(unit_grad * d, axis=1, keepdims=True), d_exp + g_exp, beta)
    beta_grad = f.beta * unit_grad
    if normalize:
        dw, dw_exp = f.normalized_vjp(beta_grad)
    else:
        dw, dw_exp = beta_grad, jnp.zeros_like(f.shift)
    out = ldexp(dw, dw_exp + f.beta_exp + g_exp, w.dtype)
    return out.reshape(w.shape), dalpha, dbeta
