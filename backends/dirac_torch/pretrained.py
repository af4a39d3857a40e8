"""The authors' weight files (``szagoruyko/diracnets``), loaded without their code.

Five layouts, told apart by their keys:

- ``"v2-folded"``: their folded ImageNet DiracNet-18/34 (``diracnet18v2folded-*.pth``, the
  state dict of their ``DiracNet`` module): ``features.conv.{weight,bias}``,
  ``features.group{g}.block{j}.conv.{weight,bias}``, ``fc.{weight,bias}``. Loads into a folded
  model: :func:`~dirac_torch.fold.fold_model` of a ``v2_imagenet`` network.
- ``"v2"``: their v2 functional parameters (``diracnet18-v2_checkpoint.pth``): ``conv``,
  ``bn.{weight,bias,running_mean,running_var}``, ``group{g}.block{j}.{conv,alpha,beta}``,
  ``group{g}.block{j}.bn.*``, ``fc.*`` and one Dirac tensor ``eye{O}_{I}_{K}_{K}`` per conv
  shape; per-channel alpha and beta, ReLU, ``torch.nn.init.dirac_``'s Dirac tensor: our
  ``activation="relu"``, ``per_channel=True``, ``policy="min"`` (the ``v2_*`` families).
- ``"v1"``: the parameter and statistics dicts of their v1 ``define_diracnet`` (CIFAR or
  ImageNet), as their ``train.py`` saves them (``{"params": ..., "stats": ...}``) or merged:
  the same keys with scalar ``alpha``/``beta`` of shape ``(1,)``, NCReLU (conv inputs twice the
  channels), the tiled Dirac tensor and no ReLU before the pooling: the ``cifar``,
  ``imagenet`` and (their June-2017 "34", blocks 3-4-6-5) ``jun2017_imagenet`` families.
- ``"v1-released"``: their released v1 ImageNet training file (``diracnet-18-0.75-br.hkl``,
  read by :mod:`dirac_torch.hickle`): the v1 keys, but each Dirac conv's scales are
  ``conv.gamma`` (alpha, shape ``(1,)``) and ``conv.beta`` (one per output filter), and a ReLU
  precedes the pooling: the ``paper_imagenet`` family (the networks of the paper's Table 3).
- ``"v1-folded"``: their released folded export of it (``diracnet-18-0.75-br-export.hkl``):
  ``conv.{weight,bias}``, ``group{g}.block{j}.conv.{weight,bias}``, ``fc.*``; loads into a
  folded ``paper_imagenet`` network.

A file is ``torch.load(path, weights_only=True)``-ed by the caller (no pickled code runs) and
handed to :func:`authors_model` (which reads the architecture off the shapes) or to
:func:`load_authors` (into a model you built). Both check every key and shape and fail on the
first mismatch, naming it; a stored Dirac tensor must equal the one the model uses.

>>> import torch
>>> from dirac_torch.registry import create_model
>>> theirs = authors_state_dict(create_model("diracnet10_1_v2_cifar"))
>>> authors_model(theirs).spec.name
'DiracNet-10-1'
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from dirac_core import nets
from dirac_core.catalog import family_spec
from dirac_core.untrusted import UntrustedInputError

from .fold import fold_model
from .models import DiracNet, build
from .untrusted import check_floating_values, check_parameter_count, stored_tensors

LAYOUTS = ("v1", "v1-released", "v1-folded", "v2", "v2-folded")
# The files the authors released (their README), by the registry name of the network they hold:
# the unfolded v2 checkpoint, which loads into that network, and the folded one, which loads into
# its fold (the first 8 hex digits of its SHA-256 end the name, as torch.hub checks them).
RELEASED_URL = "https://s3.amazonaws.com/modelzoo-networks/"
RELEASED = {
    "diracnet18_v2_imagenet": ("diracnet18-v2_checkpoint.pth", "diracnet18v2folded-a2174e15.pth"),
    "diracnet34_v2_imagenet": ("diracnet34-v2_checkpoint.pth", "diracnet34v2folded-dfb15d34.pth"),
}
FOLDED = ("v1-folded", "v2-folded")
# layout -> (CIFAR family, {ImageNet blocks per group: family}) of dirac_core.catalog
_FAMILIES: dict[str, tuple[str | None, dict[tuple[int, ...], str]]] = {
    "v1": ("cifar", {(2, 2, 2, 2): "imagenet", (3, 4, 6, 3): "imagenet",
                     (3, 4, 6, 5): "jun2017_imagenet"}),
    "v1-released": (None, {(2, 2, 2, 2): "paper_imagenet", (3, 4, 6, 5): "paper_imagenet"}),
    "v2": ("v2_cifar", {(2, 2, 2, 2): "v2_imagenet", (3, 4, 6, 3): "v2_imagenet"}),
}
_FAMILIES["v2-folded"] = _FAMILIES["v2"]
_FAMILIES["v1-folded"] = _FAMILIES["v1-released"]
# layout -> the families whose Dirac networks (at their own variant) it holds
HOLDS = {layout: tuple(dict.fromkeys(f for f in (cifar, *imagenet.values()) if f))
         for layout, (cifar, imagenet) in sorted(_FAMILIES.items())}
# the folded files' key prefix
_PREFIX = {"v2-folded": "features.", "v1-folded": ""}
# their keys of a Dirac conv's weight, alpha and beta, after the block's prefix
_SCALE_KEYS = {"v1-released": ("conv", "conv.gamma", "conv.beta")}
_BN = ("weight", "bias", "running_mean", "running_var")
_EYE = re.compile(r"eye\d+(_\d+)+")


class AuthorsCheckpointError(UntrustedInputError):
    """A file that is not in the authors' layout for the model: names the first mismatch.
    An :class:`~dirac_core.untrusted.UntrustedInputError`, so a ``ValueError``."""


def flatten_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """One flat ``{key: tensor}`` from a state dict or a ``{"params", "stats"}`` checkpoint.

    Their ``train.py`` saves ``{"params": ..., "stats": ..., "optimizer": ..., "epoch": ...}``;
    only ``params`` and ``stats`` are weights.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint must be a mapping (a loaded state dict), got "
                        f"{type(checkpoint).__name__}")
    parts = [checkpoint["params"], checkpoint.get("stats", {})] if "params" in checkpoint \
        else [checkpoint]
    flat: dict[str, torch.Tensor] = {}
    for part in parts:
        try:  # dense tensors holding their own values (no expanded views): untrusted input
            flat.update(stored_tensors(part, "checkpoint"))
        except UntrustedInputError as exc:
            raise AuthorsCheckpointError(str(exc)) from None
    return flat


def detect_layout(flat: Mapping[str, torch.Tensor]) -> str:
    """One of :data:`LAYOUTS`, from the keys and the first block's alpha."""
    if "features.conv.weight" in flat:
        return "v2-folded"
    if "conv.weight" in flat and "group0.block0.conv.weight" in flat:
        return "v1-folded"
    if "group0.block0.conv.gamma" in flat and "conv" in flat:
        return "v1-released"
    alpha = flat.get("group0.block0.alpha")
    if alpha is None or "conv" not in flat:
        raise AuthorsCheckpointError(
            "not an authors' DiracNet checkpoint: no 'features.conv.weight' (v2 folded) nor "
            "'conv' and 'group0.block0.alpha' (functional v1/v2)")
    return "v1" if alpha.numel() == 1 else "v2"


def authors_spec(checkpoint: Mapping[str, Any]) -> tuple[str, nets.NetSpec]:
    """``(layout, spec)`` of the network a checkpoint holds, read off its shapes."""
    flat = flatten_checkpoint(checkpoint)
    layout = detect_layout(flat)
    return layout, _spec_of(layout, flat)


def _spec_of(layout: str, flat: Mapping[str, torch.Tensor]) -> nets.NetSpec:
    """The spec a ``layout`` file with these tensors holds, from their shapes alone."""
    prefix, suffix = (_PREFIX[layout], ".weight") if layout in FOLDED else ("", "")
    stem = _need(flat, f"{prefix}conv{suffix}", 4)
    blocks, widths = [], []
    while f"{prefix}group{len(blocks)}.block0.conv{suffix}" in flat:
        g = len(blocks)
        widths.append(_need(flat, f"{prefix}group{g}.block0.conv{suffix}", 4).shape[0])
        count = 0
        while f"{prefix}group{g}.block{count}.conv{suffix}" in flat:
            count += 1
        blocks.append(count)
    fc = _need(flat, "fc.weight", 2)
    common = {"num_classes": fc.shape[0], "in_channels": stem.shape[1]}
    cifar, imagenet = _FAMILIES[layout]
    if len(blocks) == 3 and stem.shape[-1] == 3 and len(set(blocks)) == 1 and blocks[0] % 2 == 0:
        if cifar is None:
            raise AuthorsCheckpointError(
                f"a {layout!r} file holds an ImageNet network ({', '.join(HOLDS[layout])}); "
                f"this one has a CIFAR network's 3x3 stem and Dirac layers per group "
                f"{tuple(blocks)}")
        width = _width(stem.shape[0], widths, (16, 32, 64))
        return family_spec(cifar, 3 * blocks[0] + 4, width, **common)
    halves = tuple(b // 2 for b in blocks)
    if len(blocks) == 4 and stem.shape[-1] == 7 and all(b % 2 == 0 for b in blocks) \
            and halves in imagenet:
        width = _width(stem.shape[0], widths, (64, 128, 256, 512))
        depth = 18 if halves == (2, 2, 2, 2) else 34
        return family_spec(imagenet[halves], depth, width, **common)
    raise AuthorsCheckpointError(
        f"no DiracNet has a {stem.shape[-1]}x{stem.shape[-1]} stem and Dirac layers per group "
        f"{tuple(blocks)}; expected 3 equal even counts (CIFAR) or 2x (2,2,2,2), (3,4,6,3), "
        f"(3,4,6,5) (ImageNet)")


def _need(flat: Mapping[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor:
    if key not in flat:
        raise AuthorsCheckpointError(f"checkpoint has no {key!r}")
    if flat[key].dim() != ndim:
        raise AuthorsCheckpointError(f"checkpoint's {key!r} has shape {tuple(flat[key].shape)}; "
                                     f"a {'conv' if ndim == 4 else 'linear'} weight has "
                                     f"{ndim} dimensions")
    return flat[key]


def _width(stem: int, widths: list[int], base: tuple[int, ...]) -> float:
    width = stem / base[0]
    width = int(width) if width.is_integer() else width
    if tuple(widths) != tuple(int(c * width) for c in base):
        raise AuthorsCheckpointError(
            f"group widths {tuple(widths)} are not {base} x {width} truncated to int")
    return width


def authors_model(checkpoint: Mapping[str, Any]) -> DiracNet:
    """Build the network ``checkpoint`` holds (folded for a folded layout) and load it.

    Parameters
    ----------
    checkpoint : mapping
        ``torch.load(path, weights_only=True)`` of one of the authors' files.

    Returns
    -------
    DiracNet
        Unfolded (trainable, in training mode), or folded (eval mode) for a folded layout;
        in the file's floating dtype.

    Raises
    ------
    AuthorsCheckpointError
        The file is not in one of :data:`LAYOUTS`; the first key or shape that does not match;
        an entry that is not a dense tensor holding its own values (an expanded view); a
        network with more parameters than the file stores values (checked before building).
    TypeError
        ``checkpoint`` is not a mapping.
    """
    layout, spec = authors_spec(checkpoint)
    flat = flatten_checkpoint(checkpoint)
    stem = flat[f"{_PREFIX[layout]}conv.weight" if layout in FOLDED else "conv"]
    try:  # the network must fit in the values the file stores before it is built
        check_parameter_count(spec, sum(v.numel() for v in flat.values()), "checkpoint",
                              folded=layout in FOLDED)
    except UntrustedInputError as exc:
        raise AuthorsCheckpointError(str(exc)) from None
    model = build(spec).to(stem.dtype if stem.is_floating_point() else torch.float32)
    if layout in FOLDED:
        model = fold_model(model.eval())
    return load_authors(model, checkpoint, layout=layout)


def load_authors(
    model: DiracNet, checkpoint: Mapping[str, Any], *, layout: str | None = None
) -> DiracNet:
    """Copy the authors' weights into ``model`` (in place); return ``model``.

    ``layout`` (one of :data:`LAYOUTS`) is detected from the keys when None. Every tensor of
    the file must land in ``model``: a missing key, a left-over key or a different shape raises
    :class:`AuthorsCheckpointError` naming it; so does a stored Dirac tensor that differs from
    the model's (e.g. a v2 file in a ``policy="tile"`` model).
    """
    if not isinstance(model, DiracNet):
        raise TypeError(f"model must be a dirac_torch DiracNet, got {type(model).__name__}")
    flat = flatten_checkpoint(checkpoint)
    layout = detect_layout(flat) if layout is None else layout
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not accepted; use one of {LAYOUTS}")
    ours = dict(model.state_dict())
    used = set()
    with torch.no_grad():
        for our_key, their_key in key_map(model, layout):
            if their_key not in flat:
                raise AuthorsCheckpointError(
                    f"checkpoint has no {their_key!r} (for {our_key!r} of {model.spec.name}, "
                    f"layout {layout})")
            if our_key not in ours:
                raise AuthorsCheckpointError(
                    f"model {model.spec.name} has no {our_key!r} for checkpoint's "
                    f"{their_key!r}; is it {'folded' if layout in FOLDED else 'unfolded'}?")
            _copy(ours[our_key], flat[their_key], our_key, their_key)
            used.add(their_key)
        _check_deltas(model, flat, used, layout)
    extra = [k for k in flat if k not in used]
    if extra:
        raise AuthorsCheckpointError(
            f"checkpoint key {extra[0]!r} has no place in {model.spec.name} (layout {layout})"
            + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
    return model


def _copy(dest: torch.Tensor, src: torch.Tensor, our_key: str, their_key: str) -> None:
    check_shape(tuple(dest.shape), src, our_key, their_key)
    check_floating_values(src, dest, "checkpoint", their_key, our_key,
                          error=AuthorsCheckpointError)
    dest.copy_(src.reshape(dest.shape))


def check_shape(shape: tuple[int, ...], src: torch.Tensor, our_key: str, their_key: str) -> None:
    """Refuse the file's tensor ``src`` (key ``their_key``) unless it fits ``our_key`` of
    shape ``shape``; a scalar may be stored with shape ``(1,)``.

    Raises
    ------
    AuthorsCheckpointError
        The shapes differ; the message names both keys and both shapes.

    Examples
    --------
    >>> check_shape((), torch.ones(1), "alpha", "alpha")
    >>> check_shape((2,), torch.ones(3), "b", "b")
    Traceback (most recent call last):
    ...
    dirac_torch.pretrained.AuthorsCheckpointError: checkpoint's 'b' has shape (3,); 'b' needs (2,)
    """
    given = tuple(src.shape)
    # their scalar alpha/beta are tensors of shape (1,); ours are 0-d
    if given != shape and not (shape == () and given == (1,)):
        raise AuthorsCheckpointError(
            f"checkpoint's {their_key!r} has shape {given}; {our_key!r} needs {shape}")


def key_map(model: DiracNet, layout: str) -> Iterator[tuple[str, str]]:
    """``(our state-dict key, their key)`` pairs for every weight, in network order."""
    folded = layout in FOLDED
    prefix = _PREFIX.get(layout, "")
    for stage in model.spec.stages:
        dirac_count = 0
        block = ""
        for index, layer in enumerate(stage.layers):
            ours = f"{stage.name}.{index}"
            if isinstance(layer, nets.Conv) and layer.parameterization == "none":
                block = f"{prefix}conv" if folded else "conv"
                yield from _conv_keys(ours, block, folded, dirac=False)
                block = "" if folded else "bn"
            elif isinstance(layer, nets.Conv):
                block = f"group{stage.name.removeprefix('group')}.block{dirac_count}"
                dirac_count += 1
                their = f"{prefix}{block}.conv" if folded else block
                yield from _conv_keys(ours, their, folded, dirac=True, layout=layout)
                block = "" if folded else f"{block}.bn"
            elif isinstance(layer, nets.BatchNorm) and not folded:
                yield from ((f"{ours}.{name}", f"{block}.{name}") for name in _BN)
            elif isinstance(layer, nets.Linear):
                yield from ((f"{ours}.{name}", f"fc.{name}") for name in ("weight", "bias"))


def _conv_keys(
    ours: str, theirs: str, folded: bool, *, dirac: bool, layout: str = "v1"
) -> Iterator[tuple[str, str]]:
    if folded:
        yield f"{ours}.weight", f"{theirs}.weight"
        yield f"{ours}.bias", f"{theirs}.bias"
    elif dirac:
        weight, alpha, beta = _SCALE_KEYS.get(layout, ("conv", "alpha", "beta"))
        yield f"{ours}.parametrizations.weight.original", f"{theirs}.{weight}"
        yield f"{ours}.parametrizations.weight.0.alpha", f"{theirs}.{alpha}"
        yield f"{ours}.parametrizations.weight.0.beta", f"{theirs}.{beta}"
    else:
        yield f"{ours}.weight", theirs


def _check_deltas(
    model: nn.Module, flat: Mapping[str, torch.Tensor], used: set[str], layout: str
) -> None:
    """Each stored ``eye*`` Dirac tensor must be the one our convs of that shape use."""
    for name, module in model.named_modules():
        dirac = getattr(getattr(module, "parametrizations", None), "weight", None)
        if dirac is None:
            continue
        delta = dirac[0].delta
        key = "eye" + "_".join(map(str, delta.shape))
        if key in flat:
            if not torch.equal(flat[key].to(delta), delta):
                raise AuthorsCheckpointError(
                    f"checkpoint's {key!r} is not the Dirac tensor of {name!r} "
                    f"(policy={dirac[0].policy!r}); a {layout} file needs "
                    f"policy={'min' if layout.startswith('v2') else 'tile'!r}")
            used.add(key)
    stray = [k for k in flat if _EYE.fullmatch(k) and k not in used]
    if stray:
        raise AuthorsCheckpointError(f"checkpoint's {stray[0]!r} matches no conv of the model")


def authors_state_dict(model: DiracNet, *, layout: str | None = None) -> dict[str, torch.Tensor]:
    """The inverse of :func:`load_authors`: ``model``'s weights in the authors' layout, for a
    model that :func:`authors_model` reads back as the same network.

    ``layout`` defaults to ``"v1-folded"`` for a folded ``paper_imagenet`` model and
    ``"v2-folded"`` for another folded one, else ``"v2"`` (per-channel), ``"v1-released"``
    (per-filter beta) or ``"v1"``. Useful to hand weights to their code, and for tests.

    The authors' files hold Dirac networks of their code's variants only (:data:`HOLDS`: the
    ``v1`` layout the unfolded ``cifar``, ``imagenet`` and ``jun2017_imagenet`` families,
    ``v1-released``/``v1-folded`` ``paper_imagenet``, ``v2``/``v2-folded`` the ``v2_*``
    families), and nothing but the shapes says which network a file holds. So a model that
    would read back as another network (another parameterization, activation, head or Dirac
    tensor: a ``plain`` or eq. 14 ``resnet`` network, a ``relu_cifar`` one, a folded v1
    ``cifar`` one) is refused rather than written. The image size and the family's name are
    not in the files: ``jun2017_imagenet`` at depth 18 reads back as the same network of
    ``imagenet``.

    Raises
    ------
    TypeError
        ``model`` is not a :class:`DiracNet`.
    ValueError
        ``layout`` is not one of :data:`LAYOUTS`, or is folded for an unfolded model (or the
        reverse); ``model`` has convolutions other than Dirac ones for an unfolded layout;
        :func:`authors_model` would read the file back as another network. The message names
        the model's family and variant and what the layouts hold.

    Examples
    --------
    >>> from dirac_torch.registry import create_model
    >>> authors_state_dict(create_model("plain10_1_cifar"))
    Traceback (most recent call last):
    ...
    ValueError: Plain-10-1 (family 'cifar', parameterization='plain', activation='ncrelu', \
per_channel=False, policy='tile', head_relu=False) has 'plain' convolutions; the authors' \
unfolded layouts hold Dirac convolutions (W, alpha, beta) only. The authors' layouts hold \
Dirac networks of v1: cifar, imagenet, jun2017_imagenet; v1-folded: paper_imagenet (folded); \
v1-released: paper_imagenet; v2: v2_cifar, v2_imagenet; v2-folded: v2_cifar, v2_imagenet (folded)
    """
    if not isinstance(model, DiracNet):
        raise TypeError(f"model must be a dirac_torch DiracNet, got {type(model).__name__}")
    state = model.state_dict()
    folded = not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if layout is None:
        per_channel = model.spec.options.get("per_channel")
        released = model.spec.options.get("family") == "paper_imagenet"
        if folded:
            layout = "v1-folded" if released else "v2-folded"
        else:
            layout = {True: "v2", "beta": "v1-released"}.get(per_channel, "v1")
    elif layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not accepted; use one of {LAYOUTS}")
    if folded != (layout in FOLDED):
        raise ValueError(f"layout={layout!r} is for {'folded' if layout in FOLDED else 'unfolded'}"
                         f" models; {_described(model.spec)} is "
                         f"{'folded' if folded else 'unfolded'}")
    others = sorted({layer.parameterization for _, layer in model.spec.layers()
                     if isinstance(layer, nets.Conv)} - {"dirac", "none"})
    if others and not folded:
        raise ValueError(f"{_described(model.spec)} has {', '.join(map(repr, others))} "
                         f"convolutions; the authors' unfolded layouts hold Dirac convolutions "
                         f"(W, alpha, beta) only. {_holds()}")
    out = {}
    for ours, theirs in key_map(model, layout):
        value = state[ours].detach().clone()
        out[theirs] = value.reshape(1) if value.dim() == 0 else value
    if layout not in FOLDED:
        for module in model.modules():
            dirac = getattr(getattr(module, "parametrizations", None), "weight", None)
            if dirac is not None:
                delta = dirac[0].delta
                out["eye" + "_".join(map(str, delta.shape))] = delta.detach().clone()
    _check_reads_back(model.spec, layout, out)
    return out


def _check_reads_back(spec: nets.NetSpec, layout: str, out: Mapping[str, torch.Tensor]) -> None:
    """Refuse a file :func:`authors_model` would read as another network than ``spec``'s
    (the image size and the family's name aside: the files do not hold them)."""
    try:
        found = detect_layout(out)
        back = _spec_of(found, out)
    except AuthorsCheckpointError as exc:
        raise ValueError(f"{_described(spec)} written in the authors' {layout!r} layout would "
                         f"not read back ({exc}). {_holds()}") from None
    folded = layout in FOLDED
    ours, theirs = _architecture(spec, folded), _architecture(back, folded)
    if found == layout and ours == theirs:
        return
    differ = [f"{k} {spec.options.get(k)!r} -> {back.options.get(k)!r}"
              for k in sorted(set(ours.options) | set(theirs.options))
              if spec.options.get(k) != back.options.get(k)]
    if found != layout:
        differ.insert(0, f"layout {layout!r} -> {found!r}")
    if not differ:
        differ = ["other layers"]
    raise ValueError(f"{_described(spec)} written in the authors' {layout!r} layout would read "
                     f"back as another network, {back.name} of family "
                     f"{back.options.get('family')!r} ({', '.join(differ)}). {_holds()}")


_PARAMETERIZED = ("parameterization", "per_channel", "policy")
"""What a conv's parameterization adds to it, which folding removes: a folded DiracNet, plain
network or eq. 14 ResNet are the same plain convolutions."""


def _architecture(spec: nets.NetSpec, folded: bool) -> nets.NetSpec:
    """``spec`` without what the authors' files do not hold: the image size, the family's
    name (two families may share an architecture), the network's name (a label of the rest:
    ``Plain-10-1`` folded is ``DiracNet-10-1`` folded) and, folded, the parameterization."""
    options = {k: v for k, v in spec.options.items()
               if k != "family" and not (folded and k in _PARAMETERIZED)}
    stages = spec.stages
    if folded:
        stages = tuple(nets.Stage(stage.name, tuple(
            dataclasses.replace(layer, parameterization="folded", per_channel=False,
                                policy="tile")
            if isinstance(layer, nets.Conv) and layer.parameterization != "none" else layer
            for layer in stage.layers)) for stage in stages)
    return dataclasses.replace(spec, name="", image_size=0, options=options, stages=stages)


def _described(spec: nets.NetSpec) -> str:
    options = spec.options
    variant = ", ".join(f"{k}={options[k]!r}" for k in ("parameterization", "activation",
                                                         "per_channel", "policy", "head_relu")
                        if k in options)
    return f"{spec.name} (family {options.get('family')!r}, {variant})"


def _holds() -> str:
    """What each layout holds, as :data:`HOLDS` says it."""
    return "The authors' layouts hold Dirac networks of " + "; ".join(
        f"{layout}: {', '.join(families)}{' (folded)' if layout in FOLDED else ''}"
        for layout, families in HOLDS.items())


__all__ = [
    "HOLDS",
    "LAYOUTS",
    "RELEASED",
    "RELEASED_URL",
    "AuthorsCheckpointError",
    "authors_model",
    "authors_spec",
    "authors_state_dict",
    "check_shape",
    "detect_layout",
    "flatten_checkpoint",
    "key_map",
    "load_authors",
]
