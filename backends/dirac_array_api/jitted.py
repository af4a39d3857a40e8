"""The adapter on ``jax.numpy`` with each op traced into one XLA program.

Outside a trace every ``jax.numpy`` function is an XLA program of its own, compiled once for
each new input shape (tens of milliseconds on a CPU). The spec's maths calls dozens of array
functions per op, so an eager call of a new shape compiles dozens of programs; a stream of
varied shapes (the conformance suite) spends nearly all its time compiling.
:class:`JittedBackend` hands :mod:`dirac_core` the same namespace *inside* :func:`jax.jit`
instead: one program per op and shape, compiled once and reused.

- ``eps`` travels as data (a 0-d array of the working dtype, brought into range on the host by
  :func:`~dirac_core.normalize.working_eps`), not as a compile-time constant.
- The Dirac tensor depends on its shape alone: it is built from its geometry as data
  (:func:`dirac_core.delta.is_tap` on index grids), in one program per power-of-two block of
  its ``(O, L)`` rows, and cropped on the host; the weight programs take it as data
  (:func:`dirac_core.weight.combine`), so they do not depend on ``groups`` or ``policy``.
- Arrays reach the device by :func:`jax.device_put`, which compiles nothing (``asarray``
  compiles a copy for each new shape).
- XLA's algebraic simplifier is off in these programs: it turns a division by a broadcast
  value into a product with its reciprocal, which is not correctly rounded and moves the
  normalization's clamp at an exact ``||v|| == eps`` tie to the other branch. Code generation
  is the cheapest XLA has (:data:`COMPILER_OPTIONS`): a compile costs more than the small
  programs of a stream of new shapes save by being optimized.

XLA on CPU still flushes subnormal numbers to zero, inputs and results alike; the suite's
subnormal cases are this backend's known failures (``xfails.jsonl`` next to this module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from dirac_core import activation, batchnorm, convolution, normalize, weight
from dirac_core.backend import Array
from dirac_core.delta import WeightGeometry, is_tap, weight_geometry
from dirac_core.padding import Pairs
from dirac_core.xp import work_dtype

from .backend import ArrayApiBackend, Shape

F = TypeVar("F", bound=Callable[..., Any])

COMPILER_OPTIONS = {"xla_disable_hlo_passes": "algsimp", "xla_backend_optimization_level": 0,
                    "xla_cpu_use_fusion_emitters": False}
"""XLA options of every program: no algebraic simplifier (division stays division), and
the cheapest code generation (no LLVM optimizations, XLA's older loop emitters), which
compiles several times faster; these programs are small and run once or a few times."""

LEAST_BLOCK = 8
"""The least padded length of each axis of the Dirac tensor's program."""


def _compiled(*static: str) -> Callable[[F], F]:
    """:func:`jax.jit` with :data:`COMPILER_OPTIONS`, ``static`` the compile-time arguments."""
    def wrap(fn: F) -> F:
        return cast(F, jax.jit(fn, static_argnames=static, compiler_options=COMPILER_OPTIONS))
    return wrap


def block(n: int) -> int:
    """The padded length of an axis of length ``n``: a power of two, at least
    :data:`LEAST_BLOCK`.

    Examples
    --------
    >>> block(3), block(8), block(9)
    (8, 8, 16)
    """
    return max(LEAST_BLOCK, 1 << (n - 1).bit_length())


@_compiled("rows", "cols", "dtype")
def _taps(geometry: Array, *, rows: int, cols: int, dtype: str) -> Array:
    """The Dirac tensor's ``(O, L)`` rows, padded to ``(rows, cols)`` (no ones there)."""
    geo = WeightGeometry(*(geometry[i] for i in range(len(WeightGeometry._fields))))
    grid = jnp.arange(rows)[:, None], jnp.arange(cols)[None, :]
    return jnp.astype(is_tap(geo, *grid), dtype)


_normalized = _compiled()(normalize.normalized)
_normalized_vjp = _compiled()(normalize.normalized_vjp)
_combine = _compiled("normalize")(weight.combine)
_combine_vjp = _compiled("normalize")(weight.combine_vjp)
_ncrelu = _compiled("axis")(activation.ncrelu)
_ncrelu_vjp = _compiled("axis")(activation.ncrelu_vjp)
_CONV = ("stride", "padding", "dilation", "groups")
_conv = _compiled(*_CONV)(convolution.conv)
_conv_vjp = _compiled(*_CONV)(convolution.conv_vjp)
_fold = _compiled()(batchnorm.fold_batchnorm)


class JittedBackend(ArrayApiBackend):
    """:class:`~dirac_array_api.ArrayApiBackend` on ``jax.numpy``, each op one compiled
    program per shape (see the module's notes). ``subnormals`` is False: XLA on CPU flushes
    them to zero.

    Examples
    --------
    >>> import numpy as np
    >>> b = JittedBackend()
    >>> w = b.from_numpy(np.array([[3.0, 4.0]], np.float32))
    >>> b.to_numpy(b.normalize_filters(w, eps=1e-12))
    array([[0.6, 0.8]], dtype=float32)
    """

    def __init__(self, *, name: str = "array_api[jax]") -> None:
        super().__init__(jnp, name=name, subnormals=False)

    def from_numpy(self, a: np.ndarray, device: Any = None) -> Any:
        return self._kept(a, jax.device_put(np.array(a, copy=True), self._device(device)))

    def _eps(self, eps: float, dtype: Any) -> np.ndarray:
        """``eps`` in range, as a 0-d array of ``dtype``'s working dtype."""
        work = np.dtype(work_dtype(np.dtype(dtype)))
        return np.asarray(normalize.working_eps(eps, work, subnormals=self.subnormals), work)

    def dirac_tensor(self, shape: Shape, *, groups: int, policy: str, dtype: str | None,
                     device: Any) -> Array:
        geo = weight_geometry(shape, groups, policy)
        rows = _taps(np.asarray(geo), rows=block(geo.out_channels), cols=block(geo.length),
                     dtype=dtype or "float64")
        cropped = np.asarray(rows)[:geo.out_channels, :geo.length].reshape(shape)
        return self.from_numpy(cropped, device)

    def _delta(self, w: Array, groups: int, policy: str) -> Array:
        """The Dirac tensor of ``w``'s shape in its working dtype, on its device."""
        work = np.dtype(work_dtype(np.dtype(w.dtype))).name
        return self.dirac_tensor(tuple(w.shape), groups=groups, policy=policy, dtype=work,
                                 device=self.device(w))

    def normalize_filters(self, w: Array, *, eps: float) -> Array:
        return _normalized(w, self._eps(eps, w.dtype))

    def normalize_filters_vjp(self, g: Array, w: Array, *, eps: float) -> Array:
        return _normalized_vjp(g, w, self._eps(eps, w.dtype))

    def dirac_weight(self, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool,
                     groups: int, policy: str) -> Array:
        return _combine(w, alpha, beta, self._delta(w, groups, policy), self._eps(eps, w.dtype),
                        normalize=normalize)

    def dirac_weight_vjp(self, g: Array, w: Array, alpha: Array, beta: Array, *, eps: float,
                         normalize: bool, groups: int, policy: str
                         ) -> tuple[Array, Array, Array]:
        result: tuple[Array, Array, Array] = _combine_vjp(
            g, w, alpha, beta, self._delta(w, groups, policy), self._eps(eps, w.dtype),
            normalize=normalize)
        return result

    def ncrelu(self, x: Array, *, axis: int) -> Array:
        return _ncrelu(x, axis=axis)

    def ncrelu_vjp(self, g: Array, x: Array, *, axis: int) -> Array:
        return _ncrelu_vjp(g, x, axis=axis)

    def conv(self, x: Array, w: Array, bias: Array | None, *, stride: Shape,
             padding: str | Pairs, dilation: Shape, groups: int) -> Array:
        return _conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                     groups=groups)

    def conv_vjp(self, g: Array, x: Array, w: Array, bias: Array | None, *, stride: Shape,
                 padding: str | Pairs, dilation: Shape, groups: int
                 ) -> tuple[Array, Array, Array | None]:
        result: tuple[Array, Array, Array | None] = _conv_vjp(
            g, x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
        return result

    def fold_batchnorm(self, weight: Array, bias: Array | None, gamma: Array, beta: Array,
                       mean: Array, var: Array, *, eps: float) -> tuple[Array, Array]:
        result: tuple[Array, Array] = _fold(weight, bias, gamma, beta, mean, var, eps)
        return result

