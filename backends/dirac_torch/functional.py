"""Differentiable PyTorch versions of the Dirac ops (DESIGN section 2).

Every function here matches the NumPy specification in :mod:`dirac_core` and is differentiable
by autograd, with the gradients the specification prescribes:

- ``normalize_filters``: norm branch when ``||v|| >= eps``, constant branch ``g / eps`` below,
  no NaN for an all-zero filter;
- ``ncrelu``: the gradient at exactly zero is zero on both halves;
- ``conv``: the spec's ``"same"`` padding (left ``d*floor(K/2)``, right ``d*(K-1) - left``),
  which for even kernels differs from PyTorch's own ``padding="same"``.

Public functions check their arguments and raise ``ValueError``/``TypeError`` naming the
argument; the underscored helpers skip the checks and are what the layers call per step.

TF32: these functions follow PyTorch's global TF32 settings, as any ``nn.Conv2d`` does, so a
user who enables TF32 for training gets it here too. The spec-conformance backend
(:class:`dirac_torch.backend.TorchBackend`) instead forces IEEE float32 on CUDA.

>>> import torch
>>> x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
>>> delta = dirac_tensor((3, 6, 4, 4), dtype=torch.float64)
>>> torch.allclose(conv(ncrelu(x), delta, padding="same"), x)  # paper eq. 11, even kernel
True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dirac_core import _checks as ck
from dirac_core.api import check_conv_args, check_filters, check_shape, check_weight_args
from dirac_core.padding import Pairs, resolve_padding

from ._autograd import DiracWeight, scaled_rows, work_dtype

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

__all__ = ["conv", "dirac_tensor", "dirac_weight", "ncrelu", "normalize_filters"]


# ---------------------------------------------------------------------------- helpers


def torch_dtype(dtype: Any) -> torch.dtype:
    """A floating ``torch.dtype`` from a dtype object, a name like ``"float32"``, or None.

    None gives ``torch.get_default_dtype()``.

    Raises
    ------
    TypeError
        ``dtype`` is not one of ``float64, float32, float16, bfloat16``.
    """
    if dtype is None:
        return torch.get_default_dtype()
    name = ck.dtype_name(dtype)
    if name not in ck.FLOAT_DTYPES:
        raise TypeError(f"dtype must be a floating dtype {ck.FLOAT_DTYPES}, got {dtype!r}")
    return getattr(torch, name)


def _require_tensor(x: Any, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}: {x!r:.80}")
    ck.require_float(x, name)
    return x


# ---------------------------------------------------------------------------- dirac tensor


def dirac_tensor(
    shape: Any,
    *,
    groups: int = 1,
    policy: str = "tile",
    dtype: Any = None,
    device: Any = None,
) -> torch.Tensor:
    """The Dirac (identity) tensor of a convolution weight (paper eq. 2, 7, 8).

    ``delta[o, i, c] = 1`` at the centre ``c = (floor(K1/2), ...)`` where, with
    ``No = O/groups``, ``o' = o % No`` and ``n = min(No, I/groups)``: ``o' % n == i % n``
    (``policy="tile"``, the paper's ``[I I ... I]``) or ``o' == i`` (``policy="min"``, as
    ``torch.nn.init.dirac_``).

    Parameters
    ----------
    shape : sequence of int
        ``(O, I/groups, K1, ..., KL)``, ``L >= 0``.
    groups : int
        Must divide ``O``; the tensor is block-diagonal over groups.
    policy : {"tile", "min"}
    dtype : torch.dtype or str, optional
        Floating; default ``torch.get_default_dtype()``.
    device : torch.device or str, optional

    Returns
    -------
    torch.Tensor of shape ``shape``, zeros and ones.

    Raises
    ------
    ValueError
        Fewer than 2 entries or a non-positive entry in ``shape``; ``groups`` not dividing O;
        unknown ``policy``.
    TypeError
        Non-int shape entries or a non-floating ``dtype``.

    Examples
    --------
    >>> dirac_tensor((2, 4, 1))[:, :, 0]
    tensor([[1., 0., 1., 0.],
            [0., 1., 0., 1.]])
    """
    shape = check_shape(shape)
    groups = ck.groups_for(groups, shape[0])
    policy = ck.policy_value(policy)
    return _dirac_tensor(shape, groups, policy, torch_dtype(dtype), device)


def _dirac_tensor(
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


# ---------------------------------------------------------------------------- normalize


def normalize_filters(w: torch.Tensor, *, eps: float = 1e-12) -> torch.Tensor:
    """Each output filter over its L2 norm: ``w[o] / max(||w[o]||, eps)`` (paper eq. 13).

    Overflow-safe for any finite input (each filter is first divided by its max-abs ``m``:
    ``||v|| = m * ||v / m||``), accumulated in float32 for float16/bfloat16, result in ``w``'s
    dtype. An all-zero filter gives zeros. Gradient: ``(g - u <u, g>) / ||v||`` with
    ``u = v / ||v||`` when ``||v|| >= eps``, ``g / eps`` below.

    Parameters
    ----------
    w : torch.Tensor of shape ``(O, ...)``, floating, at least 2 dims.
    eps : float > 0

    Raises
    ------
    TypeError, ValueError
        Non-tensor or non-floating ``w``; fewer than 2 dims or an empty one; ``eps <= 0``.

    Examples
    --------
    >>> normalize_filters(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    tensor([[0.6000, 0.8000],
            [0.0000, 0.0000]])
    """
    _require_tensor(w, "w")
    check_filters(w, "w")
    return _normalized(w, ck.eps_value(eps)).to(w.dtype)


def _normalized(w: torch.Tensor, eps: float) -> torch.Tensor:
    """``normalize_filters`` without checks, returned in ``work_dtype(w.dtype)``."""
    flat = w.to(work_dtype(w.dtype)).reshape(w.shape[0], -1)
    scaled, scaled_norm, _, above = scaled_rows(flat, eps)
    # Each branch is made finite where it is not taken, so its zero gradient stays zero (not NaN).
    unit = scaled / torch.where(above, scaled_norm, 1)
    below = torch.where(above, 0, flat) / eps
    return torch.where(above, unit, below).reshape(w.shape)


# ---------------------------------------------------------------------------- dirac weight


def dirac_weight(
    w: torch.Tensor,
    alpha: Any,
    beta: Any,
    *,
    delta: torch.Tensor | None = None,
    eps: float = 1e-12,
    normalize: bool = True,
    groups: int = 1,
    policy: str = "tile",
) -> torch.Tensor:
    """The Dirac parameterization ``W_hat = alpha * delta + beta * normalize(W)`` (eq. 13).

    ``alpha``/``beta`` are numbers or tensors of shape ``()`` or ``(O,)`` (one per output
    filter). ``normalize=False`` gives ``alpha * delta + beta * W`` (eq. 14 when both are 1).
    Arithmetic runs in float32 for half-precision ``w``; the result has ``w``'s dtype.
    Differentiable (first order) in ``w``, ``alpha`` and ``beta``: one fused autograd node whose
    backward is the spec's VJP (see :mod:`dirac_torch._autograd`).

    Parameters
    ----------
    w : torch.Tensor ``(O, I/groups, K...)``
    alpha, beta : float or torch.Tensor of shape ``()`` or ``(O,)``
    delta : torch.Tensor, optional
        ``dirac_tensor(w.shape, groups=groups, policy=policy)`` precomputed (layers cache it);
        ``groups`` and ``policy`` are then not used.
    eps, normalize, groups, policy
        As in :func:`normalize_filters` and :func:`dirac_tensor`.

    Raises
    ------
    ValueError
        ``alpha``/``beta`` of another shape; ``delta`` not of ``w``'s shape; bad ``groups``.
    TypeError
        Non-floating ``w``, ``alpha``, ``beta``.

    Examples
    --------
    >>> dirac_weight(torch.zeros(1, 1, 3), 2.0, 1.0)
    tensor([[[0., 2., 0.]]])
    """
    _require_tensor(w, "w")
    args = check_weight_args(w, alpha, beta, eps, normalize, groups, policy)
    if delta is None:
        delta = _dirac_tensor(
            tuple(w.shape), args["groups"], args["policy"], work_dtype(w.dtype), w.device
        )
    elif _require_tensor(delta, "delta").shape != w.shape:
        raise ValueError(
            f"delta has shape {tuple(delta.shape)}; expected the shape of w {tuple(w.shape)}"
        )
    return _dirac_weight(w, alpha, beta, delta, args["eps"], normalize)


def _dirac_weight(
    w: torch.Tensor, alpha: Any, beta: Any, delta: torch.Tensor, eps: float, normalize: bool
) -> torch.Tensor:
    """``dirac_weight`` without checks; ``delta`` is given. One fused autograd node."""
    return DiracWeight.apply(w, alpha, beta, delta, eps, normalize)


# ---------------------------------------------------------------------------- NCReLU


def ncrelu(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Negative-concatenated ReLU ``cat([max(x, 0), min(x, 0)], dim)`` (paper eq. 10).

    The output is twice as long as ``x`` along ``dim``. The gradient at exactly zero is zero on
    both halves; NaN propagates to both halves.

    Examples
    --------
    >>> ncrelu(torch.tensor([[-1.0, 2.0]]))
    tensor([[ 0.,  2., -1.,  0.]])
    """
    _require_tensor(x, "x")
    ck.require_ndim(x, "x", 1, "a tensor with a channel dim")
    return _ncrelu(x, ck.axis_value(dim, x.dim()))


def _ncrelu(x: torch.Tensor, dim: int) -> torch.Tensor:
    # Selecting a constant 0 where x is 0 gives gradient 0 there (clamp would pass 1) and +0.0
    # for x = -0.0, while NaN still propagates; plain ops keep tracing and ONNX export simple.
    return torch.cat((torch.where(x <= 0, 0, x), torch.where(x >= 0, 0, x)), dim)


# ---------------------------------------------------------------------------- convolution


def conv(
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> torch.Tensor:
    """N-d cross-correlation (0 to 3 spatial dims) with the spec's padding forms.

    ``y[n, o, p] = bias[o] + sum_{i,k} x_pad[n, g*Ni + i, p*s + k*d] * w[o, i, k]``.
    Zero spatial dims (``x`` of shape ``(N, C)``, ``w`` of shape ``(O, C/groups)``) is a
    (grouped) matrix product.

    Parameters
    ----------
    x : torch.Tensor ``(N, C, S1, ..., SL)``; w : ``(O, C/groups, K1, ..., KL)``;
    bias : ``(O,)`` or None.
    stride, dilation : int or L ints.
    padding : int, L ints, L ``(left, right)`` pairs, ``"valid"``, or ``"same"`` (stride 1;
        left ``d*floor(K/2)``, right ``d*(K-1) - left``: asymmetric for even ``K``, unlike
        PyTorch's ``"same"``, so that ``conv(x, delta, padding="same") == x``).
    groups : int

    Raises
    ------
    ValueError
        Mismatched dims or channels, bad stride/padding/dilation, ``"same"`` with stride > 1,
        more than 3 spatial dims, an input too small for the kernel.
    TypeError
        Non-tensor or non-floating arguments, or mixed dtypes.

    Examples
    --------
    >>> conv(torch.arange(4.0).view(1, 1, 4), torch.ones(1, 1, 2), padding="same")
    tensor([[[0., 1., 3., 5.]]])
    """
    _require_tensor(x, "x")
    _require_tensor(w, "w")
    if bias is not None:
        _require_tensor(bias, "bias")
    if w.dim() - 2 > 3:
        raise ValueError(
            f"w has shape {tuple(w.shape)}: torch convolves 0 to 3 spatial dims, got {w.dim() - 2}"
        )
    args = check_conv_args(x, w, bias, stride, padding, dilation, groups)
    pairs = resolve_padding(args["padding"], tuple(w.shape[2:]), args["dilation"])
    return _conv(x, w, bias, args["stride"], pairs, args["dilation"], args["groups"])


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, ...],
    pairs: Pairs,
    dilation: tuple[int, ...],
    groups: int,
) -> torch.Tensor:
    """``conv`` without checks, with explicit ``(left, right)`` padding pairs."""
    if w.dim() == 2:
        # torch has no 0-d conv: a length-1 spatial dim turns it into conv1d (groups included).
        y = _conv(x[..., None], w[..., None], bias, (1,), ((0, 0),), (1,), groups)
        return y[..., 0]
    if all(left == right for left, right in pairs):
        return _CONV[w.dim() - 2](x, w, bias, stride, [p for p, _ in pairs], dilation, groups)
    # F.pad lists the last dim first.
    x = F.pad(x, [p for pair in reversed(pairs) for p in pair])
    return _CONV[w.dim() - 2](x, w, bias, stride, 0, dilation, groups)


# ---------------------------------------------------------------------------- batch norm


def fold_batchnorm_unchecked(
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
    ``gamma``. The arithmetic runs in float64 whatever the inputs' dtypes (the work is one
    multiply per weight entry, and folding then adds no rounding beyond the final cast); results
    in ``weight``'s dtype. No argument checks here: call :func:`dirac_core.fold_batchnorm` (or
    :func:`dirac_torch.fold.fold_batchnorm` for modules), which validate and dispatch to this.

    Examples
    --------
    >>> one = torch.ones(1)
    >>> fold_batchnorm_unchecked(torch.ones(1, 1, 1), None, 2 * one, one, one, 3 * one, eps=1.0)
    (tensor([[[1.]]]), tensor([0.]))
    """
    dtype = torch.float64
    scale = gamma.to(dtype) / torch.sqrt(var.to(dtype) + eps)
    shift = -mean.to(dtype) if bias is None else bias.to(dtype) - mean.to(dtype)
    new_weight = weight.to(dtype) * scale.view(-1, *(1,) * (weight.dim() - 1))
    new_bias = shift * scale + beta.to(dtype)
    return new_weight.to(weight.dtype), new_bias.to(weight.dtype)
