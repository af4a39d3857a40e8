"""Eager convolutions of new geometries without one XLA compile each.

A convolution's compiled program depends on its shapes and on its stride, padding, dilation,
groups and rank, so a stream of small convolutions of varied geometry (a test suite, an
interactive session) spends nearly all its time compiling. Every geometry is also a plain
stride-1, unpadded, undilated, ungrouped convolution of the same rank on larger arrays:

- padding: the zeros are written into ``x`` on the host;
- dilation: zeros between the kernel's taps;
- groups: one dense weight, block-diagonal, zero outside each group's block;
- stride: every output position is computed, and the strided ones kept;
- rank: 0-, 1- and 2-d convolutions as 2-d ones (unit spatial axes), 3-d ones as 3-d;
- every axis zero-padded on the high side to a power of two (past the right padding: no real
  output reads there), the kernel's too.

Each added term is a product with at least one zero factor, so every sum adds only exact
zeros: for finite inputs the results are those of the geometry's own program, bit for bit
(``tests/jax/test_padded_conv.py``). A non-finite entry would turn ``0 * inf`` into NaN, so such
inputs take the geometry's own program. So does a geometry that has been called
:data:`OWN_PROGRAM_AFTER` times (a steady shape is worth its compile: the padded program does
more arithmetic) and one whose padded program would do more than :data:`MAX_MACS`
multiply-adds. The gradients come from ``jax.vjp`` of the same padded convolution, cropped
back.
"""

from __future__ import annotations

import collections
from math import prod
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from dirac_core.padding import Pairs, resolve_padding
from dirac_core.xp import work_dtype

from . import eager, ops

OWN_PROGRAM_AFTER = 16
"""Calls of one geometry on the padded path; later calls compile and use its own program."""

MAX_MACS = 1 << 23
"""The most multiply-adds a padded program may do (a few tens of milliseconds on a CPU core,
less than its compile)."""

_SEEN: collections.Counter[tuple[Any, ...]] = collections.Counter()


def _bucket(n: int, least: int) -> int:
    """``n`` rounded up to a power of two, at least ``least``."""
    return max(least, 1 << max(n - 1, 0).bit_length())


SPATIAL_LEAST = 8, 4
"""The least padded length of a spatial axis and of a kernel axis."""


class Plan:
    """How one convolution geometry maps onto its padded stride-1 convolution.

    Lower-rank convolutions are first written as 2-d ones (unit axes in front: length 1,
    kernel 1, stride 1, no padding), so one padded program serves ranks 0, 1 and 2.

    Parameters
    ----------
    x_shape, w_shape : tuple of int
        ``(N, C, L1..Ld)`` and ``(O, C/groups, K1..Kd)``.
    stride, dilation : tuple of int
    padding : "same" or tuple of (int, int)
    groups : int
    """

    def __init__(self, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                 stride: tuple[int, ...], padding: str | Pairs, dilation: tuple[int, ...],
                 groups: int) -> None:
        self.x_shape, self.w_shape, self.groups = x_shape, w_shape, groups
        ndim = len(w_shape) - 2
        rank = 2 if ndim <= 2 else 3
        unit = (1,) * (rank - ndim)
        self.lengths, self.kernel = unit + x_shape[2:], unit + w_shape[2:]
        self.stride, self.dilation = unit + stride, unit + dilation
        self.pads = ((0, 0),) * (rank - ndim) + resolve_padding(padding, w_shape[2:], dilation)
        spread = [d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation, strict=True)]
        long = [n + left + right for n, (left, right) in zip(self.lengths, self.pads,
                                                             strict=True)]
        self.out = tuple((n - k) // s + 1 for n, k, s in zip(long, spread, self.stride,
                                                              strict=True))
        length_least, kernel_least = SPATIAL_LEAST
        kernel = [_bucket(k, kernel_least) for k in spread]
        # Past the right padding, so that every stride-1 output position exists.
        lengths = [_bucket(n + kb - k, length_least) for n, k, kb in zip(long, spread, kernel,
                                                                        strict=True)]
        self.x_padded = (_bucket(x_shape[0], 2), _bucket(x_shape[1], 8), *lengths)
        self.w_padded = (_bucket(w_shape[0], 8), self.x_padded[1], *kernel)
        self.y_padded = (self.x_padded[0], self.w_padded[0],
                         *(n - k + 1 for n, k in zip(lengths, kernel, strict=True)))

    def macs(self) -> int:
        """Multiply-adds of the padded convolution."""
        return prod(self.y_padded) * prod(self.w_padded[1:])

    @staticmethod
    def _spatial(starts: Any, steps: Any, counts: Any) -> tuple[slice, ...]:
        return tuple(slice(a, a + (n - 1) * s + 1, s)
                     for a, s, n in zip(starts, steps, counts, strict=True))

    def _image_region(self) -> tuple[slice, ...]:
        """Where ``x`` lies in the padded image."""
        return (slice(0, self.x_shape[0]), slice(0, self.x_shape[1]), *self._spatial(
            [left for left, _ in self.pads], [1] * len(self.lengths), self.lengths))

    def _output_region(self) -> tuple[slice, ...]:
        """Where the real outputs lie in the padded output: the strided positions."""
        return (slice(0, self.x_shape[0]), slice(0, self.w_shape[0]),
                *self._spatial([0] * len(self.out), self.stride, self.out))

    def _filter_region(self) -> tuple[Any, ...]:
        """Where ``w`` lies in the dense weight: each output channel's group's input
        channels, at the dilated taps."""
        out_channels, per_group = self.w_shape[:2]
        group = np.arange(out_channels) // (out_channels // self.groups)
        rows = np.arange(out_channels)[:, None]
        cols = group[:, None] * per_group + np.arange(per_group)
        return rows, cols, *self._spatial([0] * len(self.kernel), self.dilation, self.kernel)

    @staticmethod
    def _into(shape: tuple[int, ...], region: tuple[Any, ...], a: np.ndarray) -> np.ndarray:
        out = np.zeros(shape, a.dtype)
        out[region] = a.reshape(out[region].shape)
        return out

    # ------------------------------------------------------------------ into the padded form

    def image(self, x: np.ndarray) -> np.ndarray:
        """``x`` inside its zero padding."""
        return self._into(self.x_padded, self._image_region(), x)

    def filters(self, w: np.ndarray) -> np.ndarray:
        """``w`` as a dense, dilated weight (zeros outside its groups and between its taps)."""
        return self._into(self.w_padded, self._filter_region(), w)

    def channels(self, v: np.ndarray | None, dtype: Any) -> np.ndarray:
        """The bias padded with zeros (all zeros for no bias: adding 0 changes no value)."""
        if v is None:
            return np.zeros(self.w_padded[0], dtype)
        return self._into(self.w_padded[:1], (slice(0, v.shape[0]),), v)

    def cotangent(self, g: np.ndarray) -> np.ndarray:
        """``g`` at the strided positions of the padded output, zeros elsewhere."""
        return self._into(self.y_padded, self._output_region(), g)

    # ------------------------------------------------------------------ back from it

    def output(self, y: np.ndarray) -> np.ndarray:
        """The convolution's output from the padded one."""
        ndim = len(self.w_shape) - 2
        out = y[self._output_region()]
        return out.reshape(out.shape[:2] + self.out[len(self.out) - ndim:])

    def image_gradient(self, dx: np.ndarray) -> np.ndarray:
        """The gradient for ``x``, without its padding."""
        return dx[self._image_region()].reshape(self.x_shape)

    def filter_gradient(self, dw: np.ndarray) -> np.ndarray:
        """The gradient for ``w``: its groups' blocks, at its taps."""
        grad: np.ndarray = dw[self._filter_region()].reshape(self.w_shape)
        return grad


def plan_for(arrays: tuple[Any, ...], stride: tuple[int, ...], padding: str | Pairs,
             dilation: tuple[int, ...], groups: int) -> Plan | None:
    """The plan of a call (``arrays``: ``(x, w, bias)`` or ``(g, x, w, bias)``) that takes the
    padded path (see the module's notes), or None; counts the call. The checks that cost
    nothing come first, so a steady geometry pays only them."""
    if not eager.applies(*arrays):
        return None
    x, w = arrays[-3:-1]
    key = (tuple(x.shape), tuple(w.shape), stride, padding, dilation, groups,
           tuple(None if a is None else a.dtype for a in arrays))
    _SEEN[key] += 1
    if _SEEN[key] > OWN_PROGRAM_AFTER:
        return None
    plan = Plan(tuple(x.shape), tuple(w.shape), stride, padding, dilation, groups)
    finite = all(np.isfinite(np.asarray(a, np.float64)).all() for a in arrays if a is not None)
    return plan if finite and plan.macs() <= MAX_MACS else None


def _plain(plan: Plan) -> tuple[tuple[int, ...], Pairs, tuple[int, ...], int]:
    """Stride, padding, dilation and groups of the padded convolution."""
    rank = len(plan.x_padded) - 2
    return (1,) * rank, ((0, 0),) * rank, (1,) * rank, 1


def _padded(plan: Plan, device: Any, g: Any, x: Any, w: Any, bias: Any) -> list[Any]:
    """The operands in their padded forms, on ``device``, in the working dtype (float32 for
    half precision, exactly: so half-precision calls share the float32 programs, and their
    results are rounded once, on the host, as the compiled op would round them)."""
    work = np.dtype(work_dtype(x.dtype, jnp))

    def host(a: Any) -> np.ndarray:
        return np.asarray(a).astype(work)

    arrays = [None if g is None else plan.cotangent(host(g)), plan.image(host(x)),
              plan.filters(host(w)), plan.channels(None if bias is None else host(bias), work)]
    return [None if a is None else jax.device_put(a, device) for a in arrays]


def conv(plan: Plan, x: jax.Array, w: jax.Array, bias: jax.Array | None) -> jax.Array:
    """The convolution through its padded program (``plan`` from :func:`plan_for`)."""
    device = next(iter(x.devices()))
    _, *padded = _padded(plan, device, None, x, w, bias)
    y = ops.conv_jit(*padded, *_plain(plan))
    return cast(jax.Array, jax.device_put(plan.output(np.asarray(y)).astype(x.dtype), device))


def conv_vjp(plan: Plan, vjp: Any, g: jax.Array, x: jax.Array, w: jax.Array,
             bias: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """``(dx, dw, dbias)`` through ``vjp`` (the backend's jitted VJP of ``ops.conv``) of the
    padded convolution (``plan`` from :func:`plan_for`)."""
    device = next(iter(x.devices()))
    dx, dw, dbias = (np.asarray(a) for a in vjp(*_padded(plan, device, g, x, w, bias),
                                                *_plain(plan)))
    grads = (plan.image_gradient(dx).astype(x.dtype), plan.filter_gradient(dw).astype(w.dtype),
             None if bias is None else dbias[:plan.w_shape[0]].astype(bias.dtype))
    return cast("tuple[jax.Array, jax.Array, jax.Array | None]",
                tuple(None if a is None else jax.device_put(a, device) for a in grads))
