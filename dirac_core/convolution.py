"""N-d cross-correlation and its exact vector-Jacobian product, as im2col + matmul.

Written against the Array API standard (:mod:`.xp`): slicing, ``stack``, ``concat`` and
``matmul``, no ``pad``, no in-place update. So it runs on NumPy (the reference), CuPy, JAX,
PyTorch or any namespace ``array-api-compat`` knows, and the products run in BLAS (cuBLAS
under CuPy). Half inputs are computed in float32 and rounded once at the end.

Only what the output reads is ever built: the padded input is never formed. For each kernel
tap ``k`` (``T = prod(K)`` of them) and each spatial dim, the output positions ``j`` whose
input position ``j*s + k*d - left`` lies inside the input form one range; the tap's column
block is the strided slice of the input they read, with zeros for the rest of the output
around it (or, where the padded input is no larger than the columns, a strided slice of the
padded input, formed once). The columns are ``T`` times the output's size per input channel,
whatever the padding or dilation (``padding=10**9`` on a length-4 input costs what its output
costs).
``dx`` is the transpose: each tap's contribution at the output positions it read is spread to
the input positions it came from (``s - 1`` zeros between elements) and added, one
input-sized array at a time, in tap order.
"""

from __future__ import annotations

import itertools
from math import prod
from types import ModuleType
from typing import Any

from .backend import Array
from .padding import Pairs, output_size, resolve_padding
from .xp import device_of, namespace, work_dtype

Shape = tuple[int, ...]


def _geometry(
    x_shape: Shape, w_shape: Shape, stride: Shape, padding: str | Pairs, dilation: Shape
) -> tuple[Shape, Pairs, Shape]:
    kernel = tuple(w_shape[2:])
    pads = resolve_padding(padding, kernel, dilation)
    out = tuple(
        output_size(s, k, st, d, p)
        for s, k, st, d, p in zip(x_shape[2:], kernel, stride, dilation, pads, strict=True)
    )
    return kernel, pads, out


def _taps(kernel: Shape) -> list[Shape]:
    return list(itertools.product(*(range(k) for k in kernel)))


def _reads(tap: int, stride: int, dilation: int, left: int, size: int, out: int
           ) -> tuple[int, int, int]:
    """For one kernel tap along one dim: the output range ``[lo, hi)`` that reads inside the
    input (output ``j`` reads input ``j*stride + tap*dilation - left``), and the first input
    position it reads."""
    offset = tap * dilation - left
    lo = min(out, max(0, -(offset // stride)))  # first j with j*stride + offset >= 0
    hi = max(lo, min(out, -((offset - size) // stride)))  # j*stride + offset < size
    return lo, hi, offset + lo * stride


def _zero_pad(xp: ModuleType, x: Array, pads: Pairs) -> Array:
    """``x`` with zero blocks of ``(before, after)`` elements around each spatial axis."""
    for axis, (before, after) in enumerate(pads, start=2):
        parts = []
        for size in (before, after):
            shape = tuple(size if a == axis else n for a, n in enumerate(x.shape))
            parts.append(xp.zeros(shape, dtype=x.dtype, device=device_of(x)) if size else None)
        blocks = [p for p in (parts[0], x, parts[1]) if p is not None]
        x = xp.concat(blocks, axis=axis) if len(blocks) > 1 else x
    return x


def _tap_block(xp: ModuleType, x: Array, tap: Shape, stride: Shape, dilation: Shape,
               pads: Pairs, out: Shape) -> Array:
    """``(N, C, *out)``: what kernel tap ``tap`` sees of the zero-padded input, built from the
    unpadded ``x``."""
    reads = [_reads(k, s, d, p[0], n, o)
             for k, s, d, p, n, o in zip(tap, stride, dilation, pads, x.shape[2:], out,
                                         strict=True)]
    if any(lo == hi for lo, hi, _ in reads):
        return xp.zeros((*x.shape[:2], *out), dtype=x.dtype, device=device_of(x))
    window = tuple(slice(first, first + s * (hi - lo - 1) + 1, s)
                   for (lo, hi, first), s in zip(reads, stride, strict=True))
    inside = x[(slice(None), slice(None), *window)]
    return _zero_pad(xp, inside, tuple((lo, o - hi) for (lo, hi, _), o in zip(reads, out,
                                                                               strict=True)))


def _columns(xp: ModuleType, x: Array, kernel: Shape, stride: Shape, dilation: Shape,
             pads: Pairs, out: Shape, groups: int) -> Array:
    """im2col: ``(G, Cg * prod(K), N * prod(out))`` from an unpadded ``(N, C, *S)`` input.

    When the padded input is no larger than the columns themselves it is formed once and each
    tap is a strided slice of it (fewer copies); otherwise each tap's block is built from the
    input alone (:func:`_tap_block`). Either way the values are the same, and nothing larger
    than the columns is allocated.
    """
    n, c = x.shape[:2]
    taps = _taps(kernel)
    padded = [size + left + right for size, (left, right) in zip(x.shape[2:], pads, strict=True)]
    if n * c * prod(padded) <= len(taps) * n * c * prod(out):
        x_pad = _zero_pad(xp, x, pads)
        blocks = [x_pad[(slice(None), slice(None), *(
            slice(k * d, k * d + s * (o - 1) + 1, s)
            for k, s, d, o in zip(tap, stride, dilation, out, strict=True)))] for tap in taps]
    else:
        blocks = [_tap_block(xp, x, t, stride, dilation, pads, out) for t in taps]
    cols = xp.reshape(xp.stack(blocks, axis=2), (n, groups, c // groups, len(taps), prod(out)))
    cols = xp.permute_dims(cols, (1, 2, 3, 0, 4))
    # Explicit sizes, not -1: an empty batch (n == 0) must still reshape.
    return xp.reshape(cols, (groups, (c // groups) * len(taps), n * prod(out)))


def _weight_matrix(xp: ModuleType, w: Array, dtype: Any, groups: int) -> Array:
    """``(G, O/G, C/G * T)`` in the working dtype."""
    return xp.reshape(xp.astype(w, dtype, copy=False),
                      (groups, w.shape[0] // groups, prod(w.shape[1:])))


def conv(
    x: Array, w: Array, bias: Array | None, stride: Shape, padding: str | Pairs, dilation: Shape,
    groups: int,
) -> Array:
    """``y[n, o, p] = b[o] + sum_{i,k} x_pad[n, g*Ni + i, p*s + k*d] * w[o, i, k]``."""
    xp = namespace(x, w, bias)
    dtype = work_dtype(x.dtype, xp)
    kernel, pads, out = _geometry(tuple(x.shape), tuple(w.shape), stride, padding, dilation)
    cols = _columns(xp, xp.astype(x, dtype, copy=False), kernel, stride, dilation, pads, out,
                    groups)
    n, o = x.shape[0], w.shape[0]
    y = xp.reshape(_weight_matrix(xp, w, dtype, groups) @ cols, (o, n, *out))
    y = xp.permute_dims(y, (1, 0, *range(2, y.ndim)))
    if bias is not None:
        y = y + xp.reshape(xp.astype(bias, dtype, copy=False), (-1,) + (1,) * len(out))
    return xp.astype(y, x.dtype)


def _spread(xp: ModuleType, x: Array, axis: int, stride: int) -> Array:
    """``stride - 1`` zeros inserted between consecutive elements along ``axis``."""
    n = x.shape[axis]
    if stride == 1 or n < 2:
        return x
    woven = xp.stack([x] + [xp.zeros_like(x)] * (stride - 1), axis=axis + 1)
    shape = (*x.shape[:axis], n * stride, *x.shape[axis + 1:])
    keep = tuple(slice(0, stride * (n - 1) + 1) if a == axis else slice(None)
                 for a in range(x.ndim))
    return xp.reshape(woven, shape)[keep]


def _col2im(xp: ModuleType, dcols: Array, x_shape: Shape, kernel: Shape, stride: Shape,
            dilation: Shape, pads: Pairs, out: Shape) -> Array:
    """``(N, C, *S)``: each tap's ``(C, N, *out)`` contribution added, in tap order, at the
    input positions its outputs read; positions in the padding are never formed."""
    total = xp.zeros(x_shape, dtype=dcols.dtype, device=device_of(dcols))
    for t, tap in enumerate(_taps(kernel)):
        reads = [_reads(k, s, d, p[0], n, o)
                 for k, s, d, p, n, o in zip(tap, stride, dilation, pads, x_shape[2:], out,
                                             strict=True)]
        if any(lo == hi for lo, hi, _ in reads):
            continue
        part = xp.permute_dims(dcols[:, t, ...], (1, 0, *range(2, dcols.ndim - 1)))
        part = part[(slice(None), slice(None), *(slice(lo, hi) for lo, hi, _ in reads))]
        placed = []
        for axis, ((_, _, first), s, size) in enumerate(zip(reads, stride, x_shape[2:],
                                                            strict=True), start=2):
            part = _spread(xp, part, axis, s)
            placed.append((first, size - first - part.shape[axis]))
        total = total + _zero_pad(xp, part, tuple(placed))
    return total


def conv_vjp(
    g: Array, x: Array, w: Array, bias: Array | None, stride: Shape, padding: str | Pairs,
    dilation: Shape, groups: int,
) -> tuple[Array, Array, Array | None]:
    """``(dx, dw, dbias)``: ``dw = g_mat @ cols^T``, ``dx = col2im(w_mat^T @ g_mat)``,
    ``dbias = sum of g over batch and space``."""
    xp = namespace(g, x, w, bias)
    dtype = work_dtype(x.dtype, xp)
    x_shape = tuple(x.shape)
    kernel, pads, out = _geometry(x_shape, tuple(w.shape), stride, padding, dilation)
    cols = _columns(xp, xp.astype(x, dtype, copy=False), kernel, stride, dilation, pads, out,
                    groups)
    n, c, o = x_shape[0], x_shape[1], w.shape[0]
    grad = xp.astype(g, dtype, copy=False)
    g_mat = xp.permute_dims(xp.reshape(grad, (n, o, prod(out))), (1, 0, 2))
    g_mat = xp.reshape(g_mat, (groups, o // groups, n * prod(out)))
    w_mat = _weight_matrix(xp, w, dtype, groups)
    dw = xp.reshape(g_mat @ xp.permute_dims(cols, (0, 2, 1)), tuple(w.shape))
    dcols = xp.reshape(xp.permute_dims(w_mat, (0, 2, 1)) @ g_mat, (c, prod(kernel), n, *out))
    dx = _col2im(xp, dcols, x_shape, kernel, stride, dilation, pads, out)
    dbias = None if bias is None else xp.astype(
        xp.sum(xp.astype(g, dtype), axis=(0, *range(2, g.ndim))), x.dtype)
    return xp.astype(dx, x.dtype), xp.astype(dw, x.dtype), dbias
