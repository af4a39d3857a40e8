"""The differentiable JAX ops: usable under ``jax.jit``, ``jax.grad`` and ``jax.vmap``.

The maths of the Dirac weight, filter normalization, NCReLU and batch-norm folding is the
specification's own (:mod:`dirac_core`, written against the Array API standard) run on
``jax.numpy``. Each of them carries a ``jax.custom_vjp`` rule that
*is* the spec's VJP, because autodiff of the forward would not be: the normalization divides
by a max-abs and a norm chosen through ``where`` (their derivatives would give NaN for an
all-zero filter and the wrong branch at the clamp), and NCReLU's gradient at exactly zero is
zero on both halves by definition. The convolution is ``lax.conv_general_dilated``, a linear
map whose JAX transpose rules are its exact VJP, so it needs no rule of its own.

Half-precision inputs (float16, bfloat16) are computed in float32 and rounded once at the end,
in the forward and in the backward. XLA on CPU flushes subnormal numbers to zero, so the weight
ops and the folding scale their operands into the normal range by powers of two and scale the
results back exactly (:mod:`dirac_jax.rescaled`, :mod:`dirac_jax.subnormal`): subnormal ``eps``,
filters and results come out as the spec's, under ``jax.jit`` and ``jax.grad`` alike; NCReLU
compares from the bits. The convolution is left to XLA: a subnormal operand of it reads as 0
there (``docs/jax.md`` lists what remains).

Arguments are assumed valid: the public functions of :mod:`dirac_core` check them and reach
these through :class:`dirac_jax.JaxBackend`; :mod:`dirac_jax.nn` calls them directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from math import prod
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dirac_core import activation, batchnorm
from dirac_core import delta as spec_delta
from dirac_core.delta import WeightGeometry, is_tap, weight_geometry
from dirac_core.normalize import working_eps
from dirac_core.padding import Pairs, resolve_padding
from dirac_core.xp import work_dtype

from . import rescaled, subnormal


def dirac_tensor(shape: tuple[int, ...], groups: int, policy: str, dtype: Any) -> jax.Array:
    """The Dirac tensor (paper eq. 2, 7-8) of ``shape`` in ``dtype``."""
    return cast(jax.Array, spec_delta.dirac_tensor(shape, groups, policy, dtype, jnp))


def eps_in(dtype: Any, eps: float) -> float:
    """``eps`` as the spec takes it in ``dtype``'s working dtype (subnormal included)."""
    return working_eps(eps, work_dtype(dtype, jnp))


def taps(shape: tuple[int, ...], groups: int, policy: str) -> np.ndarray:
    """Where the Dirac tensor of a weight of ``shape`` has its ones, as data: the fields of
    :class:`dirac_core.delta.WeightGeometry` in an int32 vector (so one compiled program
    serves every geometry of a padded shape)."""
    return np.asarray(weight_geometry(shape, groups, policy), np.int32)


NO_TAPS = np.asarray(WeightGeometry(0, 0, 1, 0, 1, 1, 0), np.int32)
"""A geometry with no ones (no column is below its length 0): no identity term."""


def _identity(taps: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """The Dirac tensor for ``shape`` from iota indices and :func:`dirac_core.delta.is_tap`:
    inside a compiled program XLA fuses it into its consumer, so it is never stored."""
    grid = (shape[0], prod(shape[1:]))
    # Traced int32 fields where WeightGeometry declares ints: is_tap accepts either.
    geo = WeightGeometry(*(taps[k] for k in range(len(WeightGeometry._fields))))  # type: ignore[arg-type]
    mask = is_tap(geo, lax.broadcasted_iota(jnp.int32, grid, 0),
                  lax.broadcasted_iota(jnp.int32, grid, 1))
    return cast(jax.Array, mask.astype(dtype).reshape(shape))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def combine(w: jax.Array, alpha: jax.Array, beta: jax.Array, taps: jax.Array,
            eps: jax.Array, normalize: bool) -> jax.Array:
    """``alpha * delta + beta * normalize(W)`` with the Dirac tensor given by ``taps``
    (:func:`taps`, or :data:`NO_TAPS`) and ``eps`` (in range, see :func:`eps_in`) as data: the
    one ``custom_vjp`` rule of the weight ops. ``delta`` is formed from index arithmetic in
    the compiled program, never held as an array."""
    delta = _identity(taps, w.shape, work_dtype(w.dtype, jnp))
    return rescaled.combine(w, alpha, beta, delta, eps, normalize)


def _combine_fwd(w: jax.Array, alpha: jax.Array, beta: jax.Array, taps: jax.Array,
                 eps: jax.Array, normalize: bool) -> tuple[jax.Array, Any]:
    return combine(w, alpha, beta, taps, eps, normalize), (w, alpha, beta, taps, eps)


def combine_vjp(g: jax.Array, w: jax.Array, alpha: jax.Array, beta: jax.Array,
                taps: jax.Array, eps: jax.Array, normalize: bool
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(dW, dalpha, dbeta)`` of :func:`combine` for the cotangent ``g``: its ``custom_vjp``
    rule, callable without tracing the forward (each in its argument's dtype)."""
    delta = _identity(taps, w.shape, work_dtype(w.dtype, jnp))
    return rescaled.combine_vjp(g, w, alpha, beta, delta, eps, normalize)


def _combine_bwd(normalize: bool, saved: Any, g: jax.Array) -> tuple[Any, ...]:
    # jnp.asarray: JAX may hand back a residual it knew at trace time as a NumPy constant.
    w, alpha, beta, taps, eps = (jnp.asarray(a) for a in saved)
    dw, dalpha, dbeta = combine_vjp(g, w, alpha, beta, taps, eps, normalize)
    # The geometry and eps are constants of the parameterization: no gradient flows into them.
    return dw, dalpha, dbeta, None, jnp.zeros_like(eps)


combine.defvjp(_combine_fwd, _combine_bwd)


def dirac_weight(w: jax.Array, alpha: jax.Array, beta: jax.Array, eps: float, normalize: bool,
                 groups: int, policy: str) -> jax.Array:
    """``alpha * delta + beta * normalize(W)`` (paper eq. 13) in ``w``'s dtype; ``alpha`` and
    ``beta`` are 0-d or ``(O,)`` arrays, and their gradients come back in their own dtypes."""
    work = work_dtype(w.dtype, jnp)
    return combine(w, alpha, beta, jnp.asarray(taps(tuple(w.shape), groups, policy)),
                   jnp.asarray(eps_in(w.dtype, eps), work), normalize)


def normalize_filters(w: jax.Array, eps: float) -> jax.Array:
    """``w[o] / max(||w[o]||, eps)`` per filter, in ``w``'s dtype: :func:`combine` with
    ``alpha = 0``, ``beta = 1`` and no identity term (exact: ``0 + 1 * u == u``)."""
    work = work_dtype(w.dtype, jnp)
    zero, one = jnp.zeros((), work), jnp.ones((), work)
    return combine(w, zero, one, jnp.asarray(NO_TAPS), jnp.asarray(eps_in(w.dtype, eps), work),
                   True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def ncrelu(x: jax.Array, axis: int) -> jax.Array:
    """``concat([max(x, 0), min(x, 0)], axis)`` (paper eq. 10): selections of ``x``'s own
    entries, compared with zero from their bits (a subnormal is not 0)."""
    return cast(jax.Array, activation.ncrelu(x, axis, subnormal.sign_proxy(x)))


def _ncrelu_fwd(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    return ncrelu(x, axis), x


def _ncrelu_bwd(axis: int, x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    x = jnp.asarray(x)
    return (activation.ncrelu_vjp(g, x, axis, subnormal.sign_proxy(x)),)


ncrelu.defvjp(_ncrelu_fwd, _ncrelu_bwd)


def conv(x: jax.Array, w: jax.Array, bias: jax.Array | None, stride: tuple[int, ...],
         padding: str | Pairs, dilation: tuple[int, ...], groups: int) -> jax.Array:
    """N-d cross-correlation with the spec's padding (``"same"``: left ``d*floor(K/2)``,
    right ``d*(K-1) - left``) or explicit ``(left, right)`` pairs; NC... / OI... layouts."""
    pairs = resolve_padding(padding, tuple(w.shape[2:]), dilation)
    work = work_dtype(x.dtype, jnp)
    y = lax.conv_general_dilated(
        x.astype(work), w.astype(work), window_strides=stride, padding=pairs,
        rhs_dilation=dilation, feature_group_count=groups, precision=lax.Precision.HIGHEST,
    )
    if bias is not None:
        y = y + bias.astype(work).reshape((-1,) + (1,) * (y.ndim - 2))
    return y.astype(x.dtype)


def fold_batchnorm(weight: jax.Array, bias: jax.Array | None, gamma: jax.Array,
                   beta: jax.Array, mean: jax.Array, var: jax.Array, eps: float | jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
    """Fold an eval-mode batch norm into the conv before it (arithmetic in >= float32).

    XLA on CPU reads subnormal operands as 0 and flushes subnormal results, so the spec's
    maths (:func:`dirac_core.batchnorm.fold_batchnorm`) runs on operands scaled by powers of
    two, per channel, into the normal range, and each result is scaled back once
    (:func:`dirac_jax.subnormal.ldexp`, rounding into the weight's dtype):

    - ``eps`` (a number, or a 0-d array of the working dtype) and ``var`` below 1 by ``4**j``
      and ``gamma`` by ``2**-g`` (its exponent), so that ``var + eps`` and ``gamma`` are normal:
      the spec's ``s = gamma / sqrt(var + eps)`` comes out as ``s * 2**-(g + j)``;
    - each filter of ``W`` by the power that brings its max-abs to ``[1, 2)``;
    - ``bias``, ``mean`` and ``beta`` by one power per channel that puts the larger of
      ``(b - mean) * s`` and ``beta`` near 1.

    An entry more than ``2**1022`` (float32: ``2**126``) below its filter's max-abs, or the
    smaller term of ``b'`` that far below the larger, still reads as 0.
    """
    work = work_dtype(weight.dtype, jnp)
    eps_in = jnp.asarray(eps, work)
    var_in = var.astype(work)
    top = jnp.maximum(subnormal.exponent(var_in), subnormal.exponent(eps_in))
    j = jnp.where((top < 0) & (top > subnormal.ZERO_EXPONENT), (1 - top) // 2, 0)
    gamma_in = gamma.astype(work)
    g = _exponent_or(gamma_in, 0)
    rows, row_shift, _ = subnormal.unit_rows(weight.reshape(weight.shape[0], -1).astype(work))
    # b' = (b - mean) * s + beta on a common scale 2**e: that of the larger term.
    low = subnormal.ZERO_EXPONENT
    top = _exponent_or(mean, low)
    if bias is not None:
        top = jnp.maximum(top, _exponent_or(bias, low))
    e = jnp.maximum(jnp.where(top == low, low, top + g + j), _exponent_or(beta, low))
    e = jnp.where(e == low, 0, e)

    def shifted(v: jax.Array) -> jax.Array:  # (b - mean) * s, scaled by 2**-e
        return subnormal.ldexp(v.astype(work), g + j - e)

    new_weight, new_bias = batchnorm.fold_batchnorm(
        rows.reshape(weight.shape), None if bias is None else shifted(bias),
        subnormal.ldexp(gamma_in, -g), subnormal.ldexp(beta.astype(work), -e), shifted(mean),
        subnormal.ldexp(var_in, 2 * j), subnormal.ldexp(eps_in, 2 * j),
    )
    per_row = (g + j).reshape(-1, 1) - row_shift
    out_weight = subnormal.ldexp(new_weight.reshape(rows.shape), per_row, weight.dtype)
    return out_weight.reshape(weight.shape), subnormal.ldexp(new_bias, e, weight.dtype)


def _exponent_or(x: jax.Array, otherwise: int) -> jax.Array:
    """``floor(log2|x|)`` where ``x`` is finite and not zero, ``otherwise`` elsewhere: a power
    of two to scale by that leaves zeros and non-finite values alone."""
    e = subnormal.exponent(x)
    return jnp.where((e > subnormal.ZERO_EXPONENT) & (e < subnormal.NONFINITE_EXPONENT), e,
                     otherwise)


# Each op compiled whole, once per shape, dtype and static argument: run eagerly, an op would
# compile and dispatch each of its primitives on its own, several times slower. Inside a
# caller's jit/grad/vmap (or nnx.jit) these are inlined into the caller's trace.
# (Typed by what they return: jax.jit's result returns Any. conv_jit takes star-arguments in
# dirac_jax.padded_conv.)
dirac_weight_jit: Callable[
    [jax.Array, jax.Array, jax.Array, float, bool, int, str], jax.Array
] = jax.jit(dirac_weight, static_argnums=(3, 4, 5, 6))
ncrelu_jit: Callable[[jax.Array, int], jax.Array] = jax.jit(ncrelu, static_argnums=1)
conv_jit: Callable[..., jax.Array] = jax.jit(conv, static_argnums=(3, 4, 5, 6))
