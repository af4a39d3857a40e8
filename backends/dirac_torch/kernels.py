"""Unchecked PyTorch kernels of the Dirac ops: what layers and backends call on every step.

Arguments are assumed valid: :mod:`dirac_torch.functional` checks them (with the validators of
:mod:`dirac_core.validation`) and then calls these. Results follow ``docs/spec.md`` exactly:

- ``normalized``: norm branch when ``||v|| >= eps``, constant branch ``g / eps`` below, no NaN for
  an all-zero filter;
- ``ncrelu``: the gradient is zero on both halves at exactly zero and at a NaN;
- ``conv``: explicit ``(left, right)`` padding pairs, so the spec's asymmetric ``"same"`` for
  even kernels is honoured.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dirac_core.delta import WeightGeometry
from dirac_core.padding import Pairs

from ._autograd import DiracWeight, prescaled, row_gain
from .torch_types import work_dtype, working_eps

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def dirac_tensor(
    shape: tuple[int, ...], groups: int, policy: str, dtype: torch.dtype, device: Any
) -> torch.Tensor:
    out_channels, in_per_group = shape[:2]
    per_group = out_channels // groups
    local = torch.arange(out_channels, device=device)[:, None] % per_group
    inputs = torch.arange(in_per_group, device=device)[None, :]
    if policy == "min":
        mask = local == inputs
    else:
        n = min(per_group, in_per_group)
        mask = local % n == inputs % n
    delta = torch.zeros(shape, dtype=dtype, device=device)
    centre = tuple(k // 2 for k in shape[2:])
    delta[(slice(None), slice(None), *centre)] = mask.to(dtype)
    return delta


def normalized(w: torch.Tensor, eps: float) -> torch.Tensor:
    """``normalize_filters`` without checks, returned in ``work_dtype(w.dtype)``; generic ops,
    so autograd differentiates it."""
    work = work_dtype(w.dtype)
    flat = w.to(work).reshape(w.shape[0], -1)
    eps_t = working_eps(eps, work, w.device)
    s, m = prescaled(flat)
    _, r, below = row_gain(s, m, eps_t.to(torch.float64))
    # Each branch is made finite where it is not taken, so its zero gradient stays zero (not NaN).
    clamped = torch.where(below, flat, 0) / eps_t
    return torch.where(below, clamped, (s / r).to(work)).reshape(w.shape)


def dirac_weight(
    w: torch.Tensor, alpha: Any, beta: Any, geo: WeightGeometry | None, eps: float,
    normalize: bool,
) -> torch.Tensor:
    """``dirac_weight`` without checks, the Dirac tensor given by its geometry ``geo``
    (:func:`dirac_core.delta.weight_geometry`; None: no identity term). One fused autograd
    node; no dense Dirac tensor is formed."""
    return DiracWeight.apply(w, alpha, beta, geo, eps, normalize)


def ncrelu(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``ncrelu`` without checks: one autograd node, whose backward is :func:`ncrelu_vjp`."""
    return _NCReLU.apply(x, dim)


def ncrelu_vjp(g: torch.Tensor, at_most_zero: torch.Tensor, at_least_zero: torch.Tensor,
               dim: int) -> torch.Tensor:
    """The spec's ``dx = g+ * [x > 0] + g- * [x < 0]``, given the masks ``x <= 0`` and
    ``x >= 0`` that the forward computes anyway: ``x > 0`` is the second alone, ``x < 0`` the
    first alone, and where both hold (a zero) or neither (a NaN) the gradient is 0."""
    g_pos, g_neg = g.chunk(2, dim)
    return torch.where(at_most_zero, g_neg, g_pos).masked_fill_(at_most_zero == at_least_zero, 0)


class _NCReLU(torch.autograd.Function):
    # The spec's gradient is 0 at a NaN and at a zero: autograd of the forward's selects
    # passes both halves of g at a NaN, relu's passes one there, clamp's one at a zero. The
    # two masks kept are what autograd of the selects kept, so memory is unchanged.

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int) -> torch.Tensor:
        at_most_zero, at_least_zero = x <= 0, x >= 0
        ctx.dim = dim
        ctx.save_for_backward(at_most_zero, at_least_zero)
        # Selecting a constant 0 gives +0.0 for x = -0.0, while NaN still reaches both halves.
        return torch.cat((torch.where(at_most_zero, 0, x), torch.where(at_least_zero, 0, x)), dim)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        at_most_zero, at_least_zero = ctx.saved_tensors
        return ncrelu_vjp(g, at_most_zero, at_least_zero, ctx.dim), None


def _packed_strides(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself, or, when it is contiguous but a dim of length 1 carries another stride,
    the same memory viewed with a packed tensor's strides: torch 2.13's CPU ``conv1d`` with a
    bias, a stride of 3, padding 2 and dilation 2 crashes the process (SIGSEGV) on an input or
    a weight of length 1 whose stride along it is 2 (found by the conformance suite's drawn
    layouts)."""
    if not x.is_contiguous():
        return x
    packed = [1] * x.dim()
    for axis in range(x.dim() - 2, -1, -1):
        packed[axis] = packed[axis + 1] * x.shape[axis + 1]
    return x if list(x.stride()) == packed else x.as_strided(x.shape, packed)


def conv(
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, ...],
    pairs: Pairs,
    dilation: tuple[int, ...],
    groups: int,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """``conv`` without checks, with explicit ``(left, right)`` padding pairs.

    ``padding_mode`` is ``nn.ConvNd``'s: ``"zeros"`` (the spec's), ``"reflect"``,
    ``"replicate"`` or ``"circular"``.
    """
    if w.dim() == 2:
        # torch has no 0-d conv: a length-1 spatial dim turns it into conv1d (groups included).
        y = conv(x[..., None], w[..., None], bias, (1,), ((0, 0),), (1,), groups)
        return y[..., 0]
    native = _CONV.get(w.dim() - 2)  # beyond 3 spatial dims torch has no convolution
    # torch refuses an empty spatial dim even where its padding makes the output non-empty
    # (only an empty batch or channel count is taken): such an input is padded first.
    if (native and padding_mode == "zeros" and all(left == right for left, right in pairs)
            and all(x.shape[2:])):
        return native(_packed_strides(x), _packed_strides(w), bias, stride,
                      [p for p, _ in pairs], dilation, groups)
    # F.pad lists the last dim first.
    flat = [p for pair in reversed(pairs) for p in pair]
    x = F.pad(x, flat, mode="constant" if padding_mode == "zeros" else padding_mode)
    if native is None:
        return _conv_by_first_axis(x, w, bias, stride, dilation, groups)
    return native(x, w, bias, stride, 0, dilation, groups)


def _conv_by_first_axis(
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> torch.Tensor:
    """A convolution of ``L > 3`` spatial dims over padded ``x``, which torch does not have.

    With ``x_k = x[:, :, k d1 :: s1]`` (the rows that tap ``k`` of the first kernel axis meets,
    one per output row), ``y = sum_k conv_{L-1}(x_k, w[:, :, k])`` where the first spatial axis
    rides along with the batch: each term is a convolution of ``L - 1`` dims, down to conv3d.
    """
    n, c, rows = x.shape[:3]
    taps, s1, d1 = w.shape[2], stride[0], dilation[0]
    out_rows = (rows - d1 * (taps - 1) - 1) // s1 + 1
    no_padding = ((0, 0),) * (w.dim() - 3)
    y = None
    for k in range(taps):
        x_k = x[:, :, k * d1 : k * d1 + s1 * (out_rows - 1) + 1 : s1]
        x_k = x_k.movedim(2, 1).reshape(n * out_rows, c, *x.shape[3:])
        term = conv(x_k, w[:, :, k], None, stride[1:], no_padding, dilation[1:], groups)
        y = term if y is None else y + term
    assert y is not None  # a weight has at least one tap per axis
    y = y.reshape(n, out_rows, *y.shape[1:]).movedim(1, 2)
    return y if bias is None else y + bias.view(-1, *(1,) * (w.dim() - 2))


def fold_batchnorm(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    *,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode batch norm that follows a conv into the conv's weight and bias.

    With ``s = gamma / sqrt(var + eps)``: ``W' = W * s`` per output channel and
    ``b' = (b - mean) * s + beta`` (``b = 0`` when ``bias`` is None). Exact for any sign of
    ``gamma``. ``eps`` and ``var + eps`` are taken in the working dtype, as the spec says. The
    rest runs in float64 whatever the inputs' dtypes (the work is one multiply per weight
    entry, and folding then adds no rounding beyond the final cast); results in ``weight``'s
    dtype. No
    argument checks here: call :func:`dirac_core.fold_batchnorm` (or
    :func:`dirac_torch.fold.fold_batchnorm` for modules), which validate and dispatch to this.

    Examples
    --------
    >>> one = torch.ones(1)
    >>> fold_batchnorm(torch.ones(1, 1, 1), None, 2 * one, one, one, 3 * one, eps=1.0)
    (tensor([[[1.]]]), tensor([0.]))
    """
    dtype, work = torch.float64, work_dtype(weight.dtype)
    # var + eps is formed in the working dtype (float32 for float32 and half weights), as the
    # spec says: a sum beyond float32's range is inf there, and s = 0.
    eps = float(torch.tensor(eps, dtype=work))
    scale = gamma.to(dtype) / torch.sqrt((var.to(work) + eps).to(dtype))
    shift = -mean.to(dtype) if bias is None else bias.to(dtype) - mean.to(dtype)
    new_weight = weight.to(dtype) * scale.view(-1, *(1,) * (weight.dim() - 1))
    new_bias = shift * scale + beta.to(dtype)
    return new_weight.to(weight.dtype), new_bias.to(weight.dtype)
