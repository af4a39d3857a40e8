"""Eager calls on small inputs without one XLA compile per shape.

Outside any trace an op runs as a compiled XLA program, and XLA compiles one program per
input shape: tens of milliseconds on a CPU, far longer than the op itself takes on a small
filter bank. A stream of small ops of varied shapes (a test suite, an interactive session)
would spend nearly all its time compiling. So small inputs (:data:`MAX_ELEMENTS` elements at
most) are zero-padded, on the host, to power-of-two blocks and run through the *same*
compiled rules as a traced call, then cropped back:

- the weight ops see ``w`` as ``(O, n)`` rows (the filters), padded to ``(bucket(O, 16),
  bucket(n, 256))``: a zero column changes no filter's max-abs, norm or dot product, and a zero
  row (with zero scales, and no ones of the Dirac tensor, which is given by its geometry)
  gives zeros that are cropped away; ``eps`` travels as data. The least sizes are large so
  that every common layer (up to 16 filters of up to 256 entries) shares one program;
- NCReLU sees ``x`` as ``(before, C, after)`` around its axis, each padded, and its two output
  halves are cropped separately;
- batch-norm folding pads the rows and its vectors (the variance with ones).

The convolution has too many static parameters (stride, dilation, padding, groups, rank) for
padding to help; it compiles per shape. Inputs that are tracers or larger than
:data:`MAX_ELEMENTS` run the jitted op for their own shape.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from dirac_core.xp import work_dtype

from . import ops, subnormal

MAX_ELEMENTS = 1 << 16
"""Inputs up to this size take the padded path."""


def bucket(n: int, least: int = 8) -> int:
    """The padded length of an axis of length ``n``: a power of two, at least ``least``."""
    return max(least, 1 << (n - 1).bit_length())


def applies(*arrays: Any) -> bool:
    """Whether every (non-None) array is concrete, on the CPU, and small."""
    given = [a for a in arrays if a is not None]
    return all(
        not isinstance(a, jax.core.Tracer) and a.size <= MAX_ELEMENTS
        and all(d.platform == "cpu" for d in a.devices())
        for a in given
    )


EAGER_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
"""XLA options of the padded programs: no LLVM optimizations, XLA's older loop emitters. A
padded program holds small blocks and is called a few times, so its compile is what costs:
a weight VJP compiles in 0.27 s with these against 0.9 s with the defaults, and runs in 1.2
against 0.3 ms on a ``(16, 512)`` block. Code generation changes; the arithmetic the HLO asks
for (IEEE operations, no fast-math) does not."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _padded_program(static: int | tuple[int, ...]) -> Callable[[_F], _F]:
    """``jax.jit`` with :data:`EAGER_COMPILE` and ``static`` argument numbers."""
    def compiled(fun: _F) -> _F:
        return cast(_F, jax.jit(fun, static_argnums=static, compiler_options=EAGER_COMPILE))
    return compiled


@_padded_program(5)
def _combine(w: jax.Array, alpha: jax.Array, beta: jax.Array, taps: jax.Array, eps: jax.Array,
             normalize: bool) -> jax.Array:
    return ops.combine(w, alpha, beta, taps, eps, normalize)


@_padded_program(6)
def _combine_vjp(g: jax.Array, w: jax.Array, alpha: jax.Array, beta: jax.Array,
                 taps: jax.Array, eps: jax.Array, normalize: bool
                 ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    # The rule itself, not jax.vjp of the op: no forward to trace and compile away.
    dw, dalpha, dbeta = ops.combine_vjp(g, w, alpha, beta, taps, eps, normalize)
    # The totals for 0-d scales, of per-filter values that may be subnormal.
    return dw, dalpha, dbeta, subnormal.total(dalpha), subnormal.total(dbeta)


class _Rows:
    """The ``(O, n)`` row view of a weight, padded to power-of-two blocks."""

    def __init__(self, w: jax.Array) -> None:
        self.shape = tuple(w.shape)
        self.rows, self.cols = self.shape[0], prod(self.shape[1:])
        self.padded = (bucket(self.rows, 16), bucket(self.cols, 256))
        self.dtype, self.work = np.dtype(w.dtype), np.dtype(work_dtype(w.dtype, jnp))
        self.device = next(iter(w.devices()))

    def pad(self, a: Any, dtype: Any = None) -> jax.Array:
        """``a`` (shaped like the weight) padded, in ``dtype`` (default: its own)."""
        host = np.zeros(self.padded, dtype or np.asarray(a).dtype)
        host[:self.rows, :self.cols] = np.asarray(a).reshape(self.rows, self.cols)
        return cast(jax.Array, jax.device_put(host, self.device))

    def rows_of(self, a: Any) -> jax.Array:
        """``a`` padded in the working dtype: half-precision weights are converted (exactly)
        to float32, the dtype their rule computes in, so they share the float32 programs;
        :meth:`crop` rounds the result once, on the host, as the compiled rule would."""
        return self.pad(a, self.work)

    def scale(self, s: Any) -> jax.Array:
        """A 0-d or ``(O,)`` scale as a padded ``(O',)`` vector of the working dtype."""
        host = np.zeros(self.padded[0], self.work)
        host[:self.rows] = np.asarray(s).astype(self.work)
        return cast(jax.Array, jax.device_put(host, self.device))

    def taps(self, groups: int, policy: str) -> jax.Array:
        """The geometry of the unpadded weight: its ones lie in the top-left block."""
        return cast(jax.Array, jax.device_put(ops.taps(self.shape, groups, policy), self.device))

    def plain(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``alpha = 0``, ``beta = 1`` and no taps: plain filter normalization."""
        taps = cast(jax.Array, jax.device_put(ops.NO_TAPS, self.device))
        return self.scale(np.zeros(())), self.scale(np.ones(())), taps

    def eps(self, eps: float) -> jax.Array:
        host = np.asarray(ops.eps_in(self.work, eps), self.work)
        return cast(jax.Array, jax.device_put(host, self.device))

    def crop(self, out: jax.Array) -> jax.Array:
        """The weight's block of ``out``, in the weight's dtype."""
        host = np.asarray(out)[:self.rows, :self.cols].reshape(self.shape).astype(self.dtype)
        return cast(jax.Array, jax.device_put(host, self.device))

    def reduced(self, per_row: jax.Array, total: jax.Array, like: Any) -> jax.Array:
        """A per-row gradient in ``like``'s shape (``()`` or ``(O,)``) and dtype."""
        host = np.asarray(total) if like.ndim == 0 else np.asarray(per_row)[:self.rows]
        return cast(jax.Array, jax.device_put(host.astype(like.dtype), self.device))


def dirac_weight(w: jax.Array, alpha: jax.Array, beta: jax.Array, eps: float, normalize: bool,
                 groups: int, policy: str) -> jax.Array:
    r = _Rows(w)
    out = _combine(r.rows_of(w), r.scale(alpha), r.scale(beta), r.taps(groups, policy),
                   r.eps(eps), normalize)
    return r.crop(out)


def dirac_weight_vjp(g: jax.Array, w: jax.Array, alpha: jax.Array, beta: jax.Array, eps: float,
                     normalize: bool, groups: int, policy: str
                     ) -> tuple[jax.Array, jax.Array, jax.Array]:
    r = _Rows(w)
    dw, dalpha, dbeta, alpha_sum, beta_sum = _combine_vjp(
        r.rows_of(g), r.rows_of(w), r.scale(alpha), r.scale(beta), r.taps(groups, policy),
        r.eps(eps), normalize,
    )
    return r.crop(dw), r.reduced(dalpha, alpha_sum, alpha), r.reduced(dbeta, beta_sum, beta)


def normalize_filters(w: jax.Array, eps: float) -> jax.Array:
    r = _Rows(w)
    out = _combine(r.rows_of(w), *r.plain(), r.eps(eps), True)
    return r.crop(out)


def normalize_filters_vjp(g: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    r = _Rows(w)
    dw, *_ = _combine_vjp(r.rows_of(g), r.rows_of(w), *r.plain(), r.eps(eps), True)
    return r.crop(dw)


# ---------------------------------------------------------------------------- NCReLU

_ncrelu = _padded_program(1)(ops.ncrelu)


@_padded_program(2)
def _ncrelu_vjp(g: jax.Array, x: jax.Array, axis: int) -> jax.Array:
    _, pull = jax.vjp(lambda v: ops.ncrelu(v, axis), x)
    return cast(jax.Array, pull(g)[0])


def _padded(host: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, host.dtype)
    out[tuple(slice(0, n) for n in host.shape)] = host
    return out


def _around(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """``shape`` as ``(before, C, after)`` around ``axis``: NCReLU is the same op on that view
    (along its axis 1), so one program serves every rank and axis."""
    return prod(shape[:axis]), shape[axis], prod(shape[axis + 1:])


def _halves(host: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    return host[:, :half], host[:, half:2 * half]


def ncrelu(x: jax.Array, axis: int) -> jax.Array:
    device = next(iter(x.devices()))
    view = _around(tuple(x.shape), axis % x.ndim)
    padded = tuple(bucket(n) for n in view)
    out = np.asarray(_ncrelu(jax.device_put(_padded(np.asarray(x).reshape(view), padded),
                                            device), 1))
    halves = [h[:view[0], :view[1], :view[2]] for h in _halves(out, padded[1])]
    doubled = list(x.shape)
    doubled[axis] *= 2
    host = np.concatenate(halves, axis=1).reshape(doubled)
    return cast(jax.Array, jax.device_put(host, device))


def ncrelu_vjp(g: jax.Array, x: jax.Array, axis: int) -> jax.Array:
    device = next(iter(x.devices()))
    view = _around(tuple(x.shape), axis % x.ndim)
    padded = tuple(bucket(n) for n in view)
    g_view = np.asarray(g).reshape(view[0], 2 * view[1], view[2])
    halves = [_padded(h, padded) for h in _halves(g_view, view[1])]
    dx = _ncrelu_vjp(jax.device_put(np.concatenate(halves, axis=1), device),
                     jax.device_put(_padded(np.asarray(x).reshape(view), padded), device), 1)
    host = np.asarray(dx)[:view[0], :view[1], :view[2]].reshape(x.shape)
    return cast(jax.Array, jax.device_put(host, device))


# ---------------------------------------------------------------------------- folding

_fold = _padded_program(())(ops.fold_batchnorm)


def fold_batchnorm(weight: jax.Array, bias: jax.Array | None, gamma: jax.Array,
                   beta: jax.Array, mean: jax.Array, var: jax.Array, eps: float
                   ) -> tuple[jax.Array, jax.Array]:
    r = _Rows(weight)

    def vector(v: Any, fill: float = 0.0) -> jax.Array:
        host = np.full(r.padded[0], fill, np.asarray(v).dtype)
        host[:r.rows] = np.asarray(v)
        return cast(jax.Array, jax.device_put(host, r.device))

    eps_data = jax.device_put(np.asarray(eps, r.work), r.device)
    new_weight, new_bias = _fold(r.pad(weight), None if bias is None else vector(bias),
                                 vector(gamma), vector(beta), vector(mean), vector(var, 1.0),
                                 eps_data)
    return r.crop(new_weight), jax.device_put(np.asarray(new_bias)[:r.rows], r.device)
