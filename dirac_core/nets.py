"""The DiracNet architectures as plain data.

A :class:`NetSpec` is a tuple of named stages, each a tuple of layers. The PyTorch builders in
``dirac_torch.models`` are generated from these specs, so this module is the single source of
truth for every architecture and :func:`count_parameters` for its size.

Each Dirac layer is ``NCReLU -> Conv 3x3 (same padding, no bias) -> BatchNorm``; with NCReLU a
layer taking C channels has a conv with 2C inputs. Variants:

- ``parameterization``: ``"dirac"`` (``alpha * delta + beta * normalize(W)``, learned alpha and
  beta), ``"plain"`` (the paper's control: a plain conv, same shapes), or ``"resnet"`` (eq. 14:
  ``W_hat = delta + W`` with fixed ``alpha = beta = 1`` and no normalization, i.e. a residual
  connection around every conv);
- ``activation``: ``"ncrelu"`` (paper, v1) or ``"relu"``;
- ``per_channel``: ``False`` (scalar alpha and beta, the paper), ``True`` (both per output
  channel, the authors' v2) or ``"beta"`` (a scalar alpha and a beta per output filter, the
  layout of the authors' released v1 ImageNet file);
- ``policy``: the Dirac tensor for unequal channel counts, ``"tile"`` (paper eq. 7-8, the
  authors' v1 code) or ``"min"`` (``torch.nn.init.dirac_``, the authors' v2 code).

``width`` may be fractional: the channel counts are the base widths times ``width`` truncated to
int, as in the authors' code (``int(64 * 0.75) = 48``). Names print as the paper writes them,
``DiracNet-34-2`` (CIFAR) and ``DiracNet-18-0.75`` (ImageNet, ``DiracNet-18`` at width 1).

The classifier head is ``global average pool -> Linear`` on the last batch norm's output, as
in the authors' v1 code behind the paper's CIFAR numbers; ``head_relu=True`` puts a ReLU before
the pooling, as their v2 code and their released v1 ImageNet model do.

Which variant a *named* network is (v1, v2, the paper's ImageNet tables) is decided in one
place, :mod:`dirac_core.catalog`; the defaults here are the paper's v1.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from .untrusted import UntrustedInputError, from_dict, require
from .validation import (
    POLICIES,
    bool_value,
    check_input_dtype,
    one_of,
    per_channel_value,
    pool_geometry,
    positive_int,
    positive_number,
)

# What each parameterization's network is called, as the registry's kinds name them
# (``diracnet34_2_cifar``, ``plain34_2_cifar``): the paper's DiracNet, its plain control, and
# eq. 14's network with W_hat = delta + W, a ResNet.
NET_NAMES = {"dirac": "DiracNet", "plain": "Plain", "resnet": "ResNet"}
PARAMETERIZATIONS = tuple(NET_NAMES)
ACTIVATIONS = ("ncrelu", "relu")


@dataclass(frozen=True)
class Conv:
    """A convolution. ``parameterization`` is ``"none"`` for a stem conv."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int | str = 0
    bias: bool = False
    parameterization: str = "none"
    per_channel: bool | str = False
    policy: str = "tile"

    def num_parameters(self) -> int:
        weight = self.out_channels * self.in_channels * self.kernel_size**2
        scales = 0
        if self.parameterization == "dirac":
            alpha = self.out_channels if self.per_channel is True else 1
            beta = self.out_channels if self.per_channel else 1
            scales = alpha + beta
        return weight + (self.out_channels if self.bias else 0) + scales


@dataclass(frozen=True)
class BatchNorm:
    """Batch norm over ``channels`` (affine weight and bias)."""

    channels: int

    def num_parameters(self) -> int:
        return 2 * self.channels  # gamma and beta; running statistics are buffers


@dataclass(frozen=True)
class ReLU:
    """``max(x, 0)``, channel count unchanged."""

    def num_parameters(self) -> int:
        return 0


@dataclass(frozen=True)
class NCReLU:
    """Doubles the channel count: ``channels`` in, ``2 * channels`` out."""

    channels: int

    def num_parameters(self) -> int:
        return 0


@dataclass(frozen=True)
class MaxPool:
    """Max pooling with a square window."""

    kernel_size: int
    stride: int
    padding: int = 0

    def num_parameters(self) -> int:
        return 0


@dataclass(frozen=True)
class GlobalAvgPool:
    """Average over every spatial position, then flatten to ``(N, C)``."""

    def num_parameters(self) -> int:
        return 0


@dataclass(frozen=True)
class Linear:
    """A fully connected classifier layer with bias."""

    in_features: int
    out_features: int

    def num_parameters(self) -> int:
        return self.in_features * self.out_features + self.out_features


Layer = Conv | BatchNorm | ReLU | NCReLU | MaxPool | GlobalAvgPool | Linear
_LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Conv, BatchNorm, ReLU, NCReLU, MaxPool, GlobalAvgPool, Linear)
}


@dataclass(frozen=True)
class Stage:
    """A named group of layers (``stem``, ``group0``, ..., ``head``)."""

    name: str
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class NetSpec:
    """A network: named stages applied in order to ``(N, in_channels, H, W)`` inputs."""

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    stages: tuple[Stage, ...]
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def layers(self) -> list[tuple[str, Layer]]:
        """Every layer with a dotted name ``stage.index``."""
        return [(f"{s.name}.{i}", layer) for s in self.stages for i, layer in enumerate(s.layers)]

    @functools.cached_property
    def smallest_image(self) -> int:
        """The smallest height and width the network takes (:func:`smallest_image_size`),
        worked out once: every call of the network checks its input against it."""
        return smallest_image_size(self)


def count_parameters(spec: NetSpec) -> int:
    """Number of trainable parameters (weights, biases, alpha/beta, BN affine)."""
    return sum(layer.num_parameters() for _, layer in spec.layers())


def smallest_image_size(spec: NetSpec) -> int:
    """The smallest height (and width) of an input ``spec``'s network takes: the one whose
    strided convolutions and poolings still leave at least one position at every layer.

    Worked back from the one position the global pooling needs: a window of ``k`` with
    stride ``s`` and padding ``p`` gives ``m`` positions from ``(m - 1) s + k - 2p``
    (``"same"`` padding keeps the size).

    Examples
    --------
    >>> smallest_image_size(diracnet_cifar(10)), smallest_image_size(diracnet_imagenet(18))
    (4, 29)
    """
    need = 1
    for stage in reversed(spec.stages):
        for layer in reversed(stage.layers):
            if isinstance(layer, Conv | MaxPool) and layer.padding != "same":
                pad = layer.padding if isinstance(layer.padding, int) else 0
                need = max(1, (need - 1) * layer.stride + layer.kernel_size - 2 * pad)
    return need


def check_input(spec: NetSpec, shape: tuple[int, ...], dtype: Any = None,
                param_dtype: Any = None) -> None:
    """The one check of an input at the door of every framework's network built from
    ``spec``, on its shape and dtype only (no value is read): ``(N, in_channels, H, W)`` with
    ``H`` and ``W`` at least :attr:`NetSpec.smallest_image`, and the network's parameters'
    dtype (:func:`~dirac_core.validation.check_input_dtype`) where ``param_dtype`` is given
    (None skips it: torch's network asks only once torch has refused the input, so that
    autocast's mixed dtypes pass and a step pays nothing for it).

    Raises
    ------
    ValueError
        Another rank or channel count; an image smaller than the network takes. The message
        names the shape and what the network takes.
    TypeError
        ``dtype`` is not ``param_dtype``.

    Examples
    --------
    >>> check_input(diracnet_cifar(10), (2, 3, 2, 2))
    Traceback (most recent call last):
    ...
    ValueError: x has shape (2, 3, 2, 2): 2x2 images are too small for DiracNet-10-1, which \
takes H and W >= 4 (its strided convolutions and poolings would leave no position)
    """
    smallest = spec.smallest_image
    if len(shape) != 4 or shape[1] != spec.in_channels:
        raise ValueError(f"x has shape {tuple(shape)}; {spec.name} takes (N, "
                         f"{spec.in_channels}, H, W) with H and W >= {smallest}")
    if shape[2] < smallest or shape[3] < smallest:
        raise ValueError(
            f"x has shape {tuple(shape)}: {shape[2]}x{shape[3]} images are too small for "
            f"{spec.name}, which takes H and W >= {smallest} (its strided convolutions and "
            f"poolings would leave no position)")
    if param_dtype is not None:
        check_input_dtype(dtype, param_dtype, "network")


def dirac_layer(
    in_channels: int, out_channels: int, *, activation: str, parameterization: str,
    per_channel: bool | str, policy: str = "tile",
) -> tuple[Layer, ...]:
    """``activation -> 3x3 conv (same padding, no bias) -> BatchNorm``."""
    if activation == "ncrelu":
        act: Layer = NCReLU(in_channels)
        conv_in = 2 * in_channels
    else:
        act, conv_in = ReLU(), in_channels
    conv = Conv(
        conv_in, out_channels, 3, padding="same", parameterization=parameterization,
        per_channel=per_channel, policy=policy,
    )
    return (act, conv, BatchNorm(out_channels))


def _dirac_groups(
    widths: tuple[int, ...], layers_per_group: tuple[int, ...], stem_width: int, **layer_kw: Any
) -> list[Stage]:
    stages, channels = [], stem_width
    for g, (width, count) in enumerate(zip(widths, layers_per_group, strict=True)):
        layers: list[Layer] = [MaxPool(2, 2)] if g else []
        for _ in range(count):
            layers.extend(dirac_layer(channels, width, **layer_kw))
            channels = width
        stages.append(Stage(f"group{g}", tuple(layers)))
    return stages


def _check_variant(
    width: float, num_classes: int, activation: str, parameterization: str,
    per_channel: bool | str,
    policy: str, head_relu: bool, in_channels: int, image_size: int,
) -> tuple[int, int, int]:
    """Check a builder's arguments; return ``num_classes``, ``in_channels``, ``image_size``
    as Python ints (a NumPy integer is accepted, and a spec holds plain numbers)."""
    counts = (positive_int(num_classes, "num_classes"), positive_int(in_channels, "in_channels"),
              positive_int(image_size, "image_size"))
    positive_number(width, "width")
    one_of(activation, "activation", ACTIVATIONS)
    per_channel_value(per_channel)
    bool_value(head_relu, "head_relu")
    one_of(parameterization, "parameterization", PARAMETERIZATIONS)
    one_of(policy, "policy", POLICIES)
    return counts


def scaled_widths(base: tuple[int, ...], width: float) -> tuple[int, ...]:
    """``int(c * width)`` for each base width ``c``, as the authors' code rounds them.

    Raises
    ------
    ValueError
        A width so small that a group would have no channels.

    Examples
    --------
    >>> scaled_widths((64, 128, 256, 512), 0.75)
    (48, 96, 192, 384)
    """
    widths = tuple(int(c * width) for c in base)
    if min(widths) < 1:
        raise ValueError(f"width={width!r} leaves a group with no channels: {widths}")
    return widths


def net_name(depth: int, width: float, *, always_width: bool,
             parameterization: str = "dirac") -> str:
    """The paper's name: ``DiracNet-34-2``, ``DiracNet-18-0.75``, ``DiracNet-18`` (width 1);
    the plain control and eq. 14's network are named for what they are.

    Examples
    --------
    >>> net_name(34, 2, always_width=True, parameterization="plain")
    'Plain-34-2'
    >>> net_name(18, 1, always_width=False, parameterization="resnet")
    'ResNet-18'
    """
    prefix = NET_NAMES[parameterization]
    if width == 1 and not always_width:
        return f"{prefix}-{depth}"
    return f"{prefix}-{depth}-{width:g}"


def _head(channels: int, num_classes: int, relu: bool) -> Stage:
    pool = (GlobalAvgPool(), Linear(channels, num_classes))
    return Stage("head", (ReLU(), *pool) if relu else pool)


def diracnet_cifar(
    depth: int = 34,
    width: float = 1,
    num_classes: int = 10,
    *,
    activation: str = "ncrelu",
    parameterization: str = "dirac",
    per_channel: bool | str = False,
    policy: str = "tile",
    head_relu: bool = False,
    in_channels: int = 3,
    image_size: int = 32,
) -> NetSpec:
    """CIFAR DiracNet-``depth``-``width``: ``n = (depth - 4) // 6``, three groups of ``2n``
    Dirac layers of widths ``int((16, 32, 64) * width)``, max-pool 2x2 between groups.

    Raises
    ------
    ValueError
        ``depth`` with ``(depth - 4) % 6 != 0`` or ``depth < 10``; a bad width or variant.

    Examples
    --------
    >>> spec = diracnet_cifar(34, 2)
    >>> spec.name, count_parameters(spec)
    ('DiracNet-34-2', 3693158)
    """
    num_classes, in_channels, image_size = _check_variant(
        width, num_classes, activation, parameterization, per_channel, policy, head_relu,
        in_channels, image_size)
    depth = positive_int(depth, "depth")
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"depth={depth!r} is not accepted; use 6n + 4 with n >= 1 (10, 16, 28, 34, ...)"
        )
    n = (depth - 4) // 6
    widths = scaled_widths((16, 32, 64), width)
    stem = Stage(
        "stem",
        (Conv(in_channels, widths[0], 3, padding=1), BatchNorm(widths[0]), ReLU()),
    )
    kw = {"activation": activation, "parameterization": parameterization,
          "per_channel": per_channel, "policy": policy}
    groups = _dirac_groups(widths, (2 * n,) * 3, widths[0], **kw)
    return NetSpec(
        net_name(depth, width, always_width=True, parameterization=parameterization),
        in_channels, image_size, num_classes,
        (stem, *groups, _head(widths[-1], num_classes, head_relu)),
        {"depth": depth, "width": width, "head_relu": head_relu, **kw},
    )


IMAGENET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
# The paper's ImageNet "34" (its table's parameter counts, the authors' v1 code): 5 blocks in
# the last group instead of ResNet-34's 3, so 38 weight layers.
PAPER_IMAGENET_34 = (3, 4, 6, 5)


def diracnet_imagenet(
    depth: int = 18,
    width: float = 1,
    num_classes: int = 1000,
    *,
    activation: str = "ncrelu",
    parameterization: str = "dirac",
    per_channel: bool | str = False,
    policy: str = "tile",
    head_relu: bool = False,
    blocks: tuple[int, int, int, int] | None = None,
    in_channels: int = 3,
    image_size: int = 224,
) -> NetSpec:
    """ImageNet DiracNet-18/34: widths ``int((64, 128, 256, 512) * width)``, ``2 * (2, 2, 2, 2)``
    (18) or ``2 * (3, 4, 6, 3)`` (34) Dirac layers per group; stem conv 7x7 stride 2 -> BN ->
    max-pool 3x3 stride 2; max-pool 2x2 between groups.

    ``blocks`` replaces the per-group block counts (each block is two Dirac layers), e.g.
    :data:`PAPER_IMAGENET_34` for the network the paper's ImageNet table counts as 34 layers;
    the name then says so.

    Examples
    --------
    >>> diracnet_imagenet(18, 0.75).name
    'DiracNet-18-0.75'
    >>> diracnet_imagenet(34, 0.5, blocks=PAPER_IMAGENET_34).name
    'DiracNet-34-0.5 (blocks 3-4-6-5)'
    """
    num_classes, in_channels, image_size = _check_variant(
        width, num_classes, activation, parameterization, per_channel, policy, head_relu,
        in_channels, image_size)
    depth = positive_int(depth, "depth")
    if depth not in IMAGENET_LAYERS:
        raise ValueError(f"depth={depth!r} is not accepted; use one of {sorted(IMAGENET_LAYERS)}")
    name = net_name(depth, width, always_width=False, parameterization=parameterization)
    if blocks is None:
        blocks = IMAGENET_LAYERS[depth]
    else:
        ok = isinstance(blocks, tuple) and len(blocks) == 4 and all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in blocks)
        if not ok:
            raise ValueError(f"blocks must be a tuple of 4 positive ints, got {blocks!r}")
        if blocks != IMAGENET_LAYERS[depth]:
            name += f" (blocks {'-'.join(map(str, blocks))})"
    widths = scaled_widths((64, 128, 256, 512), width)
    stem = Stage(
        "stem",
        (Conv(in_channels, widths[0], 7, stride=2, padding=3), BatchNorm(widths[0]),
         MaxPool(3, 2, 1)),
    )
    kw = {"activation": activation, "parameterization": parameterization,
          "per_channel": per_channel, "policy": policy}
    groups = _dirac_groups(widths, tuple(2 * c for c in blocks), widths[0], **kw)
    return NetSpec(
        name, in_channels, image_size, num_classes,
        (stem, *groups, _head(widths[-1], num_classes, head_relu)),
        {"depth": depth, "width": width, "head_relu": head_relu, "blocks": list(blocks), **kw},
    )


def spec_to_dict(spec: NetSpec) -> dict[str, Any]:
    """``spec`` as JSON-ready data (every layer a dict with its ``"type"``); see
    :func:`spec_from_dict`.

    Examples
    --------
    >>> spec = diracnet_cifar(10, in_channels=1, num_classes=4)
    >>> spec_from_dict(spec_to_dict(spec)) == spec
    True
    """
    return {
        "name": spec.name, "in_channels": spec.in_channels, "image_size": spec.image_size,
        "num_classes": spec.num_classes, "options": dict(spec.options),
        "stages": [
            {"name": stage.name,
             "layers": [{"type": type(layer).__name__, **dataclasses.asdict(layer)}
                        for layer in stage.layers]}
            for stage in spec.stages
        ],
    }


def spec_from_dict(data: Any, source: str = "architecture description") -> NetSpec:
    """The :class:`NetSpec` that :func:`spec_to_dict` wrote, read as untrusted input.

    Every field is type-checked (:func:`dirac_core.untrusted.from_dict`) and every size must
    be an int in ``[1, MAX_SIZE]`` (kernel, stride and padding at most 64), with at most
    :data:`MAX_LAYERS` layers, before any layer is made; then the channels must chain from
    layer to layer and end at ``num_classes``.

    Raises
    ------
    dirac_core.untrusted.UntrustedInputError
        (a ``ValueError``) A missing or unknown key, an unknown layer type, a field of the
        wrong type, a size out of range, or channels that do not chain; the message names
        ``source`` and the field or layer.
    """
    record = from_dict(_SpecRecord, data, source)
    _check_sizes(dataclasses.asdict(record), source)
    stages, count = [], 0
    for s, stage in enumerate(record.stages):
        where = f"{source}, stages[{s}]"
        stage_record = from_dict(_StageRecord, stage, where)
        count += len(stage_record.layers)
        if count > MAX_LAYERS:
            raise UntrustedInputError(f"{source}: more than {MAX_LAYERS:,} layers; refused")
        layers = tuple(_layer_from_dict(layer, f"{where}.layers[{i}]")
                       for i, layer in enumerate(stage_record.layers))
        stages.append(Stage(stage_record.name, layers))
    spec = NetSpec(record.name, record.in_channels, record.image_size, record.num_classes,
                   tuple(stages), dict(record.options))
    _check_chain(spec, source)
    return spec


def _check_chain(spec: NetSpec, source: str) -> None:
    """Each layer takes the channels the layers before it give (``in_channels`` at the start,
    doubled by NCReLU), and the last classifier gives ``num_classes``: a description whose
    fields are each in range can still describe no network that runs."""
    channels = spec.in_channels
    for name, layer in spec.layers():
        takes = {Conv: "in_channels", BatchNorm: "channels", NCReLU: "channels",
                 Linear: "in_features"}.get(type(layer))
        if takes is not None and getattr(layer, takes) != channels:
            raise UntrustedInputError(
                f"{source}: layer {name} ({type(layer).__name__}) has {takes}="
                f"{getattr(layer, takes)}, but the layers before it give {channels} channels"
            )
        if isinstance(layer, Conv):
            channels = layer.out_channels
        elif isinstance(layer, NCReLU):
            channels *= 2
        elif isinstance(layer, Linear):
            channels = layer.out_features
    if channels != spec.num_classes:
        raise UntrustedInputError(
            f"{source}: the network ends with {channels} outputs, but num_classes="
            f"{spec.num_classes}"
        )


# Bounds of an untrusted spec: far beyond any real network (the widest layer of the paper has
# 2048 channels, the deepest network 400 layers), small enough that the parameter count is
# computed before anything that large is allocated.
MAX_SIZE = 2**16
MAX_LAYERS = 100_000
_SMALL = {"kernel_size": 64, "stride": 64, "padding": 64}


@dataclass
class _SpecRecord:
    """What a stored spec holds at its top (checked before the stages are read)."""

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    stages: list[Any]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class _StageRecord:
    name: str
    layers: list[Any]


def _check_sizes(values: dict[str, Any], source: str) -> None:
    """Every int field of ``values`` (padding from 0, the rest from 1) within its bound."""
    for name, value in values.items():
        if type(value) is not int:
            continue
        low, high = (0 if name == "padding" else 1), _SMALL.get(name, MAX_SIZE)
        if not low <= value <= high:
            raise UntrustedInputError(f"{source}: {name}={value!r}; accepted: an int in "
                                      f"[{low}, {high}]")


def _layer_from_dict(data: Any, source: str) -> Layer:
    fields = dict(require(data, "dict[str, Any]", source, "layer"))
    kind = fields.pop("type", None)
    if not isinstance(kind, str) or kind not in _LAYER_TYPES:
        raise UntrustedInputError(f"{source}: layer type={kind!r} is not accepted; use one of "
                                  f"{sorted(_LAYER_TYPES)}")
    where = f"{source} ({kind})"
    layer: Layer = from_dict(_LAYER_TYPES[kind], fields, where)
    _check_sizes(dataclasses.asdict(layer), where)
    if isinstance(layer, MaxPool):
        try:
            pool_geometry(layer.kernel_size, layer.stride, layer.padding)
        except ValueError as exc:
            raise UntrustedInputError(f"{where}: {exc}") from None
    if isinstance(layer, Conv):
        for name, allowed in (("padding", ("same",)),
                              ("parameterization", ("none", *PARAMETERIZATIONS)),
                              ("policy", POLICIES)):
            value = getattr(layer, name)
            if isinstance(value, str) and value not in allowed:
                raise UntrustedInputError(f"{where}: {name}={value!r}; accepted: {allowed}"
                                          + (" or an int" if name == "padding" else ""))
    return layer


