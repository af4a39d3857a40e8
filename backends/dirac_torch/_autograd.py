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
    return flat / torch.where(scale > 0, scale, 1), scale


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


class DiracWeight(torch.autograd.Function):
    """``apply(w, alpha, beta, delta, eps, normalize) -> W_hat`` in ``w``'s dtype.

    ``alpha``/``beta``: numbers or 0-d/(O,) tensors; ``delta`` of ``w``'s shape (no gradient).
    Each weight-sized result is computed in float64 from the weight's own values and rounded
    once; per filter, only vectors of length O are formed (see the module docstring).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, w: torch.Tensor, alpha: Any, beta: Any, delta: torch.Tensor, eps: float,
        normalize: bool,
    ) -> torch.Tensor:
        flat = w.reshape(w.shape[0], -1)
        if normalize:
            s, m = prescaled(flat)
            eps_t = working_eps(eps, work_dtype(w.dtype), w.device).to(torch.float64)
            gain, r, above = row_gain(s, m, eps_t)
        else:
            s, m, gain = flat.to(torch.float64), None, _rows(1, torch.float64)
            r = above = eps_t = None
        beta_tensor = beta if isinstance(beta, torch.Tensor) else None
        # s is converted again from w in the backward unless it had to be scaled
        saved = (flat if m is None else s, delta, gain, r, m, above, eps_t, beta_tensor)
        ctx.save_for_backward(*saved)
        ctx.beta_number = None if beta_tensor is not None else beta
        ctx.layouts = (_layout(alpha), _layout(beta))
        a, b = _rows(alpha, torch.float64), _rows(beta, torch.float64)
        out = torch.addcmul(s * (b * gain), delta.reshape(flat.shape), a)
        return out.reshape(w.shape).to(w.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        rows, delta, gain, r, m, above, eps, beta_tensor = ctx.saved_tensors
        alpha_layout, beta_layout = ctx.layouts
        need_w, need_alpha, need_beta = ctx.needs_input_grad[:3]
        s = rows.to(torch.float64)
        g = grad.reshape(s.shape).to(torch.float64)
        along = (g * s).sum(dim=1, keepdim=True)  # <s, G>
        dalpha = None
        if need_alpha:
            dalpha = _reduced((g * delta.reshape(s.shape)).sum(dim=1, keepdim=True), alpha_layout)
        dbeta = _reduced(along * gain, beta_layout) if need_beta else None
        if not need_w:
            return None, dalpha, dbeta, None, None, None
        beta = ctx.beta_number if beta_tensor is None else beta_tensor
        b = _rows(beta, torch.float64)
        dw = g * b if above is None else _normalize_vjp(g, s, b, along, r, m, above, eps, gain)
        return dw.reshape(grad.shape).to(grad.dtype), dalpha, dbeta, None, None, None


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
