"""DiracNet models, generated from the architecture specs in :mod:`dirac_core.nets`.

:func:`build` turns a :class:`dirac_core.nets.NetSpec` into a :class:`DiracNet`: an
``nn.Sequential`` of named stages (``stem``, ``group0``, ..., ``head``), each an
``nn.Sequential`` holding one module per spec layer, so ``model.get_submodule("group0.1")`` is
the layer the spec calls ``group0.1``. Convolutions follow their ``parameterization``:

- ``"dirac"``: :class:`~dirac_torch.layers.DiracConv2d`, ``W_hat = alpha * delta +
  beta * normalize(W)`` (paper eq. 13) with ``alpha0 = 5``, ``beta0 = 1e-3`` and
  ``W ~ N(0, init_std**2)``, ``init_std = 0.1`` as in the authors' code; scalar or, with
  ``per_channel``, per-output-channel scales;
- ``"resnet"``: the same layer with fixed ``alpha = beta = 1`` and no normalization,
  ``W_hat = delta + W`` (eq. 14): a residual connection around every conv, W He-initialised;
- ``"plain"`` (the paper's control) and ``"none"`` (the stem): ``nn.Conv2d``, He-initialised.

The parameter count of a built model equals :func:`dirac_core.nets.count_parameters` of its
spec. ``model.spec`` keeps the spec.

>>> import torch
>>> net = diracnet_cifar(10)
>>> net(torch.randn(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dirac_core import nets
from dirac_core.validation import bool_value, layer_geometry

from .conv_geometry import conv_module
from .layers import DiracConv2d, NCReLU


class DiracNet(nn.Sequential):
    """A network built from a :class:`~dirac_core.nets.NetSpec`: a sequence of named stages.

    Attributes
    ----------
    spec : dirac_core.nets.NetSpec
        The architecture it was built from.
    """

    def __init__(self, spec: nets.NetSpec, stages: dict[str, nn.Module]) -> None:
        super().__init__(OrderedDict(stages))
        self.spec = spec

    def extra_repr(self) -> str:
        return f"spec={self.spec.name!r}"


class GlobalAvgPool(nn.Module):
    """Mean over every spatial position: ``(N, C, *spatial) -> (N, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(2, x.dim())))


def build(
    spec: nets.NetSpec, *, alpha_init: float = 5.0, beta_init: float = 1e-3,
    init_std: float = 0.1,
) -> DiracNet:
    """Build the PyTorch network described by ``spec``.

    Parameters
    ----------
    spec : dirac_core.nets.NetSpec
        From :func:`dirac_core.nets.diracnet_cifar`, :func:`~dirac_core.nets.diracnet_imagenet`
        or written by hand.
    alpha_init, beta_init : float
        Initial scales of the ``"dirac"`` convolutions (paper: 5 and 1e-3).
    init_std : float
        Standard deviation of the ``"dirac"`` convolutions' initial ``W``: 0.1 as in the
        authors' code (the paper's text says 1); see :class:`~dirac_torch.DiracConv2d`.

    Returns
    -------
    DiracNet
        In training mode, float32, on the CPU; ``model.spec is spec``.

    Raises
    ------
    TypeError
        ``spec`` is not a NetSpec, or holds a layer of an unknown type.
    ValueError
        A convolution with an unknown parameterization.

    Examples
    --------
    >>> spec = nets.diracnet_cifar(10, parameterization="plain")
    >>> sum(p.numel() for p in build(spec).parameters()) == nets.count_parameters(spec)
    True
    """
    if not isinstance(spec, nets.NetSpec):
        raise TypeError(f"spec must be a dirac_core.nets.NetSpec, got {type(spec).__name__}")
    scales = {"alpha_init": alpha_init, "beta_init": beta_init, "init_std": init_std}
    stages = {
        stage.name: nn.Sequential(*(_layer(layer, scales) for layer in stage.layers))
        for stage in spec.stages
    }
    return DiracNet(spec, stages)


def _layer(layer: Any, scales: dict[str, float]) -> nn.Module:
    if isinstance(layer, nets.Conv):
        return _conv(layer, scales)
    if isinstance(layer, nets.BatchNorm):
        return nn.BatchNorm2d(layer.channels)
    if isinstance(layer, nets.ReLU):
        return nn.ReLU()
    if isinstance(layer, nets.NCReLU):
        return NCReLU(dim=1)
    if isinstance(layer, nets.MaxPool):
        return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, nets.GlobalAvgPool):
        return GlobalAvgPool()
    if isinstance(layer, nets.Linear):
        return nn.Linear(layer.in_features, layer.out_features)
    raise TypeError(f"cannot build a layer from {layer!r}: unknown layer type")


def _conv(layer: nets.Conv, scales: dict[str, float]) -> nn.Module:
    shape = (layer.in_channels, layer.out_channels, layer.kernel_size)
    common = {"stride": layer.stride, "padding": layer.padding, "bias": layer.bias}
    kind = layer.parameterization
    if kind == "dirac":
        return DiracConv2d(
            *shape, **common, **scales, per_channel=layer.per_channel, policy=layer.policy
        )
    if kind == "resnet":
        # W is He-initialised by the layer itself (normalize=False), reset_parameters included.
        return DiracConv2d(
            *shape, **common, alpha_init=1.0, beta_init=1.0, normalize=False, learnable=False
        )
    if kind in ("plain", "none"):
        kernel = (layer.kernel_size,) * 2
        stride, _, pairs = layer_geometry(kernel, layer.stride, layer.padding, 1)
        conv = conv_module(*shape[:2], kernel, padding=pairs, stride=stride, bias=layer.bias)
        for module in conv.modules():
            if isinstance(module, nn.Conv2d):
                _he_init(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        return conv
    raise ValueError(
        f"conv parameterization={kind!r} is not accepted; use one of "
        f"{(*nets.PARAMETERIZATIONS, 'none')}"
    )


def _he_init(weight: torch.Tensor) -> None:
    with torch.no_grad():
        nn.init.kaiming_normal_(weight, nonlinearity="relu")


def diracnet_cifar(
    depth: int = 34, width: float = 1, num_classes: int = 10, *, alpha_init: float = 5.0,
    beta_init: float = 1e-3, init_std: float = 0.1, **variant_kw: Any
) -> DiracNet:
    """CIFAR DiracNet-``depth``-``width``, built by :func:`build`.

    ``width`` may be fractional (channel counts truncated to int, as the authors' code does).
    ``variant_kw`` goes to :func:`dirac_core.nets.diracnet_cifar`: ``activation`` (``"ncrelu"``
    or ``"relu"``), ``parameterization`` (``"dirac"``, ``"plain"``, ``"resnet"``),
    ``per_channel``, ``policy`` (``"tile"`` or ``"min"``), ``head_relu``, ``in_channels``,
    ``image_size``; ``alpha_init``, ``beta_init`` and ``init_std`` go to :func:`build` (the
    same names as ``diracnets train --alpha-init/--beta-init/--init-std``).

    Raises
    ------
    ValueError
        ``depth`` not of the form ``6n + 4`` (n >= 1), a bad width or variant.
    TypeError
        An unknown keyword; a non-bool ``per_channel``.

    Examples
    --------
    >>> diracnet_cifar(16, 2).spec.name
    'DiracNet-16-2'
    """
    _check_flag(variant_kw)
    return build(nets.diracnet_cifar(depth, width, num_classes, **variant_kw),
                 alpha_init=alpha_init, beta_init=beta_init, init_std=init_std)


def diracnet_imagenet(
    depth: int = 18, width: float = 1, num_classes: int = 1000, *, alpha_init: float = 5.0,
    beta_init: float = 1e-3, init_std: float = 0.1, **variant_kw: Any
) -> DiracNet:
    """ImageNet DiracNet-18 or -34, built by :func:`build`.

    ``alpha_init``, ``beta_init``, ``init_std`` and ``variant_kw`` as for
    :func:`diracnet_cifar` (``image_size`` defaults to 224), and ``blocks`` (see
    :func:`dirac_core.nets.diracnet_imagenet`).

    Raises
    ------
    ValueError
        ``depth`` not 18 or 34, a bad width or variant.
    TypeError
        An unknown keyword; a non-bool ``per_channel``.

    Examples
    --------
    >>> diracnet_imagenet(18, num_classes=5).spec.num_classes
    5
    """
    _check_flag(variant_kw)
    return build(nets.diracnet_imagenet(depth, width, num_classes, **variant_kw),
                 alpha_init=alpha_init, beta_init=beta_init, init_std=init_std)


def _check_flag(variant_kw: dict[str, Any]) -> None:
    bool_value(variant_kw.get("per_channel", False), "per_channel")


def _variant(
    builder: Callable[..., DiracNet], name: str, what: str, **fixed: Any
) -> Callable[..., DiracNet]:
    """``builder`` with the variant keywords ``fixed`` (they cannot be overridden)."""

    def variant(*args: Any, **variant_kw: Any) -> DiracNet:
        clash = sorted(fixed.keys() & variant_kw.keys())
        if clash:
            raise TypeError(f"{name}() fixes {clash}; call {builder.__name__}() to choose them")
        return builder(*args, **variant_kw, **fixed)

    variant.__name__ = variant.__qualname__ = name
    variant.__doc__ = (
        f"{what}: :func:`{builder.__name__}` with ``{fixed}``; same arguments otherwise."
    )
    return variant


plain_cifar = _variant(
    diracnet_cifar, "plain_cifar", "The paper's control (no parameterization), CIFAR",
    parameterization="plain",
)
plain_imagenet = _variant(
    diracnet_imagenet, "plain_imagenet", "The paper's control (no parameterization), ImageNet",
    parameterization="plain",
)
diracnet_relu_cifar = _variant(
    diracnet_cifar, "diracnet_relu_cifar", "DiracNet with ReLU instead of NCReLU, CIFAR",
    activation="relu",
)
diracnet_relu_imagenet = _variant(
    diracnet_imagenet, "diracnet_relu_imagenet", "DiracNet with ReLU instead of NCReLU, ImageNet",
    activation="relu",
)
diracnet_v2_cifar = _variant(
    diracnet_cifar, "diracnet_v2_cifar",
    "DiracNet v2 (ReLU, per-channel alpha and beta; ``diracnets train --preset v2``), CIFAR",
    **nets.VARIANTS["v2"],
)
diracnet_v2_imagenet = _variant(
    diracnet_imagenet, "diracnet_v2_imagenet",
    "DiracNet v2 (ReLU, per-channel alpha and beta; ``diracnets train --preset v2``), ImageNet",
    **nets.VARIANTS["v2"],
)
resnet_eq14_cifar = _variant(
    diracnet_cifar, "resnet_eq14_cifar", "ResNet by eq. 14 (W_hat = delta + W), CIFAR",
    parameterization="resnet",
)
resnet_eq14_imagenet = _variant(
    diracnet_imagenet, "resnet_eq14_imagenet", "ResNet by eq. 14 (W_hat = delta + W), ImageNet",
    parameterization="resnet",
)

__all__ = [
    "DiracNet",
    "GlobalAvgPool",
    "build",
    "diracnet_cifar",
    "diracnet_imagenet",
    "diracnet_relu_cifar",
    "diracnet_relu_imagenet",
    "diracnet_v2_cifar",
    "diracnet_v2_imagenet",
    "plain_cifar",
    "plain_imagenet",
    "resnet_eq14_cifar",
    "resnet_eq14_imagenet",
]
