"""Convolution geometry: the padding a conv module applies, and when ``delta`` is its identity.

A conv computes ``y[i] = sum_j x[stride * i - left + dilation * j] * w[j]`` per spatial dim. The
Dirac tensor has its one at ``j = floor(K/2)`` (paper eq. 2), so ``conv(x, delta) == x`` holds
exactly when ``stride == 1``, ``left == dilation * floor(K/2)`` and ``left + right ==
dilation * (K - 1)``: the spec's ``"same"`` padding (:func:`dirac_core.padding.resolve_padding`).
For odd kernels that is PyTorch's ``"same"`` (and ``padding=K // 2``); for even kernels PyTorch's
``"same"`` puts the extra element on the other side and the identity is shifted by one pixel;
``padding=0`` with ``K > 1`` shrinks the output.

This module is shared by the model builders (:func:`conv_module`), folding and deploy-time fusing
(:func:`padding_pairs`, :func:`plain_conv`) and conversion (:func:`identity_problem`); it holds
no Dirac layer itself.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dirac_core.padding import Pairs, resolve_padding

PLAIN_CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_PADS: dict[int, type[nn.Module]] = {
    1: nn.ConstantPad1d, 2: nn.ConstantPad2d, 3: nn.ConstantPad3d,
}


class DiracIdentityWarning(UserWarning):
    """The Dirac tensor is not the identity of a conv (see :func:`identity_problem`)."""


def padding_pairs(conv: nn.modules.conv._ConvNd) -> Pairs:
    """The ``(left, right)`` padding ``conv`` applies, one pair per spatial dim.

    ``DiracConvNd`` layers report their own (possibly asymmetric) ``padding_pairs``; for an
    ``nn.ConvNd`` it is derived from ``padding`` (ints, ``"valid"`` or PyTorch's ``"same"``,
    which puts the odd element on the right).

    Examples
    --------
    >>> padding_pairs(nn.Conv2d(1, 1, (4, 3), padding="same"))
    ((1, 2), (1, 1))
    """
    pairs = getattr(conv, "padding_pairs", None)
    if pairs is not None:
        return pairs
    if conv.padding == "valid":
        return ((0, 0),) * len(conv.kernel_size)
    if conv.padding == "same":
        totals = [d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation, strict=True)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in conv.padding)


def identity_problem(conv: nn.modules.conv._ConvNd, *, channels: bool = False) -> str | None:
    """Why the Dirac tensor is not the identity of ``conv``, or None when it is.

    Parameters
    ----------
    conv : nn.Conv1d, nn.Conv2d or nn.Conv3d (or a Dirac layer)
    channels : bool
        Also require ``in_channels == out_channels``. With unequal counts ``delta`` is a partial
        identity (``policy="tile"`` or ``"min"``), which is what a layer after ``NCReLU``
        (``2C -> C``) wants, so it is a problem only where the caller says so.

    Returns
    -------
    str or None
        One sentence naming the attribute and its value, e.g. ``"stride=(2, 2)"``.

    Examples
    --------
    >>> identity_problem(nn.Conv2d(4, 4, 3, padding=1)) is None
    True
    >>> identity_problem(nn.Conv2d(4, 4, 3))
    'padding ((0, 0), (0, 0)) with kernel_size=(3, 3), dilation=(1, 1): the output is smaller \
than the input (the identity needs padding ((1, 1), (1, 1)))'
    """
    stride = tuple(conv.stride)
    if any(s != 1 for s in stride):
        return f"stride={stride}: a strided conv cannot be the identity"
    pairs = padding_pairs(conv)
    kernel, dilation = tuple(conv.kernel_size), tuple(conv.dilation)
    needed = resolve_padding("same", kernel, dilation)
    if pairs != needed:
        sizes = [left + right for left, right in pairs]
        effect = (
            "the output is smaller than the input"
            if any(s < sum(n) for s, n in zip(sizes, needed, strict=True))
            else "the output is larger than the input"
            if any(s > sum(n) for s, n in zip(sizes, needed, strict=True))
            else "delta shifts the input (e.g. an even kernel with PyTorch's 'same')"
        )
        return (
            f"padding {pairs} with kernel_size={kernel}, dilation={dilation}: {effect} "
            f"(the identity needs padding {needed})"
        )
    if channels and conv.in_channels != conv.out_channels:
        return (
            f"in_channels={conv.in_channels} != out_channels={conv.out_channels}: delta is only "
            f"a partial identity"
        )
    return None


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

    Examples
    --------
    >>> conv_module(2, 2, (2,), padding=((1, 0),))
    Sequential(
      (pad): ConstantPad1d(padding=(1, 0), value=0.0)
      (conv): Conv1d(2, 2, kernel_size=(2,), stride=(1,))
    )
    """
    ndim = len(kernel_size)
    kw = {
        "stride": stride, "dilation": dilation, "groups": groups, "bias": bias,
        "padding_mode": padding_mode, "device": device, "dtype": dtype,
    }
    if all(left == right for left, right in padding):
        return PLAIN_CONVS[ndim](
            in_channels, out_channels, kernel_size, padding=tuple(p for p, _ in padding), **kw
        )
    if padding_mode != "zeros":
        raise ValueError(
            f"asymmetric padding {padding} needs padding_mode='zeros', got {padding_mode!r}"
        )
    # ConstantPadNd lists (left, right) from the last spatial dim to the first.
    flat = tuple(side for pair in reversed(padding) for side in pair)
    conv = PLAIN_CONVS[ndim](in_channels, out_channels, kernel_size, padding=0, **kw)
    return nn.Sequential(OrderedDict(pad=_PADS[ndim](flat, 0.0), conv=conv))


def plain_conv(conv: nn.modules.conv._ConvNd) -> nn.Module:
    """A plain ``nn.ConvNd`` (with a bias) computing what ``conv`` computes now.

    Its weight is ``conv.weight`` as the module sees it (``W_hat`` for a parametrized or Dirac
    conv), its padding :func:`padding_pairs` through :func:`conv_module` (so an asymmetric one
    comes back as ``nn.Sequential(pad, conv)``); a missing bias becomes zeros. The result has
    ``conv``'s device and dtype and no autograd history; ``conv`` is not modified.

    Examples
    --------
    >>> conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    >>> plain = plain_conv(conv)
    >>> torch.equal(plain.weight, conv.weight), plain.bias.tolist()
    (True, [0.0, 0.0, 0.0])
    """
    with torch.no_grad():
        weight = conv.weight  # evaluates a parametrization: W_hat
        new = conv_module(
            conv.in_channels, conv.out_channels, tuple(conv.kernel_size),
            padding=padding_pairs(conv), stride=tuple(conv.stride),
            dilation=tuple(conv.dilation), groups=conv.groups, padding_mode=conv.padding_mode,
            device=weight.device, dtype=weight.dtype,
        )
        target = new.conv if isinstance(new, nn.Sequential) else new
        target.weight.copy_(weight)
        if conv.bias is None:
            target.bias.zero_()
        else:
            target.bias.copy_(conv.bias)
    return new


def fuse_conv(conv: nn.modules.conv._ConvNd, base: type, methods: tuple[str, ...]) -> nn.Module:
    """:func:`plain_conv` of ``conv`` for deploy-time fusing (``fuse()``), refusing a conv whose
    plain form would compute something else.

    Parameters
    ----------
    conv : nn.ConvNd or a Dirac layer
    base : type
        The class whose ``methods`` the plain conv reproduces; ``type(conv)`` must not override
        them.
    methods : tuple of str
        The methods that decide what ``conv`` computes (``"forward"``, ``"_conv_forward"``).

    Raises
    ------
    ValueError
        ``conv`` has forward hooks or pre-hooks (the plain conv would not run them).
    TypeError
        ``type(conv)`` overrides one of ``methods``.
    """
    hooks = [kind for kind in ("forward hooks", "forward pre hooks")
             if getattr(conv, f"_{kind.replace(' ', '_')}")]
    if hooks:
        raise ValueError(
            f"cannot fuse this {type(conv).__name__}: it has {' and '.join(hooks)}, which the "
            f"plain conv replacing it would not run; remove them (handle.remove()) first"
        )
    for method in methods:
        if getattr(type(conv), method) is not getattr(base, method):
            raise TypeError(
                f"cannot fuse {type(conv).__name__}: it overrides {method}, so a plain "
                f"nn.Conv{len(conv.kernel_size)}d may not compute the same thing"
            )
    return plain_conv(conv)
