"""Folding a trained model into a plain inference network.

After training, every Dirac weight ``W_hat = alpha * delta + beta * normalize(W)`` (paper eq. 13)
is materialised once, and every eval-mode batch norm that directly follows a convolution is
absorbed into it: with ``s = gamma / sqrt(var + eps)`` per output channel,

    BN(conv(x, W) + b) = conv(x, W * s) + (b - mean) * s + beta_bn

which holds for any sign of ``gamma``. What is left is a chain of plain ``nn.ConvNd`` (always
with a bias), activations, pooling and linear layers: no inference cost at all.

Which patterns fold
-------------------
:func:`fold_model` deep-copies the model, then walks its module tree:

1. Every convolution becomes a plain ``nn.Conv1d/2d/3d`` with a bias, holding the weight the
   module computes (``W_hat`` for a parametrized weight). Accepted: ``nn.Conv1d/2d/3d``
   (parametrized or not, any ``padding`` including PyTorch's ``"same"``) and
   ``dirac_torch.layers.DiracConv1d/2d/3d``. A padding that is not symmetric (the spec's
   ``"same"`` for even kernels) is kept exactly as ``nn.Sequential(pad, conv)`` with a
   ``nn.ConstantPadNd`` in front of an unpadded conv.
2. A ``BatchNorm1d/2d/3d`` is folded into the convolution that *directly precedes it in the
   same plain ``nn.Sequential``* (the previous sibling, or the last module of a previous
   sibling that is itself a plain ``nn.Sequential``). Nothing else folds: a batch norm after
   an activation, a pooling layer, a dropout, a transposed convolution, or inside a module
   with its own ``forward`` (where the order of calls is unknown) stays unfolded, and
   :func:`fold_model` raises ``ValueError`` naming it (``strict=False`` keeps it instead).
3. Any remaining parametrization (on a ``Linear``, say) is removed with its value kept.

Every other module (activations, ``NCReLU``, pooling, ``Linear``, user modules) is copied as
is, and containers keep their class and child names: a folded
:class:`~dirac_torch.models.DiracNet` is still one, its ``spec`` describing the trained
architecture, and ``folded.get_submodule("group0.1")`` is the folded ``group0.1``. The original
model is never modified; the result is in eval mode.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from . import kernels
from .layers import DiracConv1d, DiracConv2d, DiracConv3d

Pairs = tuple[tuple[int, int], ...]

_PLAIN_CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_PADS: dict[int, type[nn.Module]] = {
    1: nn.ConstantPad1d, 2: nn.ConstantPad2d, 3: nn.ConstantPad3d,
}


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
    """Fold an eval-mode batch norm into the convolution before it.

    ``W' = W * s`` (``s = gamma / sqrt(var + eps)`` broadcast over every axis but the first)
    and ``b' = (b - mean) * s + beta``; ``b = 0`` when ``bias`` is None. The same maths as
    ``dirac_core.fold_batchnorm``; the arithmetic runs in float64 and the results have the
    weight's dtype, so folding adds no rounding beyond the final cast.

    Parameters
    ----------
    weight : Tensor of shape ``(O, ...)``
    bias, gamma, beta, mean, var : Tensor of shape ``(O,)`` (``bias`` may be None)
    eps : float
        The batch norm's ``eps``.

    Returns
    -------
    (Tensor, Tensor)
        The folded weight and bias.

    Raises
    ------
    ValueError
        A vector not of shape ``(O,)``, or ``var + eps <= 0`` somewhere.

    Examples
    --------
    >>> w, b = fold_batchnorm(torch.ones(2, 1, 1, 1), None, torch.tensor([2.0, -1.0]),
    ...                       torch.zeros(2), torch.zeros(2), torch.ones(2), eps=0.0)
    >>> w.flatten().tolist(), b.tolist()
    ([2.0, -1.0], [0.0, 0.0])
    """
    out_channels = weight.shape[0]
    vectors = {"bias": bias, "gamma": gamma, "beta": beta, "mean": mean, "var": var}
    for name, value in vectors.items():
        if value is not None and tuple(value.shape) != (out_channels,):
            raise ValueError(
                f"{name} has shape {tuple(value.shape)}; expected ({out_channels},), one value "
                f"per output channel of the weight"
            )
    if bool((var.detach().to(torch.float64) + eps <= 0).any()):
        raise ValueError(f"var + eps must be > 0 in every channel; got eps={eps}")
    detached = {k: None if v is None else v.detach() for k, v in vectors.items()}
    return kernels.fold_batchnorm(weight.detach(), **detached, eps=eps)


def conv_module(
    in_channels: int,
    out_channels: int,
    kernel_size: tuple[int, ...],
    *,
    padding: Pairs,
    stride: tuple[int, ...] | int = 1,
    dilation: tuple[int, ...] | int = 1,
    groups: int = 1,
    bias: bool = True,
    padding_mode: str = "zeros",
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """A plain ``nn.ConvNd`` padded by ``(left, right)`` pairs, one per spatial dim.

    Symmetric pairs go into the conv's own ``padding``; otherwise the result is
    ``nn.Sequential(pad=nn.ConstantPadNd(...), conv=nn.ConvNd(..., padding=0))``, which is how
    the spec's ``"same"`` for even kernels (left ``d*floor(K/2)``, right ``d*(K-1) - left``)
    survives without a custom module.

    Raises
    ------
    ValueError
        Asymmetric padding with a ``padding_mode`` other than ``"zeros"``.
    """
    ndim = len(kernel_size)
    kw = {
        "stride": stride, "dilation": dilation, "groups": groups, "bias": bias,
        "padding_mode": padding_mode, "device": device, "dtype": dtype,
    }
    if all(left == right for left, right in padding):
        return _PLAIN_CONVS[ndim](
            in_channels, out_channels, kernel_size, padding=tuple(p for p, _ in padding), **kw
        )
    if padding_mode != "zeros":
        raise ValueError(
            f"asymmetric padding {padding} needs padding_mode='zeros', got {padding_mode!r}"
        )
    # ConstantPadNd lists (left, right) from the last spatial dim to the first.
    flat = tuple(side for pair in reversed(padding) for side in pair)
    conv = _PLAIN_CONVS[ndim](in_channels, out_channels, kernel_size, padding=0, **kw)
    return nn.Sequential(OrderedDict(pad=_PADS[ndim](flat, 0.0), conv=conv))


def fold_model(model: nn.Module, *, strict: bool = True) -> nn.Module:
    """A new plain network equal to ``model`` in eval mode (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        A DiracNet from :mod:`dirac_torch.models`, or any model holding convolutions (Dirac or
        not) and batch norms. It is not modified.
    strict : bool
        If true (the default), a batch norm that cannot be folded is an error; if false it is
        kept, in eval mode.

    Returns
    -------
    nn.Module
        A deep copy, in eval mode, with every convolution a plain ``nn.ConvNd`` with bias and
        every foldable batch norm removed.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``; a convolution subclass with its own forward that
        this function does not know how to reproduce.
    ValueError
        (``strict``) a batch norm that does not directly follow a convolution in a plain
        ``nn.Sequential``, or one without running statistics; a batch norm whose channel count
        differs from its convolution's.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    >>> [type(m).__name__ for m in fold_model(net)]
    ['Conv2d', 'ReLU']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        folded = _fold(folded)
        _remove_parametrizations(folded)
    leftover = [name for name, m in folded.named_modules() if isinstance(m, _BatchNorm)]
    if strict and leftover:
        raise ValueError(
            f"cannot fold the batch norm(s) {leftover}: a batch norm folds only into an "
            f"nn.ConvNd that directly precedes it in a plain nn.Sequential (no activation, "
            f"pooling or other layer in between), and only with running statistics. Pass "
            f"strict=False to keep them unfolded"
        )
    return folded


def _fold(module: nn.Module) -> nn.Module:
    """``module`` with its convolutions made plain and its conv -> BN pairs folded."""
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        return _plain_conv(module)
    for name, child in list(module.named_children()):
        setattr(module, name, _fold(child))
    if _is_plain_sequential(module):
        _absorb_batchnorms(module)
    return module


def _is_plain_sequential(module: nn.Module) -> bool:
    # A subclass with its own forward may not run its children in order.
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _absorb_batchnorms(seq: nn.Sequential) -> None:
    names, absorbed = list(seq._modules), []
    for before, name in itertools.pairwise(names):
        bn = seq._modules[name]
        if not isinstance(bn, _BatchNorm):
            continue
        conv = _tail_conv(seq._modules[before])
        if conv is None or bn.running_mean is None:
            continue  # left for fold_model to report
        if bn.num_features != conv.out_channels:
            raise ValueError(
                f"batch norm {name!r} has {bn.num_features} channels but the convolution "
                f"before it has {conv.out_channels} outputs"
            )
        gamma = bn.weight if bn.affine else torch.ones_like(bn.running_mean)
        beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        weight, bias = fold_batchnorm(
            conv.weight, conv.bias, gamma, beta, bn.running_mean, bn.running_var, eps=bn.eps
        )
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        absorbed.append(name)
    for name in absorbed:
        delattr(seq, name)


def _tail_conv(module: nn.Module) -> nn.Module | None:
    """The plain conv whose output ``module`` returns, if that is known statically."""
    while _is_plain_sequential(module) and len(module):
        module = module[-1]
    return module if type(module) in _PLAIN_CONVS.values() else None


def _plain_conv(conv: nn.modules.conv._ConvNd) -> nn.Module:
    """A plain ``nn.ConvNd`` (with bias) computing what ``conv`` computes."""
    padding = _effective_padding(conv)
    weight = conv.weight  # evaluates the parametrization: W_hat
    new = conv_module(
        conv.in_channels, conv.out_channels, tuple(conv.kernel_size), padding=padding,
        stride=tuple(conv.stride), dilation=tuple(conv.dilation), groups=conv.groups,
        padding_mode=conv.padding_mode, device=weight.device, dtype=weight.dtype,
    )
    target = _tail_conv(new)
    target.weight.copy_(weight)
    if conv.bias is None:
        target.bias.zero_()
    else:
        target.bias.copy_(conv.bias)
    return new


def _effective_padding(conv: nn.modules.conv._ConvNd) -> Pairs:
    """The ``(left, right)`` padding ``conv`` applies, one pair per spatial dim."""
    if isinstance(conv, DiracConv1d | DiracConv2d | DiracConv3d):
        return conv.padding_pairs
    base = _PLAIN_CONVS[len(conv.kernel_size)]
    for method in ("forward", "_conv_forward"):
        if getattr(type(conv), method) is not getattr(base, method):
            raise TypeError(
                f"cannot fold {type(conv).__name__}: it overrides {method}, so a plain "
                f"{base.__name__} may not compute the same thing"
            )
    if conv.padding == "valid":
        return ((0, 0),) * len(conv.kernel_size)
    if conv.padding == "same":
        # PyTorch's "same" puts the odd element on the right (unlike the spec's).
        totals = [d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation, strict=True)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in conv.padding)


def _remove_parametrizations(model: nn.Module) -> None:
    for module in _parametrized(model):
        _own_class(module)
        for name in list(module.parametrizations):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def _own_class(module: nn.Module) -> None:
    """Give ``module`` a private copy of its parametrized class.

    A deep copy shares the class PyTorch generates for a parametrized module, and
    ``remove_parametrizations`` deletes the tensor's property from that class: on the shared
    class it would break the original model.
    """
    cls = type(module)
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)


def _parametrized(model: nn.Module) -> Iterator[nn.Module]:
    return (m for m in list(model.modules()) if parametrize.is_parametrized(m))
