"""N-d cross-correlation and its exact vector-Jacobian product, as im2col + matmul.

Written with slicing, ``stack`` and ``matmul`` only, so it runs on any NumPy-compatible array
module (CuPy included) and the products run in BLAS (cuBLAS under CuPy). Half inputs are
computed in float32 and rounded once at the end.
"""

from __future__ import annotations

import itertools
from math import prod

from .backend import Array
from .padding import Pairs, output_size, resolve_padding
from .xp import array_module, work_dtype

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


def _window(offset: Shape, stride: Shape, dilation: Shape, out: Shape) -> tuple[slice, ...]:
    """Per dim, the slice of the padded input that kernel tap ``offset`` sees."""
    return tuple(
        slice(k * d, k * d + s * (n - 1) + 1, s)
        for k, s, d, n in zip(offset, stride, dilation, out, strict=True)
    )


def _columns(
    x_pad: Array, kernel: Shape, stride: Shape, dilation: Shape, out: Shape, groups: int
) -> Array:
    """im2col: ``(G, Cg * prod(K), N * prod(out))`` from a padded ``(N, C, *S)`` input."""
    xp = array_module(x_pad)
    n, c = x_pad.shape[:2]
    taps = [
        x_pad[(slice(None), slice(None), *_window(k, stride, dilation, out))]
        for k in itertools.product(*(range(k) for k in kernel))
    ]
    cols = xp.stack(taps, axis=2)  # (N, C, T, *out)
    cols = cols.reshape(n, groups, c // groups, len(taps), prod(out))
    # Explicit sizes, not -1: an empty batch (n == 0) must still reshape.
    return cols.transpose(1, 2, 3, 0, 4).reshape(groups, (c // groups) * len(taps), n * prod(out))


def _pad(x: Array, pads: Pairs) -> Array:
    xp = array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), *pads)) if any(sum(p) for p in pads) else x


def conv(
    x: Array, w: Array, bias: Array | None, stride: Shape, padding: str | Pairs, dilation: Shape,
    groups: int,
) -> Array:
    """``y[n, o, p] = b[o] + sum_{i,k} x_pad[n, g*Ni + i, p*s + k*d] * w[o, i, k]``."""
    dtype = work_dtype(x.dtype)
    kernel, pads, out = _geometry(x.shape, w.shape, stride, padding, dilation)
    cols = _columns(_pad(x.astype(dtype, copy=False), pads), kernel, stride, dilation, out, groups)
    n, o = x.shape[0], w.shape[0]
    w_mat = w.astype(dtype, copy=False).reshape(groups, o // groups, -1)
    y = (w_mat @ cols).reshape(o, n, *out)
    y = y.transpose(1, 0, *range(2, y.ndim))
    if bias is not None:
        y = y + bias.astype(dtype, copy=False).reshape((-1,) + (1,) * len(out))
    return y.astype(x.dtype)


def conv_vjp(
    g: Array, x: Array, w: Array, bias: Array | None, stride: Shape, padding: str | Pairs,
    dilation: Shape, groups: int,
) -> tuple[Array, Array, Array | None]:
    """``(dx, dw, dbias)``: ``dw = g_mat @ cols^T``, ``dx = col2im(w_mat^T @ g_mat)``,
    ``dbias = sum of g over batch and space``."""
    xp = array_module(g, x, w)
    dtype = work_dtype(x.dtype)
    kernel, pads, out = _geometry(x.shape, w.shape, stride, padding, dilation)
    x_pad = _pad(x.astype(dtype, copy=False), pads)
    cols = _columns(x_pad, kernel, stride, dilation, out, groups)
    n, c, o = x.shape[0], x.shape[1], w.shape[0]
    g_mat = g.astype(dtype, copy=False).reshape(n, o, prod(out)).transpose(1, 0, 2)
    g_mat = g_mat.reshape(groups, o // groups, n * prod(out))
    w_mat = w.astype(dtype, copy=False).reshape(groups, o // groups, -1)

    dw = (g_mat @ cols.transpose(0, 2, 1)).reshape(w.shape)
    dcols = (w_mat.transpose(0, 2, 1) @ g_mat).reshape(c, prod(kernel), n, *out)
    dx_pad = xp.zeros(x_pad.shape, dtype=dtype)
    for t, k in enumerate(itertools.product(*(range(k) for k in kernel))):
        window = (slice(None), slice(None), *_window(k, stride, dilation, out))
        dx_pad[window] += dcols[:, t].transpose(1, 0, *range(2, 2 + len(out)))
    crop = tuple(slice(p[0], p[0] + s) for p, s in zip(pads, x.shape[2:], strict=True))
    dx = dx_pad[(slice(None), slice(None), *crop)]
    dbias = None if bias is None else g.astype(dtype).sum(axis=(0, *range(2, g.ndim)))
    cast = x.dtype
    return dx.astype(cast), dw.astype(cast), None if dbias is None else dbias.astype(cast)
