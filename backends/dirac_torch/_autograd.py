"""The Dirac weight as one autograd node with the spec's VJP written out (paper eq. 13).

``W_hat = alpha * delta + beta * normalize(W)`` runs once per training step in every layer.
Built from generic ops, autograd would record about 30 small kernels for it. Here each
direction is one reduction over the filters and one weight-sized elementwise pass, with only
per-filter vectors of length O in between, so ``torch.compile`` (which traces the node into the
model's graph, with no graph break) emits about one fused kernel for each.

Every weight-sized quantity is formed in float64 and rounded once to ``W``'s dtype. float32
and half-precision filters ``v`` are used as they are (``m = 1``): the squares of their values
all lie inside float64's normal range, so ``||v||`` neither overflows nor underflows. float64
filters are divided by ``m = max|v|`` first (:func:`prescaled`). With ``s = v / m``,
``r = ||s||`` (so ``||v|| = m r``) and ``G`` the incoming gradient:

- forward: ``normalize(v) = s * gain`` with ``gain = 1 / r`` when ``m r >= eps`` (the filter
  is above the clamp), else ``m / eps``;
- ``dalpha = sum(G * delta)``, ``dbeta = sum(G * normalize(v)) = gain * <s, G>`` (per filter,
  then summed for a scalar);
- ``dv = (f G - c s) / m`` with ``f = beta * gain`` and ``c = f <s, G> / r**2`` above the clamp,
  ``0`` below: that is ``beta (G - u <u, G>) / ||v||`` with ``u = v / ||v||`` above, and
  ``beta G / eps`` below. No factor is ever ``1 / ||v||`` or ``1 / eps`` in a narrow dtype,
  which would overflow for tiny norms and turn a zero gradient into NaN;
- ``eps`` is taken in the working dtype and kept inside its positive finite range, as the
  spec says (:func:`working_eps`).

The backward reads ``beta`` (never ``alpha``'s value), so ``beta`` is kept with
``save_for_backward``: changing it in place between forward and backward raises autograd's
"modified by an inplace operation" error, as the same formula written with generic ops would.
Higher-order gradients through this node are not supported (``once_differentiable``); first
derivatives are exact and checked against the reference by the tests.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from dirac_core.delta import WeightGeometry, is_tap, tap_columns

from .torch_types import work_dtype, working_eps


def _rows(scale: Any, dtype: torch.dtype) -> torch.Tensor:
    """A number or a 0-d / ``(O,)`` tensor as a ``dtype`` tensor broadcasting over ``(O, n)``
    rows (a number becomes a 0-d tensor, which broadcasts on any device)."""
    scale = torch.as_tensor(scale, dtype=dtype)
    return scale.view(-1, 1) if scale.dim() else scale


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


def prescaled(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(s, m)``: the rows ``v`` of ``flat`` as float64 rows ``s = v / m`` whose norm can be
    summed without overflow or underflow. Narrower dtypes need no scaling (``m`` is None):
    the squares of float32 (and half) values all lie inside float64's normal range. float64
    rows are divided by ``m = max|v|`` (by 1 for a zero row, whose ``m`` stays 0; detached:
    ``v / ||v||`` does not change when ``v`` is rescaled, so no gradient flows through ``m``)."""
    if flat.dtype != torch.float64:
        return flat.to(torch.float64), None
    scale = flat.detach().abs().amax(dim=1, keepdim=True)
    return divided(flat, scale), scale


def divided(rows: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``rows / m`` per row, a zero ``m`` taken as 1 (:func:`prescaled`'s division, which the
    backward repeats rather than keeping its float64 result)."""
    return rows / torch.where(m > 0, m, 1)


def row_gain(
    s: torch.Tensor, m: torch.Tensor | None, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(gain, r, above)`` per row of :func:`prescaled` rows ``s``: ``normalize(v) = s * gain``
    with ``r = ||s||``, ``above = m r >= eps`` (``eps``: :func:`working_eps` as float64),
    ``gain = 1 / r`` above the clamp and ``m / eps`` below (< 1 for float64 rows; ``r`` is set
    to 1 below, so that no branch divides by zero). A filter with a NaN or infinite entry has
    ``r`` NaN and counts as above: its gain is NaN, so every entry of it is NaN (the spec)."""
    r = torch.linalg.vector_norm(s, dim=1, keepdim=True)
    r = torch.where(r.isinf(), torch.nan, r)  # unscaled rows: an infinite entry gives r = inf
    above = ~((r if m is None else r * m) < eps)
    r = torch.where(above, r, 1)
    return torch.where(above, 1 / r, (1 if m is None else m) / eps), r, above


def _ones(geo: WeightGeometry, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cols, valid)`` of :func:`dirac_core.delta.tap_columns` as tensors on ``device``,
    built once per geometry and device (``O * ceil(Ni / n)`` entries, not a weight)."""
    key = (geo, device)
    if key not in _TAPS:
        cols, valid = tap_columns(geo)
        _TAPS[key] = (torch.from_numpy(cols).to(device), torch.from_numpy(valid).to(device))
    return _TAPS[key]


_TAPS: dict[tuple[WeightGeometry, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _tap_mask(geo: WeightGeometry, device: torch.device) -> torch.Tensor:
    """The ``(O, L)`` predicate of the ones from iota indices: inside a compiled graph the
    compiler fuses it into the kernel that consumes it, so it never exists in memory."""
    rows = torch.arange(geo.out_channels, device=device)[:, None]
    cols = torch.arange(geo.length, device=device)[None, :]
    return is_tap(geo, rows, cols)


def add_identity(
    out: torch.Tensor, alpha: torch.Tensor, geo: WeightGeometry, rows: slice
) -> torch.Tensor:
    """``out + alpha * delta`` for the block ``rows`` of the ``(O, L)`` rows (``out`` holds
    just those rows; ``alpha`` is 0-d or holds them too): by index eagerly (``alpha`` added in
    place at the taps), by the fused predicate when compiling."""
    if torch.compiler.is_compiling():
        return torch.where(_tap_mask(geo, out.device)[rows], out + alpha, out)
    cols, valid = (t[rows] for t in _ones(geo, out.device))
    return out.scatter_add_(1, cols, (alpha * valid).to(out.dtype))


def tap_sums(grad: torch.Tensor, geo: WeightGeometry, rows: slice) -> torch.Tensor:
    """``sum(grad * delta)`` per row, ``(R, 1)``, for the block ``rows`` that ``grad`` holds:
    the entries at the taps (gathered eagerly, masked in a fused reduction when compiling)."""
    if torch.compiler.is_compiling():
        picked = torch.where(_tap_mask(geo, grad.device)[rows], grad, 0)
        return picked.sum(dim=1, keepdim=True)
    cols, valid = (t[rows] for t in _ones(geo, grad.device))
    return (grad.gather(1, cols) * valid).sum(dim=1, keepdim=True)


BLOCK = 1 << 16
"""Entries per row block of the eager node: its float64 temporaries are at most this long."""


def row_blocks(weight: torch.Tensor) -> list[slice]:
    """The row blocks the node works through on the ``(O, L)`` rows ``weight``: one block
    when compiling (the compiler fuses the arithmetic into kernels that keep no temporaries)
    or on the meta device (nothing is allocated), else blocks of about :data:`BLOCK` entries,
    so no float64 temporary is the size of the weight."""
    rows, length = weight.shape
    if torch.compiler.is_compiling() or weight.device.type == "meta":
        return [slice(0, rows)]
    step = max(1, BLOCK // max(length, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _part(scale: torch.Tensor, rows: slice) -> torch.Tensor:
    """The rows ``rows`` of an ``(O, 1)`` factor (a 0-d one serves every row)."""
    return scale[rows] if scale.dim() else scale


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


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
        flat = w.reshape(w.shape[0], -1)
        out = torch.empty(flat.shape, dtype=w.dtype, device=w.device)
        a, b = _rows(alpha, torch.float64), _rows(beta, torch.float64)
        eps_t = working_eps(eps, work_dtype(w.dtype), w.device).to(torch.float64)
        factors: list[tuple[torch.Tensor, ...]] = []
        for rows in row_blocks(flat):
            if normalize:
                s, m = prescaled(flat[rows])
                gain, r, above = row_gain(s, m, eps_t)
                factors.append((gain, r, above) if m is None else (gain, r, above, m))
            else:
                s, gain = flat[rows].to(torch.float64), _rows(1, torch.float64)
            block = s * (_part(b, rows) * gain)
            if geo is not None:
                block = add_identity(block, _part(a, rows), geo, rows)
            out[rows] = block
        saved = [_joined(list(column)) for column in zip(*factors, strict=True)]
        beta_tensor = beta if isinstance(beta, torch.Tensor) else None
        # Only w (whose rows are taken again in the backward), per-filter vectors and beta.
        ctx.save_for_backward(flat, eps_t, beta_tensor, *saved)
        ctx.beta_number = None if beta_tensor is not None else beta
        ctx.layouts = (_layout(alpha), _layout(beta))
        ctx.geo = geo
        return out.reshape(w.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        flat, eps, beta_tensor, *factors = ctx.saved_tensors
        gain, r, above, m = (*factors, None)[:4] if factors else (None,) * 4
        alpha_layout, beta_layout = ctx.layouts
        need_w, need_alpha, need_beta = ctx.needs_input_grad[:3]
        need_alpha = need_alpha and ctx.geo is not None
        beta = ctx.beta_number if beta_tensor is None else beta_tensor
        b = _rows(beta, torch.float64)
        grad_rows = grad.reshape(flat.shape)
        dw = torch.empty(flat.shape, dtype=grad.dtype, device=grad.device) if need_w else None
        alpha_parts, beta_parts = [], []
        for rows in row_blocks(flat):
            v = flat[rows]
            s = v.to(torch.float64) if m is None else divided(v, m[rows])
            g = grad_rows[rows].to(torch.float64)
            along = (g * s).sum(dim=1, keepdim=True)  # <s, G>
            if need_alpha:
                alpha_parts.append(tap_sums(g, ctx.geo, rows))
            if need_beta:
                beta_parts.append(along if gain is None else along * gain[rows])
            if dw is None:
                continue
            if above is None:
                dw[rows] = g * _part(b, rows)
            else:
                dw[rows] = _normalize_vjp(
                    g, s, _part(b, rows), along, r[rows], None if m is None else m[rows],
                    above[rows], eps, gain[rows],
                )
        dalpha = _reduced(_joined(alpha_parts), alpha_layout) if need_alpha else None
        dbeta = _reduced(_joined(beta_parts), beta_layout) if need_beta else None
        dw = None if dw is None else dw.reshape(grad.shape)
        return dw, dalpha, dbeta, None, None, None


def _normalize_vjp(
    g: torch.Tensor, s: torch.Tensor, b: torch.Tensor, along: torch.Tensor, r: torch.Tensor,
    m: torch.Tensor | None, above: torch.Tensor, eps: torch.Tensor, gain: torch.Tensor,
) -> torch.Tensor:
    """``dv = (k G - c s) / d`` per row: ``k = f = beta gain``, ``c = f <s, G> / r**2``,
    ``d = m`` above the clamp; ``k = beta``, ``c = 0``, ``d = eps`` below. For unscaled rows
    ``1 / d`` is a finite float64 (``d >= eps >= 2**-149``) folded into ``k`` and ``c``; float64
    rows are divided by ``d`` elementwise, as ``1 / d`` may overflow there."""
    f = b * gain
    k = torch.where(above, f, b)
    c = torch.where(above, f * along / (r * r), 0)
    d = torch.where(above, 1 if m is None else m, eps)
    if m is None:
        return torch.addcmul(g * (k / d), s, c / d, value=-1)
    return torch.addcmul(g * k, s, c, value=-1) / d
