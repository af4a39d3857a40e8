"""The Dirac parameterization ``W_hat = alpha * delta + beta * normalize(W)`` (paper eq. 13)
and its VJP, written against the Array API standard (:mod:`.xp`).

:func:`dirac_weight` and :func:`dirac_weight_vjp` are the spec's ops; :func:`combine` and
:func:`combine_vjp` are the same maths with ``delta`` and ``eps`` given as data, the form a
compiled caller (``dirac_jax``) traces once per shape.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .backend import Array
from .delta import dirac_tensor
from .normalize import normalized, normalized_vjp, working_eps
from .xp import device_of, namespace, work_dtype


def _per_channel(xp: ModuleType, scale: Array, ndim: int, dtype: Any) -> Array:
    """A 0-d or ``(O,)`` scale as an array of ``dtype`` broadcasting over ``(O, ...)``."""
    scale = xp.astype(scale, dtype, copy=False)
    return xp.reshape(scale, (-1,) + (1,) * (ndim - 1)) if scale.ndim else scale


def _reduce_to(xp: ModuleType, full: Array, like: Array) -> Array:
    """Sum ``full`` (shape ``(O, ...)``) down to ``like``'s shape ``()`` or ``(O,)``, and dtype."""
    if like.ndim == 0:
        total = xp.asarray(xp.sum(full))  # NumPy's full reduction is a scalar, not an array
    else:
        total = xp.sum(xp.reshape(full, (full.shape[0], -1)), axis=1)
    return xp.astype(total, like.dtype)


def _delta_eps(xp: ModuleType, w: Array, eps: float, groups: int, policy: str,
               subnormals: bool) -> tuple[Array, float]:
    """The Dirac tensor of ``w``'s shape and ``eps`` in range, in ``w``'s working dtype."""
    work = work_dtype(w.dtype, xp)
    delta = dirac_tensor(tuple(w.shape), groups, policy, work, xp, device_of(w))
    return delta, working_eps(eps, work, subnormals=subnormals)


def _direction(xp: ModuleType, w: Array, dtype: Any, eps: Any, normalize: bool) -> Array:
    """``normalize(W)`` (or ``W``) in the working ``dtype``."""
    work = xp.astype(w, dtype)
    return normalized(work, eps) if normalize else work


def combine(w: Array, alpha: Array, beta: Array, delta: Array, eps: Any, normalize: bool
            ) -> Array:
    """:func:`dirac_weight` with ``delta`` given (working dtype, ``w``'s shape) and ``eps``
    in range (:func:`~dirac_core.normalize.working_eps`)."""
    xp = namespace(w, alpha, beta, delta)
    a = _per_channel(xp, alpha, w.ndim, delta.dtype)
    b = _per_channel(xp, beta, w.ndim, delta.dtype)
    direction = _direction(xp, w, delta.dtype, eps, normalize)
    # alpha is added at the ones of delta only, a selection rather than a product, as the
    # backends that add alpha by index give: an infinite or NaN alpha reaches only its taps
    # (inf * 0 would be NaN everywhere else), and off the taps the entry is beta * u itself,
    # its sign of zero included (+0 + -0 would be +0).
    term = b * direction
    return xp.astype(xp.where(delta != 0, a + term, term), w.dtype, copy=False)


def combine_vjp(g: Array, w: Array, alpha: Array, beta: Array, delta: Array, eps: Any,
                normalize: bool) -> tuple[Array, Array, Array]:
    """:func:`dirac_weight_vjp` with ``delta`` and ``eps`` as for :func:`combine`."""
    xp = namespace(g, w, alpha, beta, delta)
    dtype = delta.dtype
    grad = xp.astype(g, dtype, copy=False)
    b = _per_channel(xp, beta, w.ndim, dtype)
    zero = xp.zeros((), dtype=dtype, device=device_of(g))
    dalpha = _reduce_to(xp, xp.where(delta != 0, grad, zero), alpha)  # g at the taps
    dbeta = _reduce_to(xp, grad * _direction(xp, w, dtype, eps, normalize), beta)
    scaled = b * grad
    dw = normalized_vjp(scaled, xp.astype(w, dtype), eps) if normalize else scaled
    # Each gradient takes its argument's dtype, as autograd does: a float32 alpha of a half
    # weight keeps a float32 gradient, whose sum over a whole filter bank would overflow half.
    return xp.astype(dw, w.dtype, copy=False), dalpha, dbeta


def dirac_weight(
    w: Array, alpha: Array, beta: Array, eps: float, normalize: bool, groups: int, policy: str,
    *, subnormals: bool = True,
) -> Array:
    """``alpha * delta + beta * normalize(W)``, scales broadcast per output channel.

    ``subnormals=False`` keeps ``eps`` at or above the smallest normal number, for arithmetic
    that flushes subnormals to zero (:func:`~dirac_core.normalize.working_eps`).
    """
    xp = namespace(w, alpha, beta)
    delta, eps_in = _delta_eps(xp, w, eps, groups, policy, subnormals)
    return combine(w, alpha, beta, delta, eps_in, normalize)


def dirac_weight_vjp(
    g: Array, w: Array, alpha: Array, beta: Array, eps: float, normalize: bool, groups: int,
    policy: str, *, subnormals: bool = True,
) -> tuple[Array, Array, Array]:
    """``(dW, dalpha, dbeta)`` with ``dalpha = sum g*delta``, ``dbeta = sum g*normalize(W)``
    (each reduced to its argument's shape and dtype) and ``dW = normalize_vjp(beta * g, W)``."""
    xp = namespace(g, w, alpha, beta)
    delta, eps_in = _delta_eps(xp, w, eps, groups, policy, subnormals)
    return combine_vjp(g, w, alpha, beta, delta, eps_in, normalize)
