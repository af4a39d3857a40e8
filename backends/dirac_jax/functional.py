"""The checked JAX functions: the specification's ops on ``jax.Array``, arguments validated.

Each function is :mod:`dirac_core`'s public function with the ``jax`` backend, so a bad
argument raises the same ``ValueError``/``TypeError``, in the same words, as in every other
backend (``eps=-1``, a ``groups`` that does not divide the channels, an unknown ``policy``).
They work eagerly and inside ``jax.jit``, ``jax.grad`` and ``jax.vmap`` (the checks read only
shapes, dtypes and Python arguments); differentiate them with ``jax.grad``. The unchecked
kernels the layers call at each step are in :mod:`dirac_jax.ops`.

Array arguments must be ``jax.Array`` s, as ``dirac_torch``'s must be tensors: an array of
another library (NumPy, PyTorch) is refused with a ``TypeError``, since converting it would
silently drop what it carries (a torch tensor's autograd graph). The scales ``alpha`` and
``beta`` may also be Python or NumPy scalars. To convert on purpose, call
:mod:`dirac_core`'s function with ``backend="jax"``.

NCReLU's channel argument is ``axis``, as in NumPy and ``jax.numpy`` (``dirac_torch`` says
``dim``, as PyTorch does).

>>> import jax, jax.numpy as jnp
>>> w = jnp.zeros((1, 1, 3))
>>> jax.jit(lambda v: dirac_weight(v, 2.0, 1.0))(w).tolist()
[[[0.0, 2.0, 0.0]]]
>>> dirac_weight(w, 2.0, 1.0, eps=-1.0)
Traceback (most recent call last):
...
ValueError: eps must be a finite number > 0, got -1.0
>>> dirac_weight(w.tolist(), 2.0, 1.0)
Traceback (most recent call last):
...
TypeError: w must be a jax.Array, got builtins.list: [[[0.0, 0.0, 0.0]]]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import dirac_core as dc
from dirac_core.validation import require_native

__all__ = ["conv", "dirac_tensor", "dirac_weight", "fold_batchnorm", "ncrelu",
           "normalize_filters"]


def _require_jax(*, scalar: bool = False, **arrays: Any) -> None:
    """The array arguments must be ``jax.Array`` s (tracers are), or with ``scalar`` Python or
    NumPy scalars too; ``None`` is an absent ``bias``."""
    for name, value in arrays.items():
        if value is not None:
            require_native(value, name, jax.Array, "a jax.Array", scalar=scalar)


def dirac_tensor(shape: Any, *, groups: int = 1, policy: str = "tile", dtype: Any = None,
                 device: Any = None) -> jax.Array:
    """The Dirac tensor of ``shape`` ``(O, I/groups, K...)`` (:func:`dirac_core.dirac_tensor`).

    ``dtype=None`` is JAX's default float (float32, or float64 in 64-bit mode).

    Raises
    ------
    ValueError, TypeError
        As :func:`dirac_core.dirac_tensor`.
    """
    if dtype is None:
        dtype = jnp.zeros(()).dtype.name
    out: jax.Array = dc.dirac_tensor(shape, groups=groups, policy=policy, dtype=dtype,
                                     backend="jax", device=device)
    return out


def normalize_filters(w: jax.Array, *, eps: float = 1e-12) -> jax.Array:
    """Each filter ``w[o]`` divided by ``max(||w[o]||, eps)``
    (:func:`dirac_core.normalize_filters`).

    Raises
    ------
    TypeError
        An array argument that is not a ``jax.Array``.
    ValueError, TypeError
        As :func:`dirac_core.normalize_filters`.
    """
    _require_jax(w=w)
    out: jax.Array = dc.normalize_filters(w, eps=eps, backend="jax")
    return out


def dirac_weight(w: jax.Array, alpha: Any, beta: Any, *, eps: float = 1e-12,
                 normalize: bool = True, groups: int = 1, policy: str = "tile") -> jax.Array:
    """``alpha * delta + beta * normalize(w)`` (paper eq. 13; :func:`dirac_core.dirac_weight`).

    Raises
    ------
    TypeError
        ``w`` not a ``jax.Array``; ``alpha`` or ``beta`` neither one nor a Python/NumPy
        scalar.
    ValueError, TypeError
        As :func:`dirac_core.dirac_weight`.
    """
    _require_jax(w=w)
    _require_jax(scalar=True, alpha=alpha, beta=beta)
    out: jax.Array = dc.dirac_weight(w, alpha, beta, eps=eps, normalize=normalize,
                                     groups=groups, policy=policy, backend="jax")
    return out


def ncrelu(x: jax.Array, *, axis: int = 1) -> jax.Array:
    """``concat([max(x, 0), min(x, 0)], axis)`` (paper eq. 10; :func:`dirac_core.ncrelu`).

    Raises
    ------
    TypeError
        An array argument that is not a ``jax.Array``.
    ValueError, TypeError
        As :func:`dirac_core.ncrelu`.
    """
    _require_jax(x=x)
    out: jax.Array = dc.ncrelu(x, axis=axis, backend="jax")
    return out


def conv(x: jax.Array, w: jax.Array, bias: jax.Array | None = None, *, stride: Any = 1,
         padding: Any = 0, dilation: Any = 1, groups: int = 1) -> jax.Array:
    """N-d cross-correlation with the spec's ``"same"`` padding (:func:`dirac_core.conv`).

    Raises
    ------
    TypeError
        An array argument that is not a ``jax.Array``.
    ValueError, TypeError
        As :func:`dirac_core.conv`.
    """
    _require_jax(x=x, w=w, bias=bias)
    out: jax.Array = dc.conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                             groups=groups, backend="jax")
    return out


def fold_batchnorm(weight: jax.Array, bias: jax.Array | None, gamma: jax.Array,
                   beta: jax.Array, mean: jax.Array, var: jax.Array, *, eps: float = 1e-5
                   ) -> tuple[jax.Array, jax.Array]:
    """An eval-mode batch norm folded into the conv before it
    (:func:`dirac_core.fold_batchnorm`; eager only: the statistics are checked on the host).

    Raises
    ------
    TypeError
        An array argument that is not a ``jax.Array``.
    ValueError, TypeError
        As :func:`dirac_core.fold_batchnorm`.
    """
    _require_jax(weight=weight, bias=bias, gamma=gamma, beta=beta, mean=mean, var=var)
    return dc.fold_batchnorm(weight, bias, gamma, beta, mean, var, eps=eps, backend="jax")
