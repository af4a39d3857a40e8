"""A restricted unpickler for the CIFAR "python version" downloads.

The CIFAR-10/100 python archives are pickles of dicts holding a ``uint8`` NumPy array and lists
of labels. A plain :func:`pickle.load` would run whatever callable the file names, so a
tampered download could execute code. :class:`ArrayUnpickler` never hands the pickle a real
callable: the names NumPy's array pickles use (``numpy.core.multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.numeric._frombuffer``, and ``_codecs.encode``
for bytes) resolve to inert recipes that record what the pickle asks for. An array is only
made from bytes the pickle actually holds, after its dtype (plain numbers only), its shape and
its byte count have been checked, and after the caller's ``check_array(shape, dtype)`` has
accepted it: a small pickle can never allocate a large or uninitialised array. Every other
global is refused before anything is called.
"""

from __future__ import annotations

import _codecs
import io
import math
import pickle
from collections.abc import Callable
from typing import Any, BinaryIO, NoReturn

import numpy as np

# what a pickle may name, per module, for the recipes below (numpy.core became numpy._core)
_RECONSTRUCT = {(m, "_reconstruct") for m in ("numpy.core.multiarray", "numpy._core.multiarray")}
_FROMBUFFER = {(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")}
# dtypes an array may have: plain booleans, integers and floats
PLAIN_DTYPES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"})
ArrayCheck = Callable[[tuple[int, ...], np.dtype], None]


def _refuse(message: str) -> NoReturn:
    raise pickle.UnpicklingError(message)


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to: a name, not a constructor (calling it fails)."""


class _DtypeRecipe:
    """``numpy.dtype(spec, align, copy)`` for a plain spec, byte order set by BUILD."""

    def __init__(self, spec: Any, _align: Any = False, _copy: Any = False) -> None:
        if isinstance(spec, bytes):
            spec = spec.decode("ascii", "replace")
        if spec not in PLAIN_DTYPES:
            _refuse(f"refused dtype {spec!r}: only plain numeric arrays are read")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) >= 5 else None
        if isinstance(order, bytes):
            order = order.decode("ascii", "replace")
        if order not in ("|", "<", ">", "=") or any(v is not None for v in state[2:5]):
            _refuse(f"refused a dtype state {state!r}: only plain numeric dtypes are read")
        self.dtype = self.dtype.newbyteorder(order) if order in "<>" else self.dtype


class _ArrayRecipe:
    """``_reconstruct(ndarray, ...)``: an empty placeholder that BUILD fills from raw bytes."""

    def __init__(self, check: ArrayCheck | None, subtype: Any, _shape: Any, _code: Any) -> None:
        if subtype is not _NdarrayName:
            _refuse("refused _reconstruct of something other than numpy.ndarray")
        self.check, self.array = check, None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            _refuse("refused an array state that is not NumPy's")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _make_array(raw, dtype, shape, "F" if fortran else "C", self.check)


def _make_array(raw: Any, dtype: Any, shape: Any, order: Any,
                check: ArrayCheck | None) -> np.ndarray:
    """An array from the pickle's own bytes, after every check (no other allocation)."""
    if not isinstance(dtype, _DtypeRecipe):
        _refuse("refused an array whose dtype is not a plain numeric dtype")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        _refuse(f"refused an array shape {shape!r}")
    if not isinstance(raw, (bytes, bytearray)) or order not in ("C", "F"):
        _refuse("refused an array without its raw bytes")
    count = math.prod(shape)
    if len(raw) != count * dtype.dtype.itemsize:
        _refuse(f"refused an array of shape {shape} and dtype {dtype.dtype}: it needs "
                f"{count * dtype.dtype.itemsize} bytes, the pickle holds {len(raw)}")
    if check is not None:
        check(shape, dtype.dtype)
    return np.frombuffer(raw, dtype.dtype).reshape(shape, order=order).copy()


def _realise(value: Any) -> Any:
    """The loaded value with every recipe replaced by its array (or refused if unfinished)."""
    if isinstance(value, _ArrayRecipe):
        if value.array is None:
            _refuse("refused an array that the pickle never filled")
        return value.array
    if isinstance(value, _DtypeRecipe) or value is _NdarrayName:
        _refuse("refused a bare dtype or array type: only arrays and plain data are read")
    if isinstance(value, dict):
        return {_realise(k): _realise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_realise(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_realise(v) for v in value)
    return value


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler that admits only dicts, lists, tuples, numbers, strings, bytes and plain
    numeric NumPy arrays, built as the module docstring says.

    Parameters
    ----------
    file
        The open pickle.
    check_array : callable, optional
        ``check_array(shape, dtype)``, called for every array before it is made; raise to
        refuse it.

    Examples
    --------
    >>> import io, pickle, numpy as np
    >>> blob = pickle.dumps({b"data": np.zeros((2, 3), np.uint8), b"labels": [0, 1]})
    >>> ArrayUnpickler(io.BytesIO(blob), encoding="bytes").load()[b"labels"]
    [0, 1]
    """

    def __init__(self, file: BinaryIO, *, check_array: ArrayCheck | None = None,
                 **kw: Any) -> None:
        super().__init__(file, **kw)
        self.check_array = check_array

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _RECONSTRUCT:
            return lambda *args: _ArrayRecipe(self.check_array, *args)
        if key in _FROMBUFFER:
            return lambda raw, dtype, shape, order="C": _make_array(raw, dtype, shape, order,
                                                                    self.check_array)
        if key == ("numpy", "ndarray"):
            return _NdarrayName
        if key == ("numpy", "dtype"):
            return _DtypeRecipe
        if key == ("_codecs", "encode"):  # py2-protocol pickles spell bytes as encode(str)
            return _codecs.encode
        raise pickle.UnpicklingError(
            f"refused to load global {module}.{name}: this reader only admits NumPy "
            "arrays, dicts, lists and bytes (the file is not a CIFAR python batch, or was "
            "tampered with)"
        )

    def load(self) -> Any:
        try:
            return _realise(super().load())
        except pickle.UnpicklingError:
            raise
        except Exception as exc:  # garbage bytes fail in many ways; all are "not a pickle"
            raise pickle.UnpicklingError(
                f"not a readable pickle ({type(exc).__name__}: {exc})") from None


def safe_load(file: BinaryIO | bytes, check_array: ArrayCheck | None = None) -> Any:
    """Load a pickle with :class:`ArrayUnpickler`; Python 2 strings stay ``bytes``.

    Parameters
    ----------
    file
        An open binary file or the pickle's bytes.
    check_array
        See :class:`ArrayUnpickler`.

    Raises
    ------
    pickle.UnpicklingError
        The pickle names any global other than the NumPy array machinery, holds objects or
        an array that is not plain numbers or does not match its bytes, or is not a pickle.
    """
    stream = io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file
    return ArrayUnpickler(stream, check_array=check_array, encoding="bytes").load()
