"""The maths of the fused CUDA kernels, written with array operations: their CPU mirror.

``dirac_kernels.cu`` computes the Dirac weight and NCReLU with index arithmetic, one block per
output filter or one thread per element. The functions here do the same index arithmetic and
the same sequence of floating-point steps on whole arrays, with the array module taken from the
inputs. That makes the kernels' formulation checkable without a GPU: CI runs
:class:`dirac_cupy.mirror.MirrorBackend` (these functions under NumPy) through the conformance
suite, and on a GPU the kernels are compared against these functions and against the
reference. The geometry helpers also feed the kernel launches, so both sides share one
definition of every index.

The Dirac weight, per filter ``v = w[o]`` flattened to ``L`` entries (paper eq. 13)::

    m = max_j |v_j|,   sn = ||v / m||,   ||v|| = m * sn
    u = (v / m) / sn   unless m < eps and m * sn < eps: then v / eps     (the clamp)
    W_hat[o] = alpha_o * delta[o] + beta_o * u                 (u = v without normalization)

and its VJP ``dW[o] = (h - u <u, h>) / sn * (G / m)`` with ``h = beta_o g / G`` and
``G = max|beta_o g|`` (``beta_o g / eps`` below the clamp), ``dalpha_o = <g, delta[o]>``,
``dbeta_o = <g, u>``. ``eps`` is first brought into the working dtype's range
(:func:`dirac_core.normalize.working_eps`).

Bit for bit. The kernels are compiled without fused multiply-adds (``-fmad=false``), every
sum runs in the order of the kernels' block reduction (:func:`block_sum`), and double ``+``,
``*``, ``/`` and ``sqrt`` are correctly rounded on the GPU as in NumPy; so in
:data:`ACCUMULATE` arithmetic these functions compute the kernels' results bit for bit (what
only a GPU can confirm is that the hardware and NVRTC do what the source says).

Flush-to-zero. CuPy compiles kernels with ``-ftz=true``: float32 operations read subnormal
operands as zero and flush subnormal results. :class:`Arithmetic` models that for the type a
kernel computes in. The kernels compute in double for every storage dtype
(:data:`ACCUMULATE`), widening and narrowing float32 through its bits, where flush-to-zero
cannot bite; the model is what shows it (``Arithmetic(np.float32)``, float32 arithmetic as a
kernel compiled by CuPy would do it, turns subnormal filters, subnormal ``eps`` and subnormal
NCReLU inputs into zeros, which the conformance suite rejects).
"""

from __future__ import annotations

from math import prod
from typing import Any, NamedTuple

import numpy as np

from dirac_core.delta import WeightGeometry, tap_indices, weight_geometry
from dirac_core.normalize import working_eps
from dirac_core.xp import array_module, work_dtype

ACCUMULATE = np.dtype(np.float64)
"""The type every fused kernel computes in, for float64, float32 and float16 storage alike."""

BLOCK = 256
"""Threads per block (``DIRAC_BLOCK`` in the source): the shape of every reduction."""


class Arithmetic:
    """Floating-point steps in one type, as a CUDA kernel compiled by CuPy performs them.

    In float32 (CuPy's ``-ftz=true``) every operand and result below the smallest normal
    number is flushed to a zero of its sign; other types are IEEE throughout.

    Examples
    --------
    >>> tiny = np.array([1e-40], dtype=np.float32)
    >>> Arithmetic(np.float32).op(np.multiply, tiny, np.float32(1.0))
    array([0.], dtype=float32)
    >>> Arithmetic(np.float64).load(tiny)
    array([9.9999461e-41])
    """

    def __init__(self, dtype: Any = ACCUMULATE) -> None:
        self.dtype = np.dtype(dtype)
        self.flushes = self.dtype == np.float32

    def flush(self, x: Any) -> Any:
        """``x`` as the hardware sees it: subnormals as signed zeros where FTZ applies."""
        if not self.flushes:
            return x
        xp = array_module(x)
        return xp.where(xp.abs(x) < np.finfo(self.dtype).tiny, xp.copysign(x.dtype.type(0), x), x)

    def load(self, x: Any) -> Any:
        """``to_acc``: ``x`` converted to the arithmetic type (exactly: the kernels rebuild a
        float32 subnormal from its bits rather than through a flushing conversion)."""
        return x.astype(self.dtype, copy=False)

    def const(self, value: float) -> Any:
        return self.dtype.type(value)

    def op(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` on flushed operands, its result flushed."""
        return self.flush(fn(*(self.flush(a) for a in args), **kwargs))


def block_sum(terms: Any, ar: Arithmetic) -> Any:
    """Per row of ``(O, L)`` terms, their sum as ``block_reduce`` forms it, as ``(O, 1)``.

    Thread ``t`` of a block adds the terms ``t, t + BLOCK, t + 2 BLOCK, ...`` in that order,
    starting from 0; then slot ``t`` takes ``slot t + slot t + s`` for ``s = BLOCK/2, ..., 1``.
    Floating-point addition is not associative, so this order (not NumPy's pairwise one) is
    what makes the mirror's sums the kernels' sums.

    Examples
    --------
    >>> terms = np.array([[1e16, 1.0, -1e16, 1.0]])  # threads 0 and 2 cancel, 1 and 3 add
    >>> float(block_sum(terms, Arithmetic())[0, 0]), float(np.sum(terms))
    (2.0, 1.0)
    """
    xp = array_module(terms)
    rows, length = terms.shape
    chunks = max(1, -(-length // BLOCK))
    lanes = xp.zeros((rows, chunks * BLOCK), dtype=terms.dtype)
    lanes[:, :length] = terms  # the missing terms of the last round: threads that add nothing
    lanes = lanes.reshape(rows, chunks, BLOCK)
    acc = xp.zeros((rows, BLOCK), dtype=terms.dtype)
    for c in range(chunks):
        acc = ar.op(xp.add, acc, lanes[:, c])
    width = BLOCK // 2
    while width:
        acc = ar.op(xp.add, acc[:, :width], acc[:, width : 2 * width])
        width //= 2
    return acc


SPLIT_BELOW = 256
"""Fewer filters than this (one block each) leave most of a large GPU idle: long ones are
split."""

SPLIT_CHUNK = 16 * BLOCK
"""The fewest entries a block of a split filter works on (a filter shorter than two of these
is never split)."""

TARGET_BLOCKS = 1024
"""Blocks a split aims at: several per multiprocessor on the largest GPUs (132 on an H100)."""


def weight_split(out_channels: int, length: int) -> tuple[int, int]:
    """``(parts, chunk)``: how many blocks work on each filter of ``length`` entries, and how
    many entries each takes (the last one fewer). ``(1, length)`` unless the filters are few
    and long.

    Examples
    --------
    >>> weight_split(64, 1152)  # a CIFAR Dirac layer: one block per filter
    (1, 1152)
    >>> weight_split(1, 10**7)  # one long filter: 1024 blocks of 9766 entries
    (1024, 9766)
    """
    if out_channels >= SPLIT_BELOW or length < 2 * SPLIT_CHUNK:
        return 1, length
    parts = min(-(-TARGET_BLOCKS // out_channels), length // SPLIT_CHUNK)
    return parts, -(-length // parts)


def split_sum(terms: Any, parts: int, ar: Arithmetic) -> Any:
    """Per row of ``(O, L)`` terms, their sum as the kernels form it for filters in ``parts``
    chunks: :func:`block_sum` of each chunk, then of the chunks' sums (for one part the
    second sum adds zeros: the same value). ``(O, 1)``."""
    xp = array_module(terms)
    rows, length = terms.shape
    chunk = -(-length // parts) if length else 0
    padded = xp.zeros((rows, parts * chunk), dtype=terms.dtype)
    padded[:, :length] = terms
    per_chunk = block_sum(padded.reshape(rows * parts, chunk), ar).reshape(rows, parts)
    return per_chunk if parts == 1 else block_sum(per_chunk, ar)


def add_at_taps(out: Any, alpha: Any, geo: WeightGeometry, ar: Arithmetic) -> Any:
    """``out + alpha * delta`` as the kernels form it: ``alpha_o`` added only at the Dirac
    tensor's ones, found by index (adding the zeros elsewhere would change nothing)."""
    xp = array_module(out)
    rows, cols = tap_indices(geo, xp)
    out[rows, cols] = ar.op(xp.add, xp.broadcast_to(alpha, (geo.out_channels, 1))[rows, 0],
                            out[rows, cols])
    return out


def tap_sums(grad: Any, geo: WeightGeometry, ar: Arithmetic) -> Any:
    """``<g, delta[o]>`` per filter, ``(O,)``: the kernels' reduction over the row, in which
    only the taps (found by index) contribute and every other thread adds zero."""
    xp = array_module(grad)
    rows, cols = tap_indices(geo, xp)
    terms = xp.zeros_like(grad)
    terms[rows, cols] = grad[rows, cols]
    return _sum(terms, ar)[:, 0]


class FilterNorm(NamedTuple):
    """Per filter, as ``(O, 1)`` columns: the scale ``m = max|v|``, the norm ``sn`` of
    ``v / m`` (0 for an all-zero filter), and whether the filter is below the clamp."""

    m: Any
    sn: Any
    clamped: Any


def filter_norm(rows: Any, eps: Any, ar: Arithmetic) -> FilterNorm:
    """``filter_norm`` of the kernels, on ``(O, L)`` rows already in the arithmetic type
    (split as the launcher splits them: :func:`weight_split`)."""
    xp = array_module(rows)
    parts, _ = weight_split(*rows.shape)
    m = ar.op(lambda r: xp.max(xp.abs(r), axis=1, keepdims=True), rows)
    positive = ar.flush(m) > 0
    scaled = ar.op(xp.divide, rows, xp.where(positive, m, 1))
    sn = ar.op(xp.sqrt, split_sum(ar.op(xp.multiply, scaled, scaled), parts, ar))
    sn = xp.where(positive, sn, ar.const(0))
    clamped = (ar.flush(m) < ar.flush(eps)) & (ar.op(xp.multiply, m, sn) < ar.flush(eps))
    return FilterNorm(m, sn, clamped)


def direction(rows: Any, f: FilterNorm, eps: Any, ar: Arithmetic) -> Any:
    """``u``: ``v / eps`` below the clamp, ``(v / m) / sn`` above it (each branch computed only
    where it is taken, as in the kernels)."""
    xp = array_module(rows)
    one = ar.const(1)
    above = ar.op(xp.divide, ar.op(xp.divide, rows, xp.where(f.clamped, one, f.m)),
                  xp.where(f.clamped, one, f.sn))
    return xp.where(f.clamped, ar.op(xp.divide, rows, eps), above)


def _rows(x: Any, out_channels: int, ar: Arithmetic) -> Any:
    return ar.load(x).reshape(out_channels, -1)


def _column(scale: Any, ar: Arithmetic) -> Any:
    """A 0-d or ``(O,)`` scale as ``(1, 1)`` or ``(O, 1)``: the kernels' ``scale[o * step]``."""
    return ar.load(scale).reshape(-1, 1)


def kernel_eps(eps: float, dtype: Any, ar: Arithmetic) -> Any:
    """The ``eps`` a kernel receives: in the working dtype's range, then in the arithmetic
    type."""
    return ar.const(working_eps(eps, work_dtype(dtype)))


def weight_forward(
    w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool, groups: int, policy: str,
    ar: Arithmetic | None = None, identity: bool = True,
) -> Any:
    """``alpha * delta + beta * normalize(W)`` as ``dirac_weight_forward`` computes it; without
    ``identity``, ``beta * normalize(W)`` alone, as the kernel launched with no taps
    (:func:`dirac_core.delta.without_taps`) computes it for filter normalization."""
    ar = ar or Arithmetic()
    xp = array_module(w)
    geo = weight_geometry(w.shape, groups, policy)
    v = _rows(w, geo.out_channels, ar)
    u = v
    if normalize:
        e = kernel_eps(eps, w.dtype, ar)
        u = direction(v, filter_norm(v, e, ar), e, ar)
    out = ar.op(xp.multiply, _column(beta, ar), u)
    if identity:
        out = add_at_taps(out, _column(alpha, ar), geo, ar)
    return out.astype(w.dtype).reshape(w.shape)


def weight_backward(
    g: Any, w: Any, beta: Any, *, eps: float, normalize: bool, groups: int, policy: str,
    ar: Arithmetic | None = None,
) -> tuple[Any, Any, Any]:
    """``(dW, dalpha_part, dbeta_part)`` as ``dirac_weight_backward`` computes them.

    The parts are per filter, ``(O,)`` in the arithmetic type; :func:`reduce_part` sums them
    for a scalar scale.
    """
    ar = ar or Arithmetic()
    xp = array_module(g, w)
    geo = weight_geometry(w.shape, groups, policy)
    v, grad = _rows(w, geo.out_channels, ar), _rows(g, geo.out_channels, ar)
    bg = ar.op(xp.multiply, _column(beta, ar), grad)
    dalpha_part = tap_sums(grad, geo, ar)
    if not normalize:
        return bg.astype(w.dtype).reshape(w.shape), dalpha_part, _dot(grad, v, ar)[:, 0]
    e = kernel_eps(eps, w.dtype, ar)
    f = filter_norm(v, e, ar)
    u = direction(v, f, e, ar)
    big = ar.op(lambda x: xp.max(xp.abs(x), axis=1, keepdims=True), bg)  # G
    h = ar.op(xp.divide, bg, xp.where(ar.flush(big) > 0, big, ar.const(1)))
    tangent = ar.op(xp.subtract, h, ar.op(xp.multiply, u, _dot(u, h, ar)))
    factor = ar.op(xp.divide, big, xp.where(f.clamped | (ar.flush(f.m) == 0), 1, f.m))
    safe_sn = xp.where(f.clamped, ar.const(1), f.sn)
    above = ar.op(xp.multiply, ar.op(xp.divide, tangent, safe_sn), factor)
    above = xp.where(ar.flush(tangent) == 0, ar.const(0), above)
    dw = xp.where(f.clamped, ar.op(xp.divide, bg, e), above)
    return dw.astype(w.dtype).reshape(w.shape), dalpha_part, _dot(grad, u, ar)[:, 0]


def _sum(terms: Any, ar: Arithmetic) -> Any:
    """Per row of ``(O, L)`` terms, their sum in the kernels' order, as ``(O, 1)``."""
    return split_sum(terms, weight_split(*terms.shape)[0], ar)


def _dot(a: Any, b: Any, ar: Arithmetic) -> Any:
    """Per row ``<a, b>`` as ``(O, 1)``, summed in the kernels' order."""
    return _sum(ar.op(array_module(a, b).multiply, a, b), ar)


def reduce_part(part: Any, like: Any, ar: Arithmetic | None = None) -> Any:
    """A per-filter gradient part, summed (as ``reduce_narrow`` sums it) to a 0-d array when
    ``like`` (the scale) is 0-d."""
    return block_sum(part.reshape(1, -1), ar or Arithmetic()).reshape(()) if like.ndim == 0 \
        else part


def unit_scales(w: Any) -> tuple[Any, Any]:
    """``alpha = 0`` and ``beta = 1``: the Dirac weight without its identity term reduces to
    ``normalize(W)`` (with it, ``0 + -0`` would make a ``-0.0`` at a tap ``+0.0``)."""
    xp = array_module(w)
    return xp.zeros((), dtype=w.dtype), xp.ones((), dtype=w.dtype)


def fold_eps(eps: float, dtype: Any) -> np.float64:
    """``eps`` as batch-norm folding takes it: rounded to the working dtype of ``dtype`` (it
    may round to 0 or, beyond float32, to inf), carried in double."""
    with np.errstate(over="ignore"):
        return np.float64(work_dtype(np.dtype(dtype)).type(eps))


def fold_batchnorm(
    weight: Any, bias: Any, gamma: Any, beta: Any, mean: Any, var: Any, *, eps: float,
    ar: Arithmetic | None = None,
) -> tuple[Any, Any]:
    """``(W', b')`` as ``fold_batchnorm`` computes them: ``s = gamma / sqrt(var + eps)``,
    ``W' = W * s``, ``b' = (b - mean) * s + beta`` in the arithmetic type."""
    ar = ar or Arithmetic()
    xp = array_module(weight)
    e = ar.const(fold_eps(eps, weight.dtype))
    s = ar.op(xp.divide, ar.load(gamma), ar.op(xp.sqrt, ar.op(xp.add, ar.load(var), e)))
    rows = ar.load(weight).reshape(weight.shape[0], prod(weight.shape[1:]))
    new_weight = ar.op(xp.multiply, rows, s[:, None])
    mean_ = ar.load(mean)
    shift = -mean_ if bias is None else ar.op(xp.subtract, ar.load(bias), mean_)
    new_bias = ar.op(xp.add, ar.op(xp.multiply, shift, s), ar.load(beta))
    return new_weight.astype(weight.dtype).reshape(weight.shape), new_bias.astype(weight.dtype)


class NcreluLayout(NamedTuple):
    """``x`` seen as ``(outer, C, inner)``: ``total`` entries, ``block = C * inner``."""

    total: int
    block: int


def ncrelu_layout(shape: tuple[int, ...], axis: int) -> NcreluLayout:
    """Entry ``j`` of ``x`` goes to ``j + (j // block) * block`` (positive half) and
    ``block`` further (negative half) of the output.

    Examples
    --------
    >>> ncrelu_layout((2, 3, 4), 1)
    NcreluLayout(total=24, block=12)
    """
    return NcreluLayout(total=prod(shape), block=prod(shape[axis:]))


def _doubled(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return (*shape[:axis], 2 * shape[axis], *shape[axis + 1 :])


def ncrelu_forward(x: Any, *, axis: int, ar: Arithmetic | None = None) -> Any:
    """NCReLU by the scatter ``ncrelu_forward`` does: the entries copied by the comparisons'
    verdict (in the arithmetic type); NaN reaches both halves."""
    ar = ar or Arithmetic()
    xp = array_module(x)
    layout = ncrelu_layout(x.shape, axis)
    flat = x.reshape(-1)
    a = ar.flush(ar.load(flat))
    pos = _positions(layout, xp)
    zero = xp.zeros((), x.dtype)
    y = xp.empty(2 * layout.total, x.dtype)
    y[pos] = xp.where(a <= 0, zero, flat)
    y[pos + layout.block] = xp.where(a >= 0, zero, flat)
    return y.reshape(_doubled(x.shape, axis))


def ncrelu_backward(g: Any, x: Any, *, axis: int, ar: Arithmetic | None = None) -> Any:
    """``dx`` by the gather ``ncrelu_backward`` does: 0 where ``x`` is 0 (or NaN)."""
    ar = ar or Arithmetic()
    xp = array_module(g, x)
    layout = ncrelu_layout(x.shape, axis)
    a, grad = ar.flush(ar.load(x.reshape(-1))), g.reshape(-1)
    pos = _positions(layout, xp)
    zero = xp.zeros((), g.dtype)
    dx = xp.where(a > 0, grad[pos], xp.where(a < 0, grad[pos + layout.block], zero))
    return dx.reshape(x.shape)


def _positions(layout: NcreluLayout, xp: Any) -> Any:
    j = xp.arange(layout.total)
    return j + (j // layout.block) * layout.block
