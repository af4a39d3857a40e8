"""A restricted unpickler for the CIFAR "python version" downloads.

The CIFAR-10/100 python archives are pickles of dicts holding a ``uint8`` NumPy array and lists
of labels. A plain :func:`pickle.load` would run whatever callable the file names, so a
tampered download could execute code. :class:`ArrayUnpickler` resolves only the handful of
globals that NumPy arrays need; every other global is refused before anything is called.
"""

from __future__ import annotations

import _codecs
import io
import pickle
from typing import Any, BinaryIO

import numpy as np


def _numpy_function(module_names: tuple[str, ...], name: str) -> Any:
    """The first of ``module.name`` that this NumPy has (``numpy.core`` became ``numpy._core``)."""
    import importlib

    for module_name in module_names:
        try:
            return getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"NumPy has none of {[m + '.' + name for m in module_names]}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_function(("numpy._core.multiarray", "numpy.core.multiarray"),
                                  "_reconstruct")
    frombuffer = _numpy_function(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # protocol <= 2 pickles written by Python 3 spell ``bytes`` as _codecs.encode(str, enc):
        # it only turns text into bytes.
        ("_codecs", "encode"): _codecs.encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = frombuffer
    return allowed


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler that admits only dicts, lists, tuples, numbers, strings, bytes and NumPy arrays.

    Object arrays are refused too (their items would be arbitrary pickled objects).

    Examples
    --------
    >>> import io, pickle, numpy as np
    >>> blob = pickle.dumps({b"data": np.zeros((2, 3), np.uint8), b"labels": [0, 1]})
    >>> ArrayUnpickler(io.BytesIO(blob), encoding="bytes").load()[b"labels"]
    [0, 1]
    """

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name}: this reader only admits NumPy "
                "arrays, dicts, lists and bytes (the file is not a CIFAR python batch, or was "
                "tampered with)"
            ) from None

    def load(self) -> Any:
        result = super().load()
        _refuse_object_arrays(result)
        return result


def _refuse_object_arrays(value: Any) -> None:
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise pickle.UnpicklingError("refused an object-dtype array: only numeric arrays are read")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_object_arrays(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_object_arrays(item)


def safe_load(file: BinaryIO | bytes) -> Any:
    """Load a pickle with :class:`ArrayUnpickler`; Python 2 strings stay ``bytes``.

    Parameters
    ----------
    file
        An open binary file or the pickle's bytes.

    Raises
    ------
    pickle.UnpicklingError
        The pickle names any global other than the NumPy array machinery, or holds objects.
    """
    stream = io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file
    return ArrayUnpickler(stream, encoding="bytes").load()
