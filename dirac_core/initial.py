"""A Dirac layer's initial scales, the one rule of every framework's Dirac layers.

It reads an initial value given as an array of any library (through the backend that owns
it), so it sits above :mod:`dirac_core.registry`, not in :mod:`dirac_core.validation`, which
the registry imports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import validation as ck
from .registry import infer_backend
from .xp import numpy_dtype


def initial_scale(value: Any, name: str, out_channels: int, per_channel: bool | str,
                  dtype: str) -> np.ndarray:
    """A Dirac layer's initial ``alpha``/``beta`` (``name`` is ``"alpha_init"`` or
    ``"beta_init"``), checked, as a float64 NumPy array of shape ``()``, or ``(O,)`` when
    :func:`~dirac_core.validation.scale_is_vector`: the one rule of every framework's Dirac layers.

    Accepted: a real scalar; a floating array of shape ``()`` or ``(O,)`` of any library; a
    list or tuple of numbers (taken as a float64 array). A vector needs ``per_channel=True``
    (``"beta"`` for ``beta_init``); a scalar under them fills every channel. Every entry must
    be finite in the parameters' ``dtype`` (a dtype name): ``1e40`` is fine in float64 but
    would be ``inf`` in float32.

    Raises
    ------
    TypeError
        A bool, a non-numeric value, a list of non-numbers, a non-floating array.
    ValueError
        A shape other than ``()`` or ``(O,)``; a vector without ``per_channel``; an entry that
        is NaN or infinite in ``dtype``.

    Examples
    --------
    >>> initial_scale([1.0, 2.0], "alpha_init", 2, True, "float32")
    array([1., 2.])
    >>> initial_scale(1e40, "alpha_init", 2, False, "float32")
    Traceback (most recent call last):
    ...
    ValueError: alpha_init must be finite in the parameters' dtype float32, got 1e+40
    """
    if isinstance(value, list | tuple):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numbers, got {value!r:.80}") from exc
    vector = ck.scale_is_vector(per_channel, name)
    if ck.scale_shape(value, name, out_channels) and not vector:
        raise ValueError(
            f"{name} has shape ({out_channels},) but per_channel={per_channel!r}; pass a "
            f"scalar or per_channel=True"
        )
    if ck.is_python_or_numpy_scalar(value):  # not through float32: 1e40 must stay finite
        host = np.asarray(float(value))
    else:
        host = np.asarray(_to_host(value), dtype=np.float64)
    with np.errstate(over="ignore"):  # an overflow to inf is what the check looks for
        finite = np.isfinite(host.astype(numpy_dtype(dtype)).astype(np.float64)).all()
    if not finite:
        raise ValueError(f"{name} must be finite in the parameters' dtype {dtype}, got "
                         f"{value!r:.80}")
    return np.broadcast_to(host, (out_channels,)).copy() if vector else host.copy()


def _to_host(x: Any) -> np.ndarray:
    """An array of any backend's library on the host (a torch tensor that requires grad, on
    a GPU or in bfloat16 included)."""
    if isinstance(x, np.ndarray):
        return x
    return np.asarray(infer_backend(x).to_numpy(x))
