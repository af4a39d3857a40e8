"""DiracNet models, generated from the architecture specs in :mod:`dirac_core.nets`.

:func:`build` turns a :class:`dirac_core.nets.NetSpec` into a :class:`DiracNet`: an
``nn.Sequential`` of named stages (``stem``, ``group0``, ..., ``head``), each an
``nn.Sequential`` holding one module per spec layer, so ``model.get_submodule("group0.1")`` is
the layer the spec calls ``group0.1``. Convolutions follow their ``parameterization``:

- ``"dirac"``: :class:`~dirac_torch.layers.DiracConv2d`, ``W_hat = alpha * delta +
  beta * normalize(W)`` (paper eq. 13); scalar scales, per-output-channel ones
  (``per_channel=True``) or a scalar alpha with a per-filter beta (``"beta"``);
- ``"resnet"``: the same layer with fixed ``alpha = beta = 1`` and no normalization,
  ``W_hat = delta + W`` (eq. 14): a residual connection around every conv, W He-initialised;
- ``"plain"`` (the paper's control) and ``"none"`` (the stem): ``nn.Conv2d``, He-initialised.

Initial values (alpha, beta, ``W``, batch-norm gamma, classifier) are the spec's family's, from
:mod:`dirac_core.catalog` (the paper's v1 by default: alpha 5, beta 1e-3, ``W ~ N(0, 0.1**2)``,
gamma ``U(0, 1)``, a Kaiming-normal classifier with zero bias, as in the authors' code). The
model functions below are the catalog's families. The parameter count of a built model equals
:func:`dirac_core.nets.count_parameters` of its spec. ``model.spec`` keeps the spec and
``model.init`` the initial values.

>>> import torch
>>> net = diracnet_cifar(10)
>>> net(torch.randn(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn

from dirac_core import catalog, nets
from dirac_core.validation import layer_geometry, pool_geometry, pooled_map

from .conv_geometry import conv_module
from .layers import DiracConv2d, NCReLU


class DiracNet(nn.Sequential):
    """A network built from a :class:`~dirac_core.nets.NetSpec`: a sequence of named stages.

    It speaks the model API of timm (``pytorch-image-models``), so timm's training, validation
    and feature tooling take it as it is: :meth:`forward_features` (every stage but the head),
    :meth:`forward_head`, :meth:`reset_classifier`, :meth:`get_classifier`, ``num_features``,
    ``num_classes``, ``in_chans`` and ``feature_info`` (one entry per stage before the head).

    Attributes
    ----------
    spec : dirac_core.nets.NetSpec
        The architecture it was built from (kept current by :meth:`reset_classifier`).
    init : dirac_core.catalog.Init or None
        The initial values :func:`build` used.
    """

    def __init__(self, spec: nets.NetSpec, stages: dict[str, nn.Module]) -> None:
        super().__init__(OrderedDict(stages))
        self.spec = spec
        self.init: catalog.Init | None = None

    def extra_repr(self) -> str:
        return f"spec={self.spec.name!r}"

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier (0 after ``reset_classifier(0)``: pooled features)."""
        return self.spec.num_classes

    @property
    def in_chans(self) -> int:
        """Input channels (timm's name for ``spec.in_channels``)."""
        return self.spec.in_channels

    @property
    def num_features(self) -> int:
        """Channels of the pooled features the classifier takes."""
        return stage_outputs(self.spec)[-1][1]

    @property
    def head_hidden_size(self) -> int:
        """Width of ``forward_head(x, pre_logits=True)`` (timm's name; ``num_features``)."""
        return self.num_features

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """``{"module", "num_chs", "reduction"}`` of each stage's output before the head: what
        ``timm.create_model(..., features_only=True)`` returns, the input-to-output stride as
        ``reduction``."""
        return [{"module": name, "num_chs": channels, "reduction": reduction}
                for name, channels, reduction in stage_outputs(self.spec)[:-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits (the pooled features after ``reset_classifier(0)``) of ``x``.

        Raises
        ------
        ValueError
            ``x`` is not ``(N, in_chans, H, W)`` with ``H`` and ``W`` as large as the network
            takes (:func:`dirac_core.nets.check_input`, as the Flax network checks it).
        TypeError
            ``x`` is not a tensor; its dtype is not the parameters' (outside autocast).
        """
        return self._checked(super().forward, x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, ``(N, num_features, H', W')``: every stage but the head;
        ``x`` checked as :meth:`forward` checks it."""
        return self._checked(self._features, x)

    def _checked(self, run: Callable[[torch.Tensor], torch.Tensor],
                 x: torch.Tensor) -> torch.Tensor:
        """``run(x)`` with ``x`` checked by the rule of every framework's network: its shape
        before the first layer (a few comparisons of ints, which no step notices), its dtype
        only once torch has refused it, as the Dirac layers check theirs, so that a step
        pays nothing for it and autocast's mixed dtypes pass. torch's own refusals came from
        whichever layer failed first, as a bare RuntimeError from a plain stem or pooling."""
        if isinstance(x, fx.Proxy):  # a symbolic trace (fold_model's) has no shapes
            return run(x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        nets.check_input(self.spec, tuple(x.shape))
        try:
            return run(x)
        except (RuntimeError, TypeError) as error:
            param = next(self.parameters(), None)
            if param is not None and not torch.is_autocast_enabled(x.device.type):
                try:
                    nets.check_input(self.spec, tuple(x.shape), x.dtype, param.dtype)
                except TypeError as clear:
                    raise clear from error
            raise

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        for name, stage in self.named_children():
            if name != "head":
                x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The head on :meth:`forward_features`' output; ``pre_logits`` stops before the
        classifier, at the pooled ``(N, num_features)`` features."""
        for layer in self.head:
            if pre_logits and isinstance(layer, nn.Linear):
                break
            x = layer(x)
        return x

    def get_classifier(self) -> nn.Module:
        """The classifier: the head's ``nn.Linear``, or ``nn.Identity`` when there is none."""
        return next((m for m in self.head if isinstance(m, nn.Linear)), nn.Identity())

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier with ``num_classes`` outputs, initialised as :func:`build` does
        (``0`` removes it: the model then returns the pooled features); ``spec`` follows.

        Raises
        ------
        ValueError
            ``num_classes`` not a non-negative int; ``global_pool`` other than None or
            ``"avg"`` (the only pooling a DiracNet has).
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool={global_pool!r} is not accepted; a DiracNet pools "
                             f"with 'avg' (or pass None)")
        head = [layer for layer in self.spec.stages[-1].layers
                if not isinstance(layer, nets.Linear)]
        if num_classes:
            head.append(nets.Linear(self.num_features, num_classes))
        stages = (*self.spec.stages[:-1], nets.Stage("head", tuple(head)))
        self.spec = dataclasses.replace(self.spec, num_classes=num_classes, stages=stages)
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        init = catalog.spec_init(self.spec) if self.init is None else self.init
        self.head = Stage(*(_layer(layer, init) for layer in head)).to(device, dtype)


class Stage(nn.Sequential):
    """One stage of a :class:`DiracNet` (``stem``, ``group0``, ..., ``head``).

    A plain ``nn.Sequential`` that also answers :meth:`fuse`, the deploy-time hook
    ``timm.utils.reparameterize_model`` calls, so timm folds a DiracNet as
    :func:`~dirac_torch.fold.fold_model` does.
    """

    def fuse(self) -> nn.Module:
        """:func:`~dirac_torch.fold.fold_model` of this stage: Dirac weights materialised,
        batch norms folded into the convolutions before them, in eval mode."""
        from .fold import fold_model  # deploy-time only: building a model loads no folding

        return fold_model(self)


def stage_outputs(spec: nets.NetSpec) -> list[tuple[str, int, int]]:
    """``(stage name, output channels, reduction)`` for each stage of ``spec``.

    The channels are those entering the head's classifier for the head; the reduction is the
    product of the strides of every convolution and pooling layer up to the stage's end.

    Examples
    --------
    >>> stage_outputs(nets.diracnet_imagenet(18, 0.5, 10))[1:3]
    [('group0', 32, 4), ('group1', 64, 8)]
    """
    channels, reduction, out = spec.in_channels, 1, []
    for stage in spec.stages:
        for layer in stage.layers:
            if isinstance(layer, nets.Conv):
                channels, reduction = layer.out_channels, reduction * layer.stride
            elif isinstance(layer, nets.NCReLU):
                channels *= 2
            elif isinstance(layer, nets.MaxPool):
                reduction *= layer.stride
            elif isinstance(layer, nets.Linear):
                break
        out.append((stage.name, channels, reduction))
    return out


class GlobalAvgPool(nn.Module):
    """Mean over every spatial position: ``(N, C, *spatial) -> (N, C)``.

    Raises
    ------
    ValueError
        At call time, ``x`` has no spatial dim or an empty map (a mean of no values would be
        NaN): :func:`dirac_core.validation.pooled_map`, the Flax pooling's rule.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, fx.Proxy):  # a symbolic trace has no shapes
            pooled_map(x, type(self).__name__)
        return x.mean(dim=tuple(range(2, x.dim())))


def build(
    spec: nets.NetSpec, *, init: catalog.Init | None = None, alpha_init: float | None = None,
    beta_init: float | None = None, init_std: float | None = None,
) -> DiracNet:
    """Build the PyTorch network described by ``spec``, initialised as ``init`` says.

    Parameters
    ----------
    spec : dirac_core.nets.NetSpec
        From :func:`dirac_core.catalog.create_spec`, :func:`dirac_core.nets.diracnet_cifar`,
        :func:`~dirac_core.nets.diracnet_imagenet` or written by hand.
    init : dirac_core.catalog.Init, optional
        Initial values (Dirac scales, ``W``, batch-norm gamma, classifier). Default: those of
        the spec's family (``spec.options["family"]``, set by the catalog), else the paper's v1
        values as in the authors' code: alpha 5, beta 1e-3, ``W ~ N(0, 0.1**2)``, gamma
        ``U(0, 1)``, Kaiming-normal classifier with zero bias.
    alpha_init, beta_init, init_std : float, optional
        Replace those of ``init`` (the names of ``diracnets train --alpha-init`` etc.);
        ``init_std`` makes ``W ~ N(0, init_std**2)``. Only a spec with a ``"dirac"``
        convolution takes them (:func:`dirac_core.catalog.check_overrides`).

    Returns
    -------
    DiracNet
        In training mode, float32, on the CPU; ``model.spec is spec``, ``model.init`` the
        values used.

    Raises
    ------
    TypeError
        ``spec`` is not a NetSpec, or holds a layer of an unknown type.
    ValueError
        A convolution with an unknown parameterization; an unknown initialisation; an
        override given for a spec without a Dirac convolution (``plain``, eq. 14
        ``resnet``), where it would set nothing.

    Examples
    --------
    >>> spec = nets.diracnet_cifar(10, parameterization="plain")
    >>> sum(p.numel() for p in build(spec).parameters()) == nets.count_parameters(spec)
    True
    """
    if not isinstance(spec, nets.NetSpec):
        raise TypeError(f"spec must be a dirac_core.nets.NetSpec, got {type(spec).__name__}")
    init = catalog.spec_init(spec, init, alpha_init=alpha_init, beta_init=beta_init,
                             init_std=init_std)
    stages = {
        stage.name: Stage(*(_layer(layer, init) for layer in stage.layers))
        for stage in spec.stages
    }
    model = DiracNet(spec, stages)
    model.init = init
    return model


def _layer(layer: Any, init: catalog.Init) -> nn.Module:
    if isinstance(layer, nets.Conv):
        return _conv(layer, init)
    if isinstance(layer, nets.BatchNorm):
        bn = nn.BatchNorm2d(layer.channels)
        if init.bn_weight == "uniform":
            nn.init.uniform_(bn.weight, 0.0, 1.0)
        return bn
    if isinstance(layer, nets.ReLU):
        return nn.ReLU()
    if isinstance(layer, nets.NCReLU):
        return NCReLU(dim=1)
    if isinstance(layer, nets.MaxPool):
        return nn.MaxPool2d(*pool_geometry(layer.kernel_size, layer.stride, layer.padding))
    if isinstance(layer, nets.GlobalAvgPool):
        return GlobalAvgPool()
    if isinstance(layer, nets.Linear):
        linear = nn.Linear(layer.in_features, layer.out_features)
        if init.classifier == "he":
            _he_init(linear.weight)
            nn.init.zeros_(linear.bias)
        return linear
    raise TypeError(f"cannot build a layer from {layer!r}: unknown layer type")


def _conv(layer: nets.Conv, init: catalog.Init) -> nn.Module:
    shape = (layer.in_channels, layer.out_channels, layer.kernel_size)
    common = {"stride": layer.stride, "padding": layer.padding, "bias": layer.bias}
    kind = layer.parameterization
    if kind == "dirac":
        conv = DiracConv2d(
            *shape, **common, alpha_init=init.alpha, beta_init=init.beta,
            init_std=init.init_std, per_channel=layer.per_channel, policy=layer.policy,
        )
        if init.weight == "he":
            _he_init(conv.parametrizations.weight.original)
        return conv
    if kind == "resnet":
        # W is He-initialised by the layer itself (normalize=False), reset_parameters included.
        return DiracConv2d(
            *shape, **common, alpha_init=1.0, beta_init=1.0, normalize=False, learnable=False,
            policy=layer.policy,
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


def _rst(text: str) -> str:
    """``text`` with the underscores that would end an RST reference (``dirac_``) escaped."""
    return text.replace("_ ", "\\_ ")


def _family_model(
    family: str, name: str, depth: int, what: str, **fixed: Any
) -> Callable[..., DiracNet]:
    """The model function of ``family`` (with the variant keywords ``fixed``)."""

    def model(
        depth: int = depth, width: float = 1, num_classes: int | None = None, *,
        alpha_init: float | None = None, beta_init: float | None = None,
        init_std: float | None = None, **variant_kw: Any,
    ) -> DiracNet:
        clash = sorted(fixed.keys() & variant_kw.keys())
        if clash:
            raise TypeError(f"{name}() fixes {clash}; call create_model or family_spec to "
                            "choose them")
        spec = catalog.family_spec(family, depth, width, num_classes, **variant_kw, **fixed)
        return build(spec, alpha_init=alpha_init, beta_init=beta_init, init_std=init_std)

    model.__name__ = model.__qualname__ = name
    source = catalog.family(family)
    model.__doc__ = f"""{what}: model family ``{family}`` of :mod:`dirac_core.catalog`{
        f" with ``{fixed}``" if fixed else ""}.

    {_rst(source.summary)}; reproduces {_rst(source.source)}.

    Parameters
    ----------
    depth : int
        ``6n + 4`` (CIFAR) or 18/34 (ImageNet).
    width : float
        Width multiplier; channel counts truncated to int as the authors' code does.
    num_classes : int, optional
        Default 10 (CIFAR) or 1000 (ImageNet).
    alpha_init, beta_init, init_std : float, optional
        Replace the family's initial values (:class:`dirac_core.catalog.Init`); refused
        where the network has no Dirac convolution (``plain``, ``resnet``).
    **variant_kw
        ``activation``, ``per_channel``, ``policy``, ``head_relu``, ``in_channels``,
        ``image_size``, ``parameterization`` where the family does not fix them.

    Raises
    ------
    ValueError
        A bad depth, width or variant; a keyword the family fixes.
    TypeError
        A keyword this function fixes; a non-bool flag.
    """
    return model


diracnet_cifar = _family_model("cifar", "diracnet_cifar", 34, "The paper's CIFAR DiracNet")
diracnet_imagenet = _family_model(
    "imagenet", "diracnet_imagenet", 18, "ImageNet DiracNet-18/34 (blocks 3-4-6-3 for 34)")
plain_cifar = _family_model(
    "cifar", "plain_cifar", 34, "The paper's control (no parameterization), CIFAR",
    parameterization="plain")
plain_imagenet = _family_model(
    "imagenet", "plain_imagenet", 18, "The paper's control (no parameterization), ImageNet",
    parameterization="plain")
diracnet_relu_cifar = _family_model(
    "relu_cifar", "diracnet_relu_cifar", 34, "DiracNet with ReLU instead of NCReLU, CIFAR")
diracnet_relu_imagenet = _family_model(
    "imagenet", "diracnet_relu_imagenet", 18, "DiracNet with ReLU instead of NCReLU, ImageNet",
    activation="relu")
diracnet_v2_cifar = _family_model(
    "v2_cifar", "diracnet_v2_cifar", 34,
    "The authors' v2 DiracNet, CIFAR (``diracnets train --preset v2``)")
diracnet_v2_imagenet = _family_model(
    "v2_imagenet", "diracnet_v2_imagenet", 18, "The authors' v2 DiracNet, ImageNet")
diracnet_paper_imagenet = _family_model(
    "paper_imagenet", "diracnet_paper_imagenet", 34,
    "The paper's ImageNet DiracNets (Table 3)")
resnet_eq14_cifar = _family_model(
    "cifar", "resnet_eq14_cifar", 34, "ResNet by eq. 14 (W_hat = delta + W), CIFAR",
    parameterization="resnet")
resnet_eq14_imagenet = _family_model(
    "imagenet", "resnet_eq14_imagenet", 18, "ResNet by eq. 14 (W_hat = delta + W), ImageNet",
    parameterization="resnet")

__all__ = [
    "DiracNet",
    "GlobalAvgPool",
    "Stage",
    "build",
    "diracnet_cifar",
    "diracnet_imagenet",
    "diracnet_paper_imagenet",
    "diracnet_relu_cifar",
    "diracnet_relu_imagenet",
    "diracnet_v2_cifar",
    "diracnet_v2_imagenet",
    "plain_cifar",
    "plain_imagenet",
    "resnet_eq14_cifar",
    "resnet_eq14_imagenet",
    "stage_outputs",
]
