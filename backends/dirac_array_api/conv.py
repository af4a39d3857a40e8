"""N-d convolution and its exact VJP from standard Array API functions (the standard has no
convolution, no ``pad`` and, for JAX's sake, no in-place update may be used).

How it is built, and what it costs, for ``T = prod(K)`` kernel taps:

- *padding*: ``concat`` with zero blocks, one spatial axis at a time (one copy of the input
  per padded axis);
- *forward*: im2col. Each tap is a strided slice of the padded input
  (``x[..., k*d : k*d + s*(n-1) + 1 : s]``); ``stack`` gathers the ``T`` slices into columns
  ``(groups, C/groups * T, N * prod(out))`` and one batched ``matmul`` with the
  ``(groups, O/groups, C/groups * T)`` weight does the sums, in BLAS where the library has it.
  Memory: ``T`` times the output's spatial size per input channel (9x for a 3x3 kernel);
- *dw*: one ``matmul`` of the output gradient with the same columns;
- *dx* (col2im without scatter): ``matmul`` gives each tap's contribution at the output
  positions; each is moved to the input positions it came from by inserting ``s - 1`` zeros
  between elements (``stack`` with zeros, then ``reshape``) and padding with zero blocks by
  ``k*d`` on the left; the ``T`` full-size arrays are summed. That is ``T`` input-sized
  temporaries and additions where a scatter-add would touch each element once.

So the price of portability is memory and bandwidth (``~T`` times an input or output per
call), not arithmetic: the multiply-adds are the same as a direct convolution's. Half inputs
are computed in float32 and rounded once at the end.
"""

from __future__ import annotations

import itertools
from math import prod
from types import ModuleType
from typing import Any

from array_api_compat import device

from dirac_core.padding import Pairs, conv_output_shape, resolve_padding

from .namespace import namespace, to_work


def _taps(kernel: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(k) for k in kernel)))


def _tap_slices(tap: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
                out: tuple[int, ...]) -> tuple[slice, ...]:
    """Index of the ``(N, C, *out)`` window of the padded input that kernel tap ``tap`` sees."""
    spatial = tuple(slice(k * d, k * d + s * (n - 1) + 1, s)
                    for k, s, d, n in zip(tap, stride, dilation, out, strict=True))
    return (slice(None), slice(None), *spatial)


def _pad(xp: ModuleType, x: Any, pads: Pairs) -> Any:
    """Zero-pad the spatial axes of ``(N, C, *S)`` by ``(left, right)`` pairs with ``concat``."""
    for axis, (left, right) in enumerate(pads, start=2):
        blocks = []
        for size in (left, right):
            shape = tuple(size if a == axis else n for a, n in enumerate(x.shape))
            blocks.append(xp.zeros(shape, dtype=x.dtype, device=device(x)) if size else None)
        parts = [p for p in (blocks[0], x, blocks[1]) if p is not None]
        x = xp.concat(parts, axis=axis) if len(parts) > 1 else x
    return x


def _spread(xp: ModuleType, x: Any, axis: int, stride: int) -> Any:
    """``stride - 1`` zeros inserted between consecutive elements along ``axis``."""
    if stride == 1:
        return x
    n = x.shape[axis]
    zeros = xp.zeros_like(x)
    woven = xp.stack([x] + [zeros] * (stride - 1), axis=axis + 1)
    shape = (*x.shape[:axis], n * stride, *x.shape[axis + 1:])
    keep = tuple(slice(0, stride * (n - 1) + 1) if a == axis else slice(None)
                 for a in range(x.ndim))
    return xp.reshape(woven, shape)[keep]


def _columns(xp: ModuleType, x_pad: Any, kernel: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...], out: tuple[int, ...], groups: int) -> Any:
    """im2col: ``(G, C/G * T, N * prod(out))`` from a padded ``(N, C, *S)`` input."""
    n, c = x_pad.shape[:2]
    taps = [x_pad[_tap_slices(t, stride, dilation, out)] for t in _taps(kernel)]
    cols = xp.reshape(xp.stack(taps, axis=2), (n, groups, c // groups, len(taps), prod(out)))
    cols = xp.permute_dims(cols, (1, 2, 3, 0, 4))
    # Explicit sizes, not -1: an empty batch (n == 0) must still reshape.
    return xp.reshape(cols, (groups, (c // groups) * len(taps), n * prod(out)))


def _geometry(x: Any, w: Any, stride: tuple[int, ...], padding: str | Pairs,
              dilation: tuple[int, ...]) -> tuple[tuple[int, ...], Pairs, tuple[int, ...]]:
    kernel = tuple(w.shape[2:])
    out = conv_output_shape(tuple(x.shape), tuple(w.shape), stride, padding, dilation)[2:]
    return kernel, resolve_padding(padding, kernel, dilation), out


def _weight_matrix(xp: ModuleType, w: Any, groups: int) -> Any:
    """``(G, O/G, C/G * T)`` in the working dtype."""
    o = w.shape[0]
    return xp.reshape(to_work(xp, w), (groups, o // groups, prod(w.shape[1:])))


def conv(x: Any, w: Any, bias: Any, stride: tuple[int, ...], padding: str | Pairs,
         dilation: tuple[int, ...], groups: int) -> Any:
    """``y[n, o, p] = b[o] + sum_{i,k} x_pad[n, g*Ni + i, p*s + k*d] * w[o, i, k]``."""
    xp = namespace(x, w, bias)
    kernel, pads, out = _geometry(x, w, stride, padding, dilation)
    x_pad = _pad(xp, to_work(xp, x), pads)
    cols = _columns(xp, x_pad, kernel, stride, dilation, out, groups)
    n, o = x.shape[0], w.shape[0]
    y = xp.reshape(_weight_matrix(xp, w, groups) @ cols, (o, n, *out))
    y = xp.permute_dims(y, (1, 0, *range(2, y.ndim)))
    if bias is not None:
        y = y + xp.reshape(to_work(xp, bias), (o,) + (1,) * len(out))
    return xp.astype(y, x.dtype)


def conv_vjp(g: Any, x: Any, w: Any, bias: Any, stride: tuple[int, ...],
             padding: str | Pairs, dilation: tuple[int, ...], groups: int
             ) -> tuple[Any, Any, Any]:
    """``(dx, dw, dbias)``: ``dw = g_mat @ cols^T``; ``dx`` the spread-and-sum col2im of
    ``w_mat^T @ g_mat``; ``dbias`` the sum of ``g`` over batch and space."""
    xp = namespace(g, x, w, bias)
    kernel, pads, out = _geometry(x, w, stride, padding, dilation)
    x_pad = _pad(xp, to_work(xp, x), pads)
    cols = _columns(xp, x_pad, kernel, stride, dilation, out, groups)
    n, c, o = x.shape[0], x.shape[1], w.shape[0]
    grad = to_work(xp, g)
    g_mat = xp.permute_dims(xp.reshape(grad, (n, o, prod(out))), (1, 0, 2))
    g_mat = xp.reshape(g_mat, (groups, o // groups, n * prod(out)))
    dw = xp.reshape(g_mat @ xp.permute_dims(cols, (0, 2, 1)), tuple(w.shape))
    w_mat = _weight_matrix(xp, w, groups)
    dcols = xp.reshape(xp.permute_dims(w_mat, (0, 2, 1)) @ g_mat, (c, prod(kernel), n, *out))
    dx = _col2im(xp, dcols, tuple(x_pad.shape), kernel, stride, dilation, pads)
    dbias = None
    if bias is not None:
        dbias = xp.astype(xp.sum(grad, axis=(0, *range(2, g.ndim))), x.dtype)
    return xp.astype(dx, x.dtype), xp.astype(dw, x.dtype), dbias


def _col2im(xp: ModuleType, dcols: Any, padded: tuple[int, ...], kernel: tuple[int, ...],
            stride: tuple[int, ...], dilation: tuple[int, ...], pads: Pairs) -> Any:
    """Sum each tap's ``(C, N, *out)`` contribution into the padded input's positions, then
    crop the padding off: ``(N, C, *S)``."""
    total = None
    for t, tap in enumerate(_taps(kernel)):
        part = xp.permute_dims(dcols[:, t, ...], (1, 0, *range(2, dcols.ndim - 1)))
        placed = []
        for axis, (k, s, d) in enumerate(zip(tap, stride, dilation, strict=True), start=2):
            part = _spread(xp, part, axis, s)
            placed.append((k * d, padded[axis] - k * d - part.shape[axis]))
        part = _pad(xp, part, tuple(placed))
        total = part if total is None else total + part
    crop = tuple(slice(left, size - right)
                 for (left, right), size in zip(pads, padded[2:], strict=True))
    return total[(slice(None), slice(None), *crop)]
