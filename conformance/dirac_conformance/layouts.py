"""Memory layouts: each array operand reaches the backend as its own array type, laid out one of
several ways, so that a kernel reading raw memory as if it were contiguous gets wrong numbers.

The spec says results depend on values only. An operand's values are fixed by the example; its
*layout* is one more drawn dimension:

- ``contiguous``: a fresh C-ordered array (``from_numpy``);
- ``fortran``: the axes reversed in memory (a transposed view of a transposed array);
- ``channels_last``: axis 1 last in memory (NHWC-style), a permuted view;
- ``stepped``: every other element along every axis of a twice-as-large array (a per-channel
  ``alpha`` that is a strided view of a larger one, for instance);
- ``reversed``: negative strides along axis 0 (where the array type has them: NumPy and CuPy;
  PyTorch has none, and then the operand is contiguous);
- ``offset``: a view starting a few elements into a larger buffer;
- ``sliced``: the leading block of a buffer two larger along every axis but the first
  (``big[:, :C, ..., :n]``, what ``torch.chunk`` of an NCReLU output gives): the last stride is
  one, yet the rows are not packed, so a kernel that checks only the innermost stride reads
  the buffer's padding.

Every view is made with the array type's own indexing, ``permute_dims``/``permute`` and
``reshape`` from an array ``from_numpy`` returned, so it is the backend's own array type; the
elements a view skips hold NaN, which a kernel that reads them passes on to its result. Array
types without strides (JAX, ``array-api-strict``) get contiguous arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LAYOUTS = ("contiguous", "fortran", "channels_last", "stepped", "reversed", "offset",
           "sliced")

_FILL = np.nan  # in the elements a view skips


def native(target: Any, values: np.ndarray, dtype: str, layout: str = "contiguous") -> Any:
    """``values`` (float64, exact in ``dtype``) as the target's array of ``dtype`` in ``layout``.

    A layout the array type cannot express (negative strides in PyTorch, a permutation of
    fewer than two axes) falls back to a contiguous array: users cannot hand those over either.

    Parameters
    ----------
    target : dirac_conformance.target.Target
        The backend and device (``from_numpy``).
    values : numpy.ndarray
        The operand's values.
    dtype : str
        The dtype it is handed over in.
    layout : str
        One of :data:`LAYOUTS`.

    Examples
    --------
    >>> from dirac_conformance.target import load_target
    >>> x = native(load_target("numpy"), np.arange(6.0).reshape(2, 3), "float64", "stepped")
    >>> x.tolist(), x.flags.c_contiguous
    ([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], False)
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS}")
    values = np.asarray(values, dtype=np.float64)
    if layout == "contiguous" or not _strided(target):
        return target.from_numpy(values, dtype)
    order = _order(layout, values.ndim)
    if order is not None:
        inverse = tuple(int(i) for i in np.argsort(order))
        stored = target.from_numpy(np.ascontiguousarray(values.transpose(order)), dtype)
        return _permuted(stored, inverse)
    if layout == "stepped" and values.ndim:
        big = np.full(tuple(2 * n for n in values.shape), _FILL)
        big[tuple(slice(None, None, 2) for _ in values.shape)] = values
        return target.from_numpy(big, dtype)[tuple(slice(None, None, 2) for _ in values.shape)]
    if layout == "sliced" and values.ndim > 1:
        big = np.full((values.shape[0], *(n + 2 for n in values.shape[1:])), _FILL)
        block = tuple(slice(0, n) for n in values.shape)
        big[block] = values
        return target.from_numpy(big, dtype)[block]
    if layout in ("offset", "stepped", "sliced"):  # 0-d "stepped", 0-d and 1-d "sliced"
        start = 3
        flat = np.concatenate([np.full(start, _FILL), values.reshape(-1), np.full(2, _FILL)])
        stored = target.from_numpy(flat, dtype)
        return _reshaped(stored[start:start + values.size], values.shape)
    if layout == "reversed" and values.ndim:
        stored = target.from_numpy(np.ascontiguousarray(values[::-1]), dtype)
        try:
            return stored[(slice(None, None, -1),) + (slice(None),) * (values.ndim - 1)]
        except (ValueError, IndexError, TypeError, NotImplementedError):
            pass  # no negative strides in this array type (PyTorch)
    return target.from_numpy(values, dtype)


_STRIDED: dict[type, bool] = {}


def _strided(target: Any) -> bool:
    """Whether the target's arrays have a memory layout to vary (strides): NumPy, CuPy and
    PyTorch arrays do; JAX arrays and ``array-api-strict`` ones expose none, so every view of
    them is a new array and varying the layout only costs time."""
    kind = type(target.backend)
    if kind not in _STRIDED:
        probe = target.from_numpy(np.zeros(2), "float64" if "float64" in target.dtypes
                                  else target.dtypes[0])
        _STRIDED[kind] = hasattr(probe, "strides") or callable(getattr(probe, "stride", None))
    return _STRIDED[kind]


def _order(layout: str, ndim: int) -> tuple[int, ...] | None:
    """The memory order of the axes of a permuted layout, or None."""
    if ndim < 2 or layout not in ("fortran", "channels_last"):
        return None
    if layout == "fortran":
        return tuple(range(ndim))[::-1]
    return (0, *range(2, ndim), 1)


def _permuted(x: Any, axes: tuple[int, ...]) -> Any:
    """The array's own permutation: PyTorch's ``permute``, the NumPy-style ``transpose`` of
    NumPy, CuPy and JAX, or the Array API's ``permute_dims`` (``array-api-strict``)."""
    if hasattr(x, "permute"):
        return x.permute(*axes)
    if hasattr(x, "transpose"):
        return x.transpose(axes)
    return x.__array_namespace__().permute_dims(x, axes)


def _reshaped(x: Any, shape: tuple[int, ...]) -> Any:
    if hasattr(x, "reshape"):
        return x.reshape(shape)
    return x.__array_namespace__().reshape(x, shape)
