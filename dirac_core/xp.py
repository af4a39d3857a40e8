"""The array namespace of the inputs, the device they live on and the dtype arithmetic runs in.

The specification's maths (:mod:`.delta`, :mod:`.normalize`, :mod:`.weight`,
:mod:`.activation`, :mod:`.batchnorm`, :mod:`.convolution`) is written once, against the
Python Array API standard: the functions NumPy >= 2 has in its own namespace, so the
reference runs on ``numpy`` itself. Arrays of any other library (CuPy, JAX, PyTorch,
array-api-strict, ...) get their namespace from ``array-api-compat``, imported only then, so
``import dirac_core`` imports no framework.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def _numpy(a: Any) -> bool:
    return isinstance(a, np.ndarray | np.generic)


def namespace(*arrays: Any) -> ModuleType:
    """``numpy`` for NumPy arrays (``None`` entries ignored), else the Array API namespace
    ``array-api-compat`` gives the arrays' library.

    Raises
    ------
    TypeError
        Arrays of different libraries (from ``array-api-compat``).
    """
    given = [a for a in arrays if a is not None]
    if all(_numpy(a) for a in given):
        return np
    import array_api_compat

    module: ModuleType = array_api_compat.array_namespace(*given)
    return module


def device_of(x: Any) -> Any:
    """The device of ``x``, for arrays created next to it (``None`` for NumPy)."""
    if _numpy(x):
        return None
    import array_api_compat

    return array_api_compat.device(x)


def work_dtype(dtype: Any, xp: ModuleType = np) -> Any:
    """The dtype arithmetic runs in: float32 for half precision (float16, bfloat16), else
    ``dtype`` (a NumPy dtype when ``xp`` is NumPy).

    Examples
    --------
    >>> work_dtype(np.float16), work_dtype(np.float64)
    (dtype('float32'), dtype('float64'))
    """
    if xp is np:
        return np.promote_types(dtype, np.float32)
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype that carries the spec dtype ``name`` to and from NumPy: NumPy's own, or
    ``ml_dtypes``' bfloat16, which NumPy lacks.

    Raises
    ------
    ImportError
        ``name`` is ``"bfloat16"`` and ``ml_dtypes`` is not installed.

    Examples
    --------
    >>> numpy_dtype("float16"), numpy_dtype("bfloat16")
    (dtype('float16'), dtype(bfloat16))
    """
    if name != "bfloat16":
        return np.dtype(name)
    import ml_dtypes

    carrier: np.dtype = np.dtype(ml_dtypes.bfloat16)
    return carrier


def array_module(*arrays: Any) -> ModuleType:
    """``cupy`` if any argument is a CuPy array, else ``numpy``: the array module of code
    written against NumPy's own API rather than the standard (the CuPy backend's host mirror
    of its fused kernels); the specification's maths uses :func:`namespace`."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy

            module: ModuleType = cupy
            return module
    return np
