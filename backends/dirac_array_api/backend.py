"""The ``array_api`` backend: every op of the specification on any Array API namespace.

The maths is in :mod:`.weight`, :mod:`.conv` and :mod:`.pointwise`, written against the
standard only; this class is the wiring to the :class:`dirac_core.Backend` protocol.
``ArrayApiBackend()`` runs on ``array-api-strict`` (the standard's reference, which rejects
anything outside it); ``ArrayApiBackend(namespace)`` on any other namespace, e.g.
:data:`ON_NUMPY` on NumPy through ``array-api-compat``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat
import array_api_compat.numpy
import numpy as np

from dirac_core.backend import Availability
from dirac_core.validation import FLOAT_DTYPES

from . import conv as convolution
from . import pointwise, weight


def _strict() -> ModuleType:
    import array_api_strict

    return array_api_strict


class ArrayApiBackend:
    """The specification on one Array API namespace.

    Parameters
    ----------
    xp : module, optional
        An Array API namespace (``array_api_strict``, ``array_api_compat.numpy``, ...);
        default ``array_api_strict``.
    name : str
        The name reports use (default ``"array_api"``).

    Examples
    --------
    >>> import array_api_compat.numpy as cnp
    >>> ArrayApiBackend(cnp, name="array_api[numpy]").dtypes
    ('float64', 'float32', 'float16')
    """

    def __init__(self, xp: ModuleType | None = None, *, name: str = "array_api") -> None:
        self.xp = _strict() if xp is None else xp
        self.name = name
        self.dtypes: tuple[str, ...] = tuple(
            # each floating dtype of the spec the namespace has (array-api-strict: only the
            # standard's float32 and float64)
            d for d in FLOAT_DTYPES if hasattr(self.xp, d))
        # compat's view of the namespace (for NumPy: array_api_compat.numpy, not numpy).
        self._namespace = array_api_compat.array_namespace(self.xp.asarray(0.0))

    def __repr__(self) -> str:
        return f"ArrayApiBackend({self.xp.__name__}, name={self.name!r})"

    def available(self) -> Availability:
        return Availability(True)

    def owns(self, x: object) -> bool:
        if not array_api_compat.is_array_api_obj(x):
            return False
        return array_api_compat.array_namespace(x) is self._namespace

    def from_numpy(self, a: np.ndarray, device: Any = None) -> Any:
        return self.xp.asarray(np.array(a, copy=True), device=device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x)

    def device(self, x: Any) -> Any:
        return array_api_compat.device(x)

    def dirac_tensor(self, shape, *, groups, policy, dtype, device):
        dt = getattr(self.xp, dtype or "float64")
        return weight.dirac_tensor(self.xp, shape, groups, policy, dt, device)

    def normalize_filters(self, w, *, eps):
        return weight.normalize_filters(w, eps)

    def normalize_filters_vjp(self, g, w, *, eps):
        return weight.normalize_filters_vjp(g, w, eps)

    def dirac_weight(self, w, alpha, beta, *, eps, normalize, groups, policy):
        return weight.dirac_weight(w, alpha, beta, eps, normalize, groups, policy)

    def dirac_weight_vjp(self, g, w, alpha, beta, *, eps, normalize, groups, policy):
        return weight.dirac_weight_vjp(g, w, alpha, beta, eps, normalize, groups, policy)

    def ncrelu(self, x, *, axis):
        return pointwise.ncrelu(x, axis)

    def ncrelu_vjp(self, g, x, *, axis):
        return pointwise.ncrelu_vjp(g, x, axis)

    def conv(self, x, w, bias, *, stride, padding, dilation, groups):
        return convolution.conv(x, w, bias, stride, padding, dilation, groups)

    def conv_vjp(self, g, x, w, bias, *, stride, padding, dilation, groups):
        return convolution.conv_vjp(g, x, w, bias, stride, padding, dilation, groups)

    def fold_batchnorm(self, weight, bias, gamma, beta, mean, var, *, eps):
        return pointwise.fold_batchnorm(weight, bias, gamma, beta, mean, var, eps)


ON_NUMPY = ArrayApiBackend(array_api_compat.numpy, name="array_api[numpy]")
"""The same code on NumPy arrays through ``array-api-compat`` (float64, float32, float16)."""
