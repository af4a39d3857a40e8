"""The reference backend: the specification itself, run on NumPy arrays.

Each method delegates to the module that holds the op's maths, so this file is only wiring.
Registered under the entry-point name ``numpy``; ``dirac_conformance`` compares every other
backend against it in float64.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np

from . import batchnorm, delta, normalize, weight
from .activation import ncrelu as ncrelu_forward
from .activation import ncrelu_vjp
from .backend import Array, Availability
from .convolution import Shape, conv_vjp
from .convolution import conv as conv_forward
from .padding import Pairs

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _ieee(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """``method`` without NumPy's invalid-value warning: a non-finite filter gives NaN by the
    spec's decision (``docs/spec.md``, non-finite input), through ``inf / inf`` or
    ``inf - inf``, and that is the result, not an accident to warn about."""

    @functools.wraps(method)
    def quiet(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with np.errstate(invalid="ignore"):
            return method(*args, **kwargs)

    return quiet


class NumpyBackend:
    """The float64-exact reference (float32 and float16 computed in at least float32)."""

    name = "numpy"
    dtypes: tuple[str, ...] = ("float64", "float32", "float16")

    def available(self) -> Availability:
        return Availability(True)

    def owns(self, x: object) -> bool:
        return isinstance(x, np.ndarray | np.generic)

    def from_numpy(self, a: np.ndarray, device: Any = None) -> np.ndarray:
        if device not in (None, "cpu"):
            raise ValueError(f"device={device!r}: the numpy backend runs on 'cpu' only")
        return np.asarray(a)

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def device(self, x: np.ndarray) -> None:
        return None

    def dirac_tensor(
        self, shape: tuple[int, ...], *, groups: int, policy: str, dtype: Any, device: Any
    ) -> Array:
        self.from_numpy(np.empty(0), device)  # same device check as every other input
        return delta.dirac_tensor(shape, groups, policy, np.dtype(dtype or "float64"))

    @_ieee
    def normalize_filters(self, w: Array, *, eps: float) -> Array:
        return normalize.normalize_filters(w, eps)

    @_ieee
    def normalize_filters_vjp(self, g: Array, w: Array, *, eps: float) -> Array:
        return normalize.normalize_filters_vjp(g, w, eps)

    @_ieee
    def dirac_weight(
        self, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool, groups: int,
        policy: str,
    ) -> Array:
        return weight.dirac_weight(w, alpha, beta, eps, normalize, groups, policy)

    @_ieee
    def dirac_weight_vjp(
        self, g: Array, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool,
        groups: int, policy: str,
    ) -> tuple[Array, Array, Array]:
        return weight.dirac_weight_vjp(g, w, alpha, beta, eps, normalize, groups, policy)

    def ncrelu(self, x: Array, *, axis: int) -> Array:
        return ncrelu_forward(x, axis)

    def ncrelu_vjp(self, g: Array, x: Array, *, axis: int) -> Array:
        return ncrelu_vjp(g, x, axis)

    def conv(
        self, x: Array, w: Array, bias: Array | None, *, stride: Shape, padding: str | Pairs,
        dilation: Shape, groups: int,
    ) -> Array:
        return conv_forward(x, w, bias, stride, padding, dilation, groups)

    def conv_vjp(
        self, g: Array, x: Array, w: Array, bias: Array | None, *, stride: Shape,
        padding: str | Pairs, dilation: Shape, groups: int,
    ) -> tuple[Array, Array, Array | None]:
        return conv_vjp(g, x, w, bias, stride, padding, dilation, groups)

    def fold_batchnorm(
        self, weight: Array, bias: Array | None, gamma: Array, beta: Array, mean: Array,
        var: Array, *, eps: float,
    ) -> tuple[Array, Array]:
        return batchnorm.fold_batchnorm(weight, bias, gamma, beta, mean, var, eps)
