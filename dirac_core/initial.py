"""A Dirac layer's initial scales, the one rule of every framework's Dirac layers and of
every network door (builders, registries, training settings, the command line).

It reads an initial value given as an array of any library (through the backend that owns
it), so it sits above :mod:`dirac_core.registry`, not in :mod:`dirac_core.validation`, which
the registry imports.
"""

from __future__ import annotations

import sys
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
    be a finite number ``>= 0`` (a Dirac layer starts as a scaled identity plus a scaled
    normalized ``W``; a negative start flips the identity), and finite in the parameters'
    ``dtype`` (a dtype name): ``1e40`` is fine in float64 but would be ``inf`` in float32.

    Raises
    ------
    TypeError
        A bool, a non-numeric value, a list of non-numbers, a non-floating array.
    ValueError
        A shape other than ``()`` or ``(O,)``; a vector without ``per_channel``; an entry that
        is negative, NaN or infinite (in float64 or in ``dtype``).

    Examples
    --------
    >>> initial_scale([1.0, 2.0], "alpha_init", 2, True, "float32")
    array([1., 2.])
    >>> initial_scale(1e40, "alpha_init", 2, False, "float32")
    Traceback (most recent call last):
    ...
    ValueError: alpha_init must be finite in the parameters' dtype float32, got 1e+40
    >>> initial_scale(np.array([1.0, -1.0]), "beta_init", 2, True, "float64")
    Traceback (most recent call last):
    ...
    ValueError: beta_init must be a finite number >= 0 in every entry, got array([ 1., -1.])
    """
    if isinstance(value, list | tuple):
        try:
            value = np.asarray(value, dtype=np.float64)
        except OverflowError:  # an int beyond float64 (10**400)
            raise ValueError(f"{name} has an entry beyond float64's range (largest "
                             f"{sys.float_info.max:.4g}), got {ck.describe(value)}") from None
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numbers, got {ck.describe(value)}") from exc
    vector = ck.scale_is_vector(per_channel, name)
    if ck.scale_shape(value, name, out_channels) and not vector:
        raise ValueError(
            f"{name} has shape ({out_channels},) but per_channel={per_channel!r}; pass a "
            f"scalar or per_channel=True"
        )
    if ck.is_python_or_numpy_scalar(value):  # not through float32: 1e40 must stay finite
        host = np.asarray(ck.as_float(value, name))
    else:
        host = np.asarray(_to_host(value), dtype=np.float64)
    if not (np.isfinite(host).all() and (host >= 0).all()):
        entries = "" if host.ndim == 0 else " in every entry"
        raise ValueError(f"{name} must be a finite number >= 0{entries}, got "
                         f"{ck.describe(value)}")
    with np.errstate(over="ignore"):  # an overflow to inf is what the check looks for
        finite = np.isfinite(host.astype(numpy_dtype(dtype)).astype(np.float64)).all()
    if not finite:
        raise ValueError(f"{name} must be finite in the parameters' dtype {dtype}, got "
                         f"{ck.describe(value)}")
    return np.broadcast_to(host, (out_channels,)).copy() if vector else host.copy()


def check_init(init: Any) -> None:
    """Check a network's initial values (a :class:`dirac_core.catalog.Init`): scales that
    :func:`initial_scale` accepts as real scalars, a positive finite ``init_std`` and known
    ``weight``/``bn_weight``/``classifier`` choices. Used wherever a network's
    ``alpha_init``/``beta_init``/``init_std`` are given (a builder, ``create_model``, a
    training config, the command line).

    Raises
    ------
    TypeError
        A scale or ``init_std`` that is not a real number (a bool is not one).
    ValueError
        A negative, NaN or infinite scale; an ``init_std`` that is not > 0; an unknown choice.

    Examples
    --------
    >>> from dirac_core.catalog import Init
    >>> check_init(Init(alpha=-1.0))
    Traceback (most recent call last):
    ...
    ValueError: alpha_init must be a finite number >= 0, got -1.0
    """
    for value, name in ((init.alpha, "alpha_init"), (init.beta, "beta_init")):
        # A network's scales are numbers (they are saved as JSON), not arrays.
        if not ck.is_real(value):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}: "
                            f"{ck.describe(value)}")
        initial_scale(value, name, 1, False, "float64")
    ck.positive_number(init.init_std, "init_std")
    ck.one_of(init.weight, "weight", ck.WEIGHT_INITS)
    ck.one_of(init.bn_weight, "bn_weight", ck.BN_INITS)
    ck.one_of(init.classifier, "classifier", ck.CLASSIFIER_INITS)


def _to_host(x: Any) -> np.ndarray:
    """An array of any backend's library on the host (a torch tensor that requires grad, on
    a GPU or in bfloat16 included)."""
    if isinstance(x, np.ndarray):
        return x
    return np.asarray(infer_backend(x).to_numpy(x))
