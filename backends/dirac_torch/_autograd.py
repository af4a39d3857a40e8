"""The Dirac weight as one autograd node with the spec's VJP written out (paper eq. 13).

``W_hat = alpha * delta + beta * normalize(W)`` runs once per training step in every layer.
Built from generic ops, autograd would record about 30 small kernels for it; here the forward
is 6 weight-sized kernels and the backward 6, the rest being per-filter vectors of length O.
The node is plain tensor code, so ``torch.compile`` traces its forward and backward into the
model's graph (no graph break) and fuses them with the neighbouring ops.

With ``v`` a filter of ``W``, ``m = max|v|``, ``s = v / m``, ``r = ||s||`` (so ``||v|| = m r``,
computed without overflow), ``u = s / r`` and ``G`` the incoming gradient:

- forward: ``normalize(v) = s * gain`` with ``gain = 1 / r`` when ``m r >= eps`` (the filter
  is above the clamp), else ``m / eps``;
- ``dalpha = sum(G * delta)``, ``dbeta = sum(G * normalize(v)) = gain * sum(G * s)`` (per
  filter, then summed for a scalar);
- ``dv = beta * (G - u <u, G>) / (m r)`` above the clamp, ``beta * G / eps`` below;
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

from dirac_core.normalize import working_eps as _working_eps

_HALF = (torch.float16, torch.bfloat16)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the arithmetic runs in: float32 for half-precision inputs, else ``dtype``."""
    return torch.float32 if dtype in _HALF else dtype


def working_eps(eps: float, like: torch.Tensor) -> torch.Tensor:
    """``eps`` as the spec takes it: in ``like``'s (working) dtype and inside its positive
    finite range (:func:`dirac_core.normalize.working_eps`), as a 0-d tensor on ``like``'s
    device. A tensor, not a Python float: a float beyond the dtype's range cannot be mixed
    with its tensors, and CUDA divides by a scalar through its reciprocal, which overflows."""
    value = _working_eps(eps, str(like.dtype).rpartition(".")[2])
    return torch.full((), value, dtype=like.dtype, device=like.device)


def scaled_rows(
    flat: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(s, r, m, above)`` for the rows ``v`` of ``flat``: ``s = v / m`` with ``m = max|v|``
    (1 for a zero row), ``r = ||s||``, ``m`` (detached: ``v / ||v||`` does not change when ``v``
    is rescaled, so the true gradient does not flow through it) and ``above = m r >= eps``
    (``eps`` from :func:`working_eps`)."""
    scale = flat.detach().abs().amax(dim=1, keepdim=True)
    scaled = flat / torch.where(scale > 0, scale, 1)
    norm = torch.linalg.vector_norm(scaled, dim=1, keepdim=True)
    return scaled, norm, scale, norm * scale >= eps


def _rows(scale: Any, dtype: torch.dtype) -> Any:
    """A number, or a 0-d / ``(O,)`` tensor as ``dtype`` broadcasting over ``(O, n)`` rows."""
    if not isinstance(scale, torch.Tensor):
        return float(scale)
    scale = scale.to(dtype)
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


class DiracWeight(torch.autograd.Function):
    """``apply(w, alpha, beta, delta, eps, normalize) -> W_hat`` in ``w``'s dtype.

    ``alpha``/``beta``: numbers or 0-d/(O,) tensors; ``delta`` of ``w``'s shape (no gradient).
    Arithmetic in ``work_dtype(w.dtype)``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, w: torch.Tensor, alpha: Any, beta: Any, delta: torch.Tensor, eps: float,
        normalize: bool,
    ) -> torch.Tensor:
        dtype = work_dtype(w.dtype)
        flat = w.reshape(w.shape[0], -1).to(dtype)
        ones = delta.reshape(flat.shape).to(dtype)
        a, b = _rows(alpha, dtype), _rows(beta, dtype)
        safe = divisor = above = None
        if normalize:
            eps_t = working_eps(eps, flat)
            scaled, norm, scale, above = scaled_rows(flat, eps_t)
            safe = torch.where(above, norm, 1)
            gain = torch.where(above, 1 / safe, scale / eps_t)
            # d normalize(v) = (G - u <u, G>) / r / m above the clamp, G / eps below: two
            # divisions, never a product with 1 / (r m) or 1 / eps, which overflow for tiny
            # norms and eps (and turn a zero gradient into NaN).
            divisor = torch.where(above, scale, eps_t)
        else:
            scaled, gain = flat, torch.ones((), dtype=dtype, device=w.device)
        beta_tensor = beta if isinstance(beta, torch.Tensor) else None
        ctx.save_for_backward(scaled, ones, gain, safe, divisor, above, beta_tensor)
        ctx.beta_number = None if beta_tensor is not None else beta
        ctx.layouts = (_layout(alpha), _layout(beta))
        out = torch.addcmul(a * ones, scaled, b * gain)
        return out.reshape(w.shape).to(w.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        scaled, ones, gain, safe, divisor, above, beta_tensor = ctx.saved_tensors
        alpha_layout, beta_layout = ctx.layouts
        need_w, need_alpha, need_beta = ctx.needs_input_grad[:3]
        g = grad.reshape(scaled.shape).to(scaled.dtype)
        along_direction = (g * scaled).sum(dim=1, keepdim=True) * gain  # sum G normalize(v)
        dalpha = _reduced((g * ones).sum(dim=1, keepdim=True), alpha_layout) if need_alpha else None
        dbeta = _reduced(along_direction, beta_layout) if need_beta else None
        if not need_w:
            return None, dalpha, dbeta, None, None, None
        beta = ctx.beta_number if beta_tensor is None else beta_tensor
        b = _rows(beta, scaled.dtype)
        if above is not None:
            tangent = torch.addcmul(g, scaled, along_direction * gain, value=-1)
            dw = torch.where(above, tangent, g) * b / safe / divisor
        else:
            dw = g * b
        dw = dw.reshape(grad.shape).to(grad.dtype)
        return dw, dalpha, dbeta, None, None, None
