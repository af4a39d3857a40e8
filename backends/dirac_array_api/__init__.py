"""dirac_array_api: the specification on any Python Array API namespace.

:mod:`dirac_core`'s maths is written once against the Array API standard; this package is
the thin adapter that hands it another namespace: :class:`ArrayApiBackend` (NumPy through
``array-api-compat``, ``array-api-strict``, PyTorch through compat, ``jax.numpy``, CuPy, ...).
Registered as ``array_api`` in the ``dirac_core.backends`` entry-point group, running on
``array-api-strict`` (which rejects anything outside the standard); :data:`ON_NUMPY`,
``ON_TORCH`` and ``ON_JAX`` run the same code on NumPy, PyTorch and JAX arrays (the last two
built on first use, importing their framework then).

>>> import dirac_core as dc, array_api_strict as xp
>>> w = xp.asarray([[3.0, 4.0]])
>>> dc.normalize_filters(w, backend="array_api")
Array([[0.6, 0.8]], dtype=array_api_strict.float64)
"""

from typing import Any

from . import backend
from .backend import ON_NUMPY, ArrayApiBackend

__all__ = ["ON_JAX", "ON_NUMPY", "ON_TORCH", "ArrayApiBackend"]


def __getattr__(name: str) -> Any:
    """``ON_TORCH`` and ``ON_JAX``, built on first use (:mod:`.backend`)."""
    return getattr(backend, name)
