"""dirac_array_api: the specification written against the Python Array API standard.

Any library with an Array API namespace (NumPy through ``array-api-compat``,
``array-api-strict``, JAX, CuPy, PyTorch through compat, ...) gets every op of the
specification, forward and VJP, from these modules, without a line of its own. Only standard
functions are used: no in-place updates (JAX has none), no ``pad``, no ``split``, no
convolution; the convolution is built from slicing, ``stack``, ``concat`` and ``matmul`` (see
:mod:`dirac_array_api.conv` for how, and what it costs).

Registered as ``array_api`` in the ``dirac_core.backends`` entry-point group, running on
``array-api-strict`` (which rejects anything outside the standard);
:data:`dirac_array_api.backend.ON_NUMPY` runs the same code on NumPy through compat.

>>> import dirac_core as dc, array_api_strict as xp
>>> w = xp.asarray([[3.0, 4.0]])
>>> dc.normalize_filters(w, backend="array_api")
Array([[0.6, 0.8]], dtype=array_api_strict.float64)
"""

from .backend import ON_NUMPY, ArrayApiBackend

__all__ = ["ON_NUMPY", "ArrayApiBackend"]
