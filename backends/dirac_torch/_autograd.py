"""The Dirac weight as one autograd node with the spec's VJP written out (paper eq. 13).

``W_hat = alpha * delta + beta * normalize(W)`` runs once per training step in every layer.
Built from generic ops, autograd would record about 30 small kernels for it. Here each
direction is one reduction over the filters and one weight-sized elementwise pass, with only
per-filter vectors of length O in between, so ``torch.compile`` (which traces the node into the
model's graph, with no graph break) emits about one fused kernel for each. While compiling,
the node works on the weight in its own shape (every reduction over all axes but the first),
so the compiler keeps the layout it chooses for the conv: reshaped to ``(O, L)`` rows, a weight
that inductor's layout optimisation makes channels-last was read through a transposed gather
in scalar code. ``alpha`` is added, and ``dalpha`` gathered, at the ``O x R`` taps by an
index (built from iota indices when compiling): a predicate of the ones evaluated on every
entry kept inductor's loops on the kernel's few innermost entries (at 64x128x3x3 the compiled
node cost 514 us per step over a one-multiply weight, 101 us by index). Eagerly, at the small
weights of a CIFAR DiracNet, each op's launch costs more than its arithmetic, so the
per-filter work is done once, in the forward pass, as a few factors per filter that the
backward and :func:`recompute` only multiply by.

Every weight-sized quantity is formed in float64 and rounded once to ``W``'s dtype. float32
and half-precision filters ``v`` are used as they are (``m = 1``): the squares of their values
all lie inside float64's normal range, so ``||v||`` neither overflows nor underflows. float64
filters are divided by ``m = max|v|`` first (:func:`prescaled`). With ``s = v / m``,
``r = ||s||`` (so ``||v|| = m r``) and ``G`` the incoming gradient:

- forward: ``W_hat = s * f`` plus ``alpha`` at the Dirac tensor's ones, with the per-filter
  ``f = beta * gain``: ``normalize(v) = s * gain``, ``gain = 1 / r`` when ``m r >= eps`` (the
  filter is above the clamp), else ``m / eps``;
- ``dalpha = sum(G * delta)``, ``dbeta = sum(G * normalize(v)) = gain * <s, G>`` (per filter,
  then summed for a scalar);
- ``dv = (k G - q <s, G> s) / d`` with ``k = f``, ``q = f / r**2``, ``d = m`` above the clamp
  and ``k = beta``, ``q = 0``, ``d = eps`` below: that is ``beta (G - u <u, G>) / ||v||`` with
  ``u = v / ||v||`` above, and ``beta G / eps`` below. For float32 and half filters
  (``m = 1``) ``1 / d`` is a finite float64 (``d >= eps >= 2**-149``) and is folded into
  ``k`` and ``q``; float64 filters are divided by ``d`` elementwise, as ``1 / d`` may
  overflow there. No factor is ever ``1 / ||v||`` or ``1 / eps`` in a narrow dtype, which
  would overflow for tiny norms and turn a zero gradient into NaN;
- ``eps`` is taken in the working dtype and kept inside its positive finite range, as the
  spec says (:func:`working_eps`).

Each factor is a float64 expression of a few float64 operations on float64 sums of exact
squares and products of the weight's values (a float32 or half product is exact in float64),
so it carries a few float64 roundings; the weight-sized results are then rounded once.

**The float32 path.** Eagerly on the CPU, float32 weights skip the float64 blocks where float32
can carry the computation: at the small weights of a CIFAR DiracNet the float64 copies, their
passes and the launches around them were most of the node's cost. ``||v||`` and ``<v, G>`` are
float32 sums, the per-filter factors ``f = beta / ||v||`` and ``c = (f / ||v||) <v / ||v||, G>``
are worked out from them in float64 and rounded to float32, and ``W_hat = v f + alpha delta``
and ``dv = f G - c v`` are float32 passes over the weight. Each result then carries a few
float32 roundings (the factor's, the product's, the sum's) where the float64 blocks carry one:
well inside the spec's float32 tolerance, which allows float32 accumulation. The path is taken
only where that is all it costs, checked per call on the per-filter sums (one host
synchronisation, free on the CPU): every norm finite, above the clamp by a margin (the float64
blocks decide the filters near ``eps``) and above ``sqrt(L) 2**-60``, so squares that
underflow lose under ``2**-30`` of the sum; every ``<v, G>`` finite and at least ``L 2**-120``;
every factor 0 or a normal float32 number. Anything else, a zero filter, a non-finite entry, a
huge ``beta`` or a gradient whose products underflow, goes to the float64 blocks with the same
factors.

The backward reads ``beta`` only through the factors, but ``beta`` is kept with
``save_for_backward``: changing it in place between forward and backward raises autograd's
"modified by an inplace operation" error, as the same formula written with generic ops would.
Higher-order gradients through this node are not supported (``once_differentiable``); first
derivatives are exact and checked against the reference by the tests.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from dirac_core.delta import WeightGeometry, is_tap, tap_columns

from .torch_types import work_dtype, working_eps


def _rows(scale: Any, dtype: torch.dtype, ndim: int) -> torch.Tensor:
    """A number or a 0-d / ``(O,)`` tensor as a ``dtype`` tensor broadcasting over the filters
    of an ``ndim``-d weight (a number becomes a 0-d tensor, which broadcasts on any device)."""
    scale = torch.as_tensor(scale, dtype=dtype)
    return scale.view(-1, *(1,) * (ndim - 1)) if scale.dim() else scale


def _within(t: torch.Tensor) -> tuple[int, ...]:
    """The dims of one filter of ``t`` (all but the first): what every reduction sums over."""
    return tuple(range(1, t.dim()))


def _reduced(per_row: torch.Tensor, like: tuple[int, torch.dtype] | None) -> torch.Tensor | None:
    """A per-filter ``(O, 1)`` gradient summed to the ``(dim, dtype)`` of the scale it is for
    (None: the scale was a number)."""
    if like is None:
        return None
    dim, dtype = like
    out = per_row.view(-1) if dim else per_row.sum()
    return out.to(dtype)


def _layout(scale: Any) -> tuple[int, torch.dtype] | None:
    """``(dim, dtype)`` of a tensor scale, None for a number: all its gradient needs of it."""
    return (scale.dim(), scale.dtype) if isinstance(scale, torch.Tensor) else None


def prescaled(
    flat: torch.Tensor, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(s, m)``: the rows ``v`` of ``flat`` as float64 rows ``s = v / m`` whose norm can be
    summed without overflow or underflow. Narrower dtypes need no scaling (``m`` is None):
    the squares of float32 (and half) values all lie inside float64's normal range. float64
    rows are divided by ``m = max|v|`` (by 1 for a zero row, whose ``m`` stays 0; detached:
    ``v / ||v||`` does not change when ``v`` is rescaled, so no gradient flows through ``m``).
    ``s`` is a new tensor, or ``out`` (:func:`scaled_rows`)."""
    if flat.dtype != torch.float64:
        return scaled_rows(flat, None, out), None
    scale = flat.detach().abs().amax(dim=_within(flat), keepdim=True)
    return scaled_rows(flat, scale, out), scale


def scaled_rows(
    rows: torch.Tensor, m: torch.Tensor | None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``rows / m`` per row in float64, a zero ``m`` taken as 1 (``m`` None: ``rows`` as
    float64), written into ``out`` if given, else a new tensor (never ``rows`` itself):
    :func:`prescaled`'s division, which the backward repeats rather than keeping its result."""
    if m is None:
        return rows.to(torch.float64, copy=True) if out is None else out.copy_(rows)
    m = torch.where(m > 0, m, 1)
    return rows / m if out is None else torch.div(rows, m, out=out)


def row_gain(
    s: torch.Tensor, m: torch.Tensor | None, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(gain, r, below)`` per row of :func:`prescaled` rows ``s``: ``normalize(v) = s * gain``
    with ``r = ||s||``, ``below = m r < eps`` (``eps``: :func:`working_eps` as float64),
    ``gain = 1 / r`` above the clamp and ``m / eps`` below (< 1 for float64 rows; ``r`` is set
    to 1 below, so that no branch divides by zero). A filter with a NaN or infinite entry has
    ``r`` NaN and counts as above: its gain is NaN, so every entry of it is NaN (the spec)."""
    # Unscaled rows: an infinite entry gives r = inf, which must not give a gain of 0.
    r = torch.linalg.vector_norm(s, dim=_within(s), keepdim=True)
    # where, not nan_to_num: exporters lower nan_to_num with float64's lowest as a constant,
    # which ONNX cannot carry in a float graph.
    r = torch.where(torch.isinf(r), math.nan, r)
    if m is None:
        below = r < eps
        gain = torch.clamp_min(r, eps).reciprocal()  # 1 / r above, 1 / eps below, NaN kept
    else:
        below = r * m < eps
        gain = torch.where(below, m / eps, torch.where(below, 1, r).reciprocal())
    return gain, torch.where(below, 1, r), below


class _Taps:
    """Where the Dirac tensor's ones are in the ``(O, L)`` rows, as tensors on one device:
    ``cols`` (``O x R``, :func:`dirac_core.delta.tap_columns`) and ``valid`` as float64
    (None where every candidate is a one, the common case, which then needs no multiply).
    Built once per geometry and device; ``O * R`` entries, not a weight."""

    __slots__ = ("cols", "valid")

    def __init__(self, geo: WeightGeometry, device: torch.device) -> None:
        cols, valid = tap_columns(geo)
        self.cols = torch.from_numpy(cols).to(device)
        self.valid = (
            None if valid.all() else torch.from_numpy(valid).to(device, torch.float64)
        )

    def rows(self, rows: slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        if rows == slice(None):
            return self.cols, self.valid
        return self.cols[rows], None if self.valid is None else self.valid[rows]


_TAPS: dict[tuple[WeightGeometry, torch.device], _Taps] = {}


class _Scratch(threading.local):
    """Per thread, per CPU device: float64 buffers of :data:`BLOCK` entries for the eager node's
    row-block temporaries. A new tensor of that size is a new ``mmap`` whose pages the kernel
    faults in and zeroes on every call (glibc hands blocks this large back to the system when
    they are freed), which costs more than the arithmetic on them; a buffer kept per thread
    is in cache and faults nothing. Three slots (the most one block uses at a time); 1.5 MiB
    per thread that runs the node, kept for the thread's life."""

    def __init__(self) -> None:
        self.buffers: dict[torch.device, torch.Tensor] = {}


_SCRATCH = _Scratch()
_SLOTS = 3


def _scratch(slot: int, like: torch.Tensor) -> torch.Tensor | None:
    """A float64 tensor of ``like``'s shape in scratch slot ``slot``, or None where a new
    tensor is the better choice: while compiling (the compiler fuses the temporaries away),
    off the CPU (device allocators cache their blocks), or for a row block longer than
    :data:`BLOCK` (a single row that long)."""
    if torch.compiler.is_compiling() or like.device.type != "cpu" or like.numel() > BLOCK:
        return None
    buffers = _SCRATCH.buffers
    if like.device not in buffers:
        buffers[like.device] = torch.empty(_SLOTS * BLOCK, dtype=torch.float64)
    start = slot * BLOCK
    return buffers[like.device][start:start + like.numel()].view(like.shape)
_EPS: dict[tuple[float, torch.dtype, torch.device], torch.Tensor] = {}


def _taps(geo: WeightGeometry, device: torch.device) -> _Taps:
    key = (geo, device)
    if key not in _TAPS:
        _TAPS[key] = _Taps(geo, device)
    return _TAPS[key]


def _eps64(eps: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`working_eps` of ``dtype`` as a float64 0-d tensor, made once per ``(eps, dtype,
    device)`` (the node only reads it) rather than twice per call; made afresh while compiling,
    where a constant tensor from outside the graph would be a graph input."""
    if torch.compiler.is_compiling():
        return working_eps(eps, work_dtype(dtype), device).to(torch.float64)
    key = (eps, dtype, device)
    if key not in _EPS:
        _EPS[key] = working_eps(eps, work_dtype(dtype), device).to(torch.float64)
    return _EPS[key]


def _tap_index(
    geo: WeightGeometry, like: torch.Tensor
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """``(index, valid, one)`` of the ``O x R`` candidate taps of ``like`` (a whole weight, in
    its own shape or as ``(O, L)`` rows), built from iota indices inside the compiled graph
    (:func:`tap_columns`): ``index`` into ``like.reshape(O, Ni, prod(K))`` (a view in either
    layout a compiler picks for a conv weight), ``valid`` the candidates that are ones, each
    counted once, and ``one`` the candidates whose entry is a one (:func:`is_tap`: those that
    are no ones repeat their row's first one, or point at a non-one of a row without ones). A
    gather or scatter of ``O x R`` entries, where a predicate over every entry would cost the
    whole weight's worth of integer arithmetic."""
    cols, valid = tap_columns(geo, torch, like.device)
    rows = torch.arange(geo.out_channels, device=like.device)[:, None]
    return (rows, cols // geo.spatial, cols % geo.spatial), valid, is_tap(geo, rows, cols)


def _by_channel(t: torch.Tensor, geo: WeightGeometry) -> torch.Tensor:
    """``t`` (a whole weight, in either shape) as ``(O, Ni, prod(K))``, which
    :func:`_tap_index` indexes."""
    return t.reshape(geo.out_channels, geo.in_per_group, geo.spatial)


def _rounded_with_taps(
    out: torch.Tensor, alpha: torch.Tensor, geo: WeightGeometry, dtype: torch.dtype
) -> torch.Tensor:
    """``out + alpha * delta`` rounded once to ``dtype``, for a compiled graph: the whole
    weight rounded as it is, then the taps overwritten with their own sums, rounded (a
    candidate that repeats a one writes the same value, so the order of writes is moot).
    Scattering before the rounding would make the compiler keep ``out`` in memory."""
    index, _, one = _tap_index(geo, out)
    a = alpha.view(-1, 1) if alpha.dim() else alpha
    taps = (_by_channel(out, geo)[index] + a * one).to(dtype)
    return _by_channel(out.to(dtype), geo).index_put(index, taps).view(out.shape)


def add_identity(
    out: torch.Tensor, alpha: torch.Tensor, geo: WeightGeometry, rows: slice
) -> torch.Tensor:
    """``out + alpha * delta`` for the block ``rows`` of the ``(O, L)`` rows (``out`` holds
    just those rows; ``alpha`` is 0-d or holds them too): ``alpha`` added in place at the
    taps, by index. Eager only (compiled: :func:`_rounded_with_taps`)."""
    cols, valid = _taps(geo, out.device).rows(rows)
    source = alpha.expand(cols.shape) if valid is None else (alpha * valid).to(out.dtype)
    return out.scatter_add_(1, cols, source)


def tap_sums(grad: torch.Tensor, geo: WeightGeometry, rows: slice) -> torch.Tensor:
    """``sum(grad * delta)`` per row, ``(R, 1)``, for the block ``rows`` that ``grad`` holds:
    the entries at the taps, gathered (``O x R`` of them, from iota indices when
    compiling, where the block is every row: :func:`row_blocks`)."""
    if torch.compiler.is_compiling():
        index, valid, _ = _tap_index(geo, grad)
        picked = _by_channel(grad, geo)[index] * valid
        return picked.sum(dim=1).view(-1, *(1,) * (grad.dim() - 1))
    cols, valid = _taps(geo, grad.device).rows(rows)
    picked = grad.gather(1, cols)
    return (picked if valid is None else picked * valid).sum(dim=1, keepdim=True)


BLOCK = 1 << 16
"""Entries per row block of the eager node: its float64 temporaries are at most this long."""


def row_blocks(weight: torch.Tensor) -> list[slice]:
    """The row blocks the node works through on the ``(O, L)`` rows ``weight``: one block
    when compiling (the compiler fuses the arithmetic into kernels that keep no temporaries)
    or on the meta device (nothing is allocated), else blocks of about :data:`BLOCK` entries,
    so no float64 temporary is the size of the weight."""
    rows = weight.shape[0]
    if torch.compiler.is_compiling() or weight.device.type == "meta":
        return [slice(0, rows)]
    length = weight.shape[1]
    step = max(1, BLOCK // max(length, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _filters(w: torch.Tensor) -> torch.Tensor:
    """What the node works on: ``w``'s ``(O, L)`` rows eagerly (where the taps are found by
    index); ``w`` itself while compiling, so that its layout stays the compiler's choice (a
    reshape to rows would pin it to contiguous, and the conv that reads the result to a
    channels-last copy of it)."""
    return w if torch.compiler.is_compiling() else w.reshape(w.shape[0], -1)


def _part(scale: torch.Tensor | None, rows: slice) -> Any:
    """The rows ``rows`` of an ``(O, 1)`` factor (a 0-d one serves every row; None stays)."""
    return scale[rows] if scale is not None and scale.dim() else scale


def _joined(parts: list[Any]) -> Any:
    """Per-block factors as one; a factor that is 0-d or None in one block is so in all."""
    if len(parts) == 1 or parts[0] is None or not parts[0].dim():
        return parts[0]
    return torch.cat(parts)


def _factors(
    s: torch.Tensor, m: torch.Tensor | None, b: torch.Tensor, eps: torch.Tensor, normalize: bool
) -> tuple[torch.Tensor | None, ...]:
    """``(f, gain, k, q, d)`` of one row block (the module docstring): ``W_hat = s f + alpha
    delta``, ``dbeta = gain <s, G>`` (gain None: ``normalize=False``, ``dbeta = <s, G>``),
    ``dv = (k G - q <s, G> s) / d`` (q None: ``dv = k G``; d None: no division)."""
    if not normalize:
        return b, None, b, None, None
    gain, r, below = row_gain(s, m, eps)
    f = b * gain
    q = torch.where(below, 0, f / (r * r))
    if m is None:  # 1 / d folded into k and q: gain is already 1 / eps below the clamp
        return f, gain, f, q, None
    return f, gain, torch.where(below, b, f), q, torch.where(below, eps, m)


def _assembled(
    s: torch.Tensor, f: torch.Tensor, a: torch.Tensor, geo: WeightGeometry | None, rows: slice,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``s f + alpha delta`` of the block ``rows``: eagerly in float64, written over ``s`` (a
    float64 block of the node's own) for :class:`_Result` to round; compiled (one block, a
    new tensor), rounded to ``dtype`` here (:func:`_rounded_with_taps`)."""
    block = s.mul_(f)
    if geo is None:
        return block
    if torch.compiler.is_compiling():
        return _rounded_with_taps(block, a, geo, dtype)
    return add_identity(block, a, geo, rows)


class _Result:
    """A weight-sized result in ``dtype``, put together from float64 row blocks, each rounded
    once: a single block becomes the result (a new tensor: never the scratch it may be in),
    several are written into one tensor of ``shape``."""

    def __init__(self, blocks: int, shape: torch.Size, dtype: torch.dtype, device: Any) -> None:
        self.dtype = dtype
        self.out = None if blocks == 1 else torch.empty(shape, dtype=dtype, device=device)

    def put(self, rows: slice, block: torch.Tensor) -> None:
        if self.out is None:
            # A compiled block is never scratch: no copy for the compiler to keep.
            rounded = torch.compiler.is_compiling() and block.dtype == self.dtype
            self.out = block if rounded else block.to(self.dtype, copy=True)
        else:
            self.out[rows] = block

    def shaped(self, shape: torch.Size) -> torch.Tensor:
        """The result (every block put), as ``shape``."""
        assert self.out is not None
        return self.out.reshape(shape)


_FLOAT32 = torch.finfo(torch.float32)

_UNDERFLOW = 2.0**-120
"""A float32 sum of ``L`` squares or products at least ``L`` times this is unharmed by the
terms that underflow: each loses less than ``2**-150``, together less than ``2**-30`` of it."""

_ABOVE = 1 + 2.0**-16
"""How far above the clamp a float32 norm must be for its filter to be above it for certain
(the float64 path decides the filters nearer ``eps``)."""


def _span(t: torch.Tensor) -> tuple[float, float]:
    """The least and greatest magnitude in ``t`` (NaN where ``t`` holds a NaN)."""
    low, high = torch.aminmax(t.abs())
    return low.item(), high.item()


def _narrowed(factor: torch.Tensor, low: float, high: float) -> torch.Tensor | None:
    """The float64 per-filter ``factor``, whose magnitudes lie in ``[low, high]``, rounded to
    float32 if each is 0 or a normal float32 number there, with a factor of two to spare
    (so bounds worked out in float64 beside the tensor's own arithmetic serve); else None."""
    if high == 0 or 2 * _FLOAT32.tiny <= low <= high <= _FLOAT32.max / 2:
        return factor.to(torch.float32)
    return None


def tracing() -> bool:
    """Inside a compiler's, tracer's or scripter's trace, which decides itself what to keep
    and would bake the float32 path's data-dependent choice into the graph (a compiler would
    break the graph at it)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def _narrow_forward(
    ctx: Any, flat: torch.Tensor, alpha: Any, b: torch.Tensor, eps: torch.Tensor,
    geo: WeightGeometry | None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None:
    """``(W_hat rows, (f, r, f32))`` by the float32 path of the module docstring, or None where
    it does not apply (then the float64 row blocks run): eager float32 rows on the CPU, every
    filter's norm certainly above the clamp and unharmed by underflow, every factor ``f`` 0 or
    a normal float32 number. ``r`` is ``||v||`` in float64 (``(O, 1)``; 1 with
    ``normalize=False``), ``f = beta / r`` and ``f32`` its float32 rounding. Keeps on ``ctx``
    the norms' span and a 0-d ``beta``'s value, from which the backward bounds its factor."""
    if flat.dtype != torch.float32 or flat.device.type != "cpu" or tracing():
        return None
    low = high = 1.0
    if ctx.normalize:
        norms = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
        low, high = (t.item() for t in torch.aminmax(norms))
        floor = max(eps.item() * _ABOVE, math.sqrt(flat.shape[1] * _UNDERFLOW))
        if not floor <= low <= high < math.inf:  # non-finite, clamped or tiny filters; NaN
            return None
        r = norms.to(torch.float64)
        f = b / r
    else:
        r, f = torch.ones((), dtype=torch.float64), b
    ctx.norms, ctx.beta_value = (low, high), None if b.dim() else abs(b.item())
    scale = ctx.beta_value
    f32 = _narrowed(f, *((scale / high, scale / low) if scale is not None else _span(f)))
    if f32 is None:
        return None
    return _narrow_assembled(flat, f32, alpha, geo), (f, r, f32)


def _narrow_assembled(
    flat: torch.Tensor, f32: torch.Tensor, alpha: Any, geo: WeightGeometry | None
) -> torch.Tensor:
    """``W_hat``'s rows on the float32 path, ``v f + alpha delta`` in float32: what the forward
    returns and :func:`recompute` forms again, bit for bit."""
    out = flat * f32.view(-1, 1)
    if geo is not None:
        add_identity(out, _rows(alpha, torch.float32, 2), geo, slice(None))
    return out


def _narrow_backward(
    ctx: Any, grad: torch.Tensor, flat: torch.Tensor, f: torch.Tensor, r: torch.Tensor,
    f32: torch.Tensor,
) -> tuple[Any, ...] | None:
    """The backward of :func:`_narrow_forward`'s ``W_hat`` by the float32 path, or None where
    ``<v, G>`` may have lost to underflow or overflowed, or the factor ``q <s, G>`` is not 0
    or a normal float32 number (the float64 blocks then run): ``dv = f G - c v`` with
    ``c = (f / r) <v / r, G>``, ``dbeta = <v / r, G>``, ``dalpha`` the taps of ``G``."""
    need_w, need_alpha, need_beta = ctx.needs_input_grad[:3]
    g = grad.reshape(flat.shape)
    products = along = None
    if need_beta or (need_w and ctx.normalize):
        products = flat * g
        sums = products.sum(dim=1, keepdim=True)
        low, high = _span(sums)
        if not flat.shape[1] * _UNDERFLOW <= low <= high < math.inf:
            return None
        along = sums.to(torch.float64) / r  # <v / r, G>
    dw = None
    if need_w:
        dw = g * f32 if products is None else torch.mul(g, f32.view(-1, 1), out=products)
        if ctx.normalize:
            assert along is not None  # formed above whenever normalize and need_w
            c = along * (f / r)
            scale, (r_low, r_high) = ctx.beta_value, ctx.norms
            span = _span(c) if scale is None else (scale * low / r_high**3, scale * high / r_low**3)
            c32 = _narrowed(c, *span)
            if c32 is None:
                return None
            dw.addcmul_(flat, c32.view(-1, 1), value=-1)
        dw = dw.view(grad.shape)
    alpha_layout, beta_layout = ctx.layouts
    dalpha = None
    if need_alpha and ctx.geo is not None:
        dalpha = _reduced(tap_sums(g, ctx.geo, slice(None)), alpha_layout)
    dbeta = _reduced(along, beta_layout) if need_beta and along is not None else None
    return dw, dalpha, dbeta, None, None, None


class DiracWeight(torch.autograd.Function):
    """``apply(w, alpha, beta, geo, eps, normalize) -> W_hat`` in ``w``'s dtype.

    ``alpha``/``beta``: numbers or 0-d/(O,) tensors; ``geo``: the
    :class:`~dirac_core.delta.WeightGeometry` of ``w`` (where the Dirac tensor's ones are),
    or None for no identity term (``alpha`` is then not used). Each weight-sized result is
    computed in float64 from the weight's own values, a row block at a time, and rounded
    once; per filter, only vectors of length O are kept (see the module docstring).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, w: torch.Tensor, alpha: Any, beta: Any, geo: WeightGeometry | None,
        eps: float, normalize: bool,
    ) -> torch.Tensor:
        flat = _filters(w)
        b = _rows(beta, torch.float64, flat.dim())
        eps_t = _eps64(eps, w.dtype, w.device)
        ctx.layouts = (_layout(alpha), _layout(beta))
        ctx.geo = geo
        ctx.shape = w.shape
        ctx.normalize = normalize
        beta_tensor = beta if isinstance(beta, torch.Tensor) else None
        narrow = _narrow_forward(ctx, flat, alpha, b, eps_t, geo)
        ctx.narrow = narrow is not None
        if narrow is not None:
            w_hat, saved = narrow
            ctx.save_for_backward(flat, beta_tensor, *saved)
            return w_hat.view(w.shape)
        a = _rows(alpha, torch.float64, flat.dim())
        columns: list[list[Any]] = [[] for _ in range(6)]
        blocks = row_blocks(flat)
        out = _Result(len(blocks), flat.shape, w.dtype, w.device)
        for rows in blocks:
            v = flat[rows]
            # s is the node's own float64 block (scratch or new), which _assembled overwrites
            own = _scratch(0, v)
            s, m = prescaled(v, own) if normalize else (scaled_rows(v, None, own), None)
            factors = _factors(s, m, _part(b, rows), eps_t, normalize)
            out.put(rows, _assembled(s, factors[0], _part(a, rows), geo, rows, w.dtype))
            for column, value in zip(columns, (*factors, m), strict=True):
                column.append(value)
        # Only w (whose rows are taken again in the backward), per-filter vectors and beta.
        ctx.save_for_backward(flat, beta_tensor, *(_joined(c) for c in columns))
        return out.shaped(w.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        if not ctx.narrow:
            flat, _, _, gain, k, q, d, m = ctx.saved_tensors
            return _blocks_backward(ctx, grad, flat, gain, k, q, d, m)
        flat, _, f, r, f32 = ctx.saved_tensors
        grads = _narrow_backward(ctx, grad, flat, f, r, f32)
        if grads is not None:
            return grads
        # A factor of this gradient is no normal float32: the float64 blocks, same factors.
        if not ctx.normalize:
            return _blocks_backward(ctx, grad, flat, None, f, None, None, None)
        return _blocks_backward(ctx, grad, flat, 1 / r, f, f / (r * r), None, None)


def _blocks_backward(
    ctx: Any, grad: torch.Tensor, flat: torch.Tensor, gain: torch.Tensor | None,
    k: torch.Tensor, q: torch.Tensor | None, d: torch.Tensor | None, m: torch.Tensor | None,
) -> tuple[Any, ...]:
    """The backward a float64 row block at a time, from the factors of the module
    docstring."""
    alpha_layout, beta_layout = ctx.layouts
    need_w, need_alpha, need_beta = ctx.needs_input_grad[:3]
    need_alpha = need_alpha and ctx.geo is not None
    grad_rows = grad.reshape(flat.shape)
    blocks = row_blocks(flat)
    dw = _Result(len(blocks), flat.shape, grad.dtype, grad.device) if need_w else None
    alpha_parts, beta_parts = [], []
    for rows in blocks:
        g = scaled_rows(grad_rows[rows], None, _scratch(0, grad_rows[rows]))  # becomes dv
        if need_alpha:
            alpha_parts.append(tap_sums(g, ctx.geo, rows))
        s = along = None
        if need_beta or (need_w and q is not None):
            v = flat[rows]
            s = scaled_rows(v, _part(m, rows), _scratch(1, v))
            product = g * s if (out := _scratch(2, v)) is None else torch.mul(g, s, out=out)
            along = product.sum(dim=_within(product), keepdim=True)  # <s, G>
        if need_beta:
            beta_parts.append(along if gain is None else along * gain[rows])
        if dw is not None:
            dw.put(rows, _weight_grad(g, s, along, *(_part(t, rows) for t in (k, q, d))))
    dalpha = _reduced(_joined(alpha_parts), alpha_layout) if need_alpha else None
    dbeta = _reduced(_joined(beta_parts), beta_layout) if need_beta else None
    grad_w = None if dw is None else dw.shaped(grad.shape)
    return grad_w, dalpha, dbeta, None, None, None


def _weight_grad(
    g: torch.Tensor, s: Any, along: Any, k: torch.Tensor,
    q: torch.Tensor | None, d: torch.Tensor | None,
) -> torch.Tensor:
    """``dv = (k G - q <s, G> s) / d`` of one row block in float64, written over ``g`` (the
    node's own float64 copy of the incoming gradient): no weight-sized temporary. ``s`` and
    ``<s, G>`` are only read when ``q`` is not None."""
    g.mul_(k)
    if q is not None:
        g.addcmul_(s, q * along, value=-1)
    return g if d is None else g.div_(d)


def recompute(node: Any, alpha: Any) -> torch.Tensor:
    """``W_hat`` again, bit for bit, from the :class:`DiracWeight` backward node ``node`` that
    made it (``alpha``: the same ``alpha``, unchanged): the saved ``W`` times the saved
    per-filter factors, ``alpha`` added at the ones, as the forward pass did (no reduction is
    repeated). Reading ``node.saved_tensors`` raises autograd's error if ``W`` or ``beta``
    changed in place since the forward pass."""
    if node.narrow:
        flat, _, _, _, f32 = node.saved_tensors
        return _narrow_assembled(flat, f32, alpha, node.geo).view(node.shape)
    flat, _, f, _, _, _, _, m = node.saved_tensors
    a = _rows(alpha, torch.float64, flat.dim())
    blocks = row_blocks(flat)
    out = _Result(len(blocks), flat.shape, flat.dtype, flat.device)
    for rows in blocks:
        v = flat[rows]
        s = scaled_rows(v, _part(m, rows), _scratch(0, v))
        out.put(rows, _assembled(s, _part(f, rows), _part(a, rows), node.geo, rows,
                                  flat.dtype))
    return out.shaped(node.shape)
