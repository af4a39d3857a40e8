"""dirac_array_api: the specification on any Python Array API namespace.

:mod:`dirac_core`'s maths is written once against the Array API standard; this package is
the thin adapter that hands it another namespace: :class:`ArrayApiBackend` (NumPy through
``array-api-compat``, ``array-api-strict``, PyTorch through compat, ``jax.numpy``, CuPy, ...).
Registered as ``array_api`` in the ``dirac_core.backends`` entry-point group, running on
``array-api-strict`` (which rejects anything outside the standard); :data:`ON_NUMPY`,
``ON_TORCH`` and ``ON_JAX`` run the same code on NumPy, PyTorch and JAX arrays (the last two
built on first use, importing their framework then; ``ON_JAX`` traces each op into one XLA
program, :mod:`.jitted`).

>>> import dirac_core as dc, array_api_strict as xp
>>> w = xp.asarray([[3.0, 4.0]])
>>> dc.normalize_filters(w, backend="array_api")
Array([[0.6, 0.8]], dtype=array_api_strict.float64)
"""

from .backend import ON_NUMPY, ArrayApiBackend, on_torch

__all__ = ["ON_JAX", "ON_NUMPY", "ON_TORCH", "ArrayApiBackend"]


def _on_jax() -> ArrayApiBackend:
    from .jitted import JittedBackend

    return JittedBackend()


_LAZY = {"ON_TORCH": on_torch, "ON_JAX": _on_jax}
_built: dict[str, ArrayApiBackend] = {}


def __getattr__(name: str) -> ArrayApiBackend:
    """``ON_TORCH`` and ``ON_JAX``, built (importing their framework) on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        _built[name] = _LAZY[name]()
    return _built[name]
