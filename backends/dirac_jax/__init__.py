"""dirac_jax: DiracNets in JAX: the ``jax`` backend of ``dirac_core`` and Flax NNX layers.

``W_hat = alpha * delta + beta * normalize(W)`` (Zagoruyko & Komodakis 2017, eq. 13) as
differentiable JAX functions that check their arguments as every backend does
(:mod:`dirac_jax.functional`, exported here; the unchecked kernels with ``custom_vjp`` rules
equal to the spec's VJPs are in :mod:`dirac_jax.ops`), the ``jax`` backend
(:class:`JaxBackend`, so ``dirac_core`` functions accept ``jax.Array`` inputs, inside
``jax.jit``, ``jax.grad`` and ``jax.vmap`` too), and Flax NNX layers and networks built
from the ``dirac_core.nets`` specs (``import dirac_jax.nn``: not imported here, since it
imports Flax).

>>> import jax, jax.numpy as jnp, dirac_core as dc
>>> w = jnp.zeros((1, 1, 3))
>>> jax.jit(lambda v: dc.dirac_weight(v, 2.0, 1.0))(w).tolist()
[[[0.0, 2.0, 0.0]]]
"""

from __future__ import annotations

from .backend import JaxBackend
from .functional import conv, dirac_tensor, dirac_weight, fold_batchnorm, ncrelu, normalize_filters


def __getattr__(name: str) -> object:
    # dirac_jax.create_model lives in dirac_jax.nn, which imports Flax: only on first use
    if name == "create_model":
        from .nn import create_model

        return create_model
    raise AttributeError(f"module 'dirac_jax' has no attribute {name!r}")


__all__ = [
    "JaxBackend",
    "conv",
    "create_model",
    "dirac_tensor",
    "dirac_weight",
    "fold_batchnorm",
    "ncrelu",
    "normalize_filters",
]

