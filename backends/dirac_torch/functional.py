"""Differentiable PyTorch versions of the Dirac ops.

Every function here matches the NumPy specification in :mod:`dirac_core` and is differentiable
by autograd, with the gradients the specification prescribes:

- ``normalize_filters``: norm branch when ``||v|| >= eps``, constant branch ``g / eps`` below,
  no NaN for an all-zero filter;
- ``ncrelu``: the gradient is zero on both halves at exactly zero and at a NaN;
- ``conv``: the spec's ``"same"`` padding (left ``d*floor(K/2)``, right ``d*(K-1) - left``),
  which for even kernels differs from PyTorch's own ``padding="same"``.

Every function here checks its arguments and raises ``ValueError``/``TypeError`` naming the
argument; the unchecked kernels the layers call at each step are in :mod:`.kernels`.

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

import math
from typing import Any

import torch

from dirac_core import validation as ck
from dirac_core.delta import weight_geometry
from dirac_core.padding import Pairs, resolve_padding

from . import kernels
from .torch_types import torch_device, torch_dtype, work_dtype

__all__ = ["conv", "dirac_tensor", "dirac_weight", "ncrelu", "normalize_filters"]


# ---------------------------------------------------------------------------- helpers


def sized_conv(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, ...],
    pairs: Pairs, dilation: tuple[int, ...], groups: int, expected: tuple[int, ...],
) -> torch.Tensor:
    """:func:`kernels.conv` on checked arguments, refusing the result unless it has the
    spec's output shape ``expected`` (:func:`dirac_core.validation.conv_geometry`'s).

    For outputs beyond memory (a CPU conv1d of 2**33 outputs) torch has returned the input's
    length instead of failing; the shape is checked here, where the arguments come from users,
    not on the layers' path.
    """
    y = kernels.conv(x, w, bias, stride, pairs, dilation, groups)
    if tuple(y.shape) != expected:
        raise MemoryError(
            f"conv of x {tuple(x.shape)} with w {tuple(w.shape)} has output shape {expected} "
            f"({math.prod(expected)} entries), beyond what torch computes here (it returned "
            f"shape {tuple(y.shape)})"
        )
    return y


def _require_tensor(x: Any, name: str) -> torch.Tensor:
    ck.require_native(x, name, torch.Tensor, "a torch.Tensor")
    ck.require_float(x, name)
    return x


def _require_scale(value: Any, name: str) -> None:
    """``alpha``/``beta`` of a torch weight: a tensor or a Python/NumPy scalar, the rule
    :func:`dirac_core.dirac_weight` applies (an array of another library is not a number)."""
    ck.require_native(value, name, torch.Tensor, "a torch.Tensor", scalar=True)


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
    shape = ck.check_shape(shape)
    groups = ck.groups_for(groups, shape[0])
    policy = ck.policy_value(policy)
    return kernels.dirac_tensor(shape, groups, policy, torch_dtype(dtype), torch_device(device))


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
    ck.check_filters(w, "w")
    return kernels.normalized(w, ck.positive_number(eps, "eps")).to(w.dtype)


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
    alpha, beta : Python or NumPy scalar, or torch.Tensor of shape ``()`` or ``(O,)``
    delta : torch.Tensor, optional
        A tensor of ``w``'s shape to use instead of the Dirac tensor (``groups`` and
        ``policy`` are then not used). Without it no Dirac tensor is formed: ``alpha`` is
        added at the kernel centres by index.
    eps, normalize, groups, policy
        As in :func:`normalize_filters` and :func:`dirac_tensor`.

    Raises
    ------
    ValueError
        ``alpha``/``beta`` of another shape; ``delta`` not of ``w``'s shape; bad ``groups``.
    TypeError
        Non-floating ``w``, ``alpha``, ``beta``; an ``alpha`` or ``beta`` that is neither a
        tensor nor a Python/NumPy scalar (a NumPy or JAX array).

    Examples
    --------
    >>> dirac_weight(torch.zeros(1, 1, 3), 2.0, 1.0)
    tensor([[[0., 2., 0.]]])
    """
    _require_tensor(w, "w")
    args = ck.check_weight_args(w, alpha, beta, eps, normalize, groups, policy)
    _require_scale(alpha, "alpha")
    _require_scale(beta, "beta")
    # Scale tensors are taken in the working dtype, as dirac_core.dirac_weight takes them (a
    # float64 beta of float32 weights is rounded to float32 first; autograd casts dbeta back).
    work = work_dtype(w.dtype)
    alpha, beta = (t.to(work) if isinstance(t, torch.Tensor) else t for t in (alpha, beta))
    if delta is None:
        geo = weight_geometry(tuple(w.shape), args["groups"], args["policy"])
        return kernels.dirac_weight(w, alpha, beta, geo, args["eps"], normalize)
    if _require_tensor(delta, "delta").shape != w.shape:
        raise ValueError(
            f"delta has shape {tuple(delta.shape)}; expected the shape of w {tuple(w.shape)}"
        )
    # A tensor of the caller's: whatever it holds, added with generic (differentiable) ops.
    scale = torch.as_tensor(alpha, dtype=work, device=w.device)
    scale = scale.view(-1, *(1,) * (w.dim() - 1)) if scale.dim() else scale
    rest = kernels.dirac_weight(w, 0.0, beta, None, args["eps"], normalize)
    return (scale * delta.to(work) + rest).to(w.dtype)


# ---------------------------------------------------------------------------- NCReLU


def ncrelu(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Negative-concatenated ReLU ``cat([max(x, 0), min(x, 0)], dim)`` (paper eq. 10).

    The output is twice as long as ``x`` along ``dim``. NaN propagates to both halves; the
    gradient is the spec's, zero on both halves at exactly zero and at a NaN.

    Raises
    ------
    TypeError
        Non-tensor or non-floating ``x``; a ``dim`` that is not an int.
    ValueError
        ``x`` with no dims; ``dim`` out of range for ``x``.

    Examples
    --------
    >>> ncrelu(torch.tensor([[-1.0, 2.0]]))
    tensor([[ 0.,  2., -1.,  0.]])
    """
    _require_tensor(x, "x")
    ck.require_ndim(x, "x", 1, "a tensor with a channel dim")
    return kernels.ncrelu(x, ck.axis_value(dim, x.dim(), "dim"))


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
    """N-d cross-correlation (any number of spatial dims) with the spec's padding forms.

    ``y[n, o, p] = bias[o] + sum_{i,k} x_pad[n, g*Ni + i, p*s + k*d] * w[o, i, k]``.
    Zero spatial dims (``x`` of shape ``(N, C)``, ``w`` of shape ``(O, C/groups)``) is a
    (grouped) matrix product; more than 3 (beyond ``F.conv3d``) are sums of 3-d convolutions
    over the leading kernel axes.

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
        an input too small for the kernel.
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
    args, expected = ck.conv_geometry(x, w, bias, stride, padding, dilation, groups)
    pairs = resolve_padding(args["padding"], tuple(w.shape[2:]), args["dilation"])
    return sized_conv(x, w, bias, args["stride"], pairs, args["dilation"], args["groups"],
                      expected)
