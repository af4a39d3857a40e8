"""Every registry DiracNet as a timm model: ``import dirac_torch.timm_models``, then timm.

Importing this module registers each name of :func:`dirac_torch.registry.list_models` with
timm (``pytorch-image-models``), with a pretrained config made from the same table: input size,
mean and std, class count, first conv and classifier names, the parameter count and, for the
authors' released networks, their files. Then::

    import timm
    model = timm.create_model("diracnet34_2_cifar", num_classes=100)

builds what ``dirac_torch.create_model("diracnet34_2_cifar", num_classes=100)`` builds, from
the same random draws (it *is* that call), and timm's tools work on it: ``features_only=True``,
``timm.data.resolve_data_config``, ``timm.utils.reparameterize_model`` (which folds it as
:func:`~dirac_torch.fold.fold_model` does), timm's ``train.py`` and ``validate.py``.

``pretrained=True`` loads the config's file through :mod:`dirac_torch.pretrained`: an authors'
file (``v1``, ``v2`` layouts) or a state dict of our own model, e.g. offline with
``pretrained_cfg_overlay=dict(file=path)``. The model keywords timm passes are mapped to the
registry's: ``in_chans`` to ``in_channels`` (``in_channels`` itself is refused: timm always
passes an ``in_chans``); ``global_pool`` must be ``"avg"`` and ``drop_rate`` 0 (a DiracNet has
neither other pooling nor dropout); the rest go to :func:`~dirac_torch.registry.create_model`,
and ``image_size`` sets the pretrained config's ``input_size`` too.

Nothing else in ``dirac_torch`` imports timm; this module needs the ``[timm]`` extra.
"""

from __future__ import annotations

import copy
import functools
import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from dirac_core import catalog, nets

from . import registry
from .models import DiracNet, stage_outputs
from .pretrained import RELEASED, RELEASED_URL, check_shape, load_authors
from .untrusted import stored_tensors


def _import_timm() -> Any:
    """``import timm``, where torchvision's CUDA wheel sits beside a CPU-only torch too.

    Such a torchvision cannot load its C++ operators; it is built to go on without them
    (``torchvision.extension._has_ops()`` is then false), but its releases up to at least 0.28
    register fake kernels for ``nms`` and ``qnms`` unconditionally and fail at import with
    "operator torchvision::nms does not exist" (pytorch/vision#9085). timm imports torchvision,
    so there we declare the two operators' schemas (which the missing library would have) and
    import again: torchvision then runs as without its operators, which timm's models and data
    pipeline do not use.
    """
    global _torchvision_schemas
    try:
        return importlib.import_module("timm")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or _torchvision_schemas is not None:
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _torchvision_schemas = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        _torchvision_schemas.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) "
                                    f"-> Tensor")
    return importlib.import_module("timm")


# The library declaring torchvision's two schemas, when needed: it must outlive the import.
_torchvision_schemas: torch.library.Library | None = None
timm = _import_timm()
from timm.models import (  # noqa: E402  (after the import above has made timm importable)
    build_model_with_cfg,
    generate_default_cfgs,
    register_model,
)

# The normalisation of the authors' train.py: their CIFAR constants, torchvision's ImageNet ones.
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pretrained_cfg(name: str) -> dict[str, Any]:
    """timm's pretrained config of registry model ``name``, read off its spec.

    Parameters
    ----------
    name : str
        A registry name (:func:`dirac_torch.registry.list_models` lists them).

    Returns
    -------
    dict
        ``input_size``, ``mean``/``std`` and ``crop_pct`` of the authors' data pipeline,
        ``num_classes``, ``first_conv``, ``classifier``, ``pool_size``, the paper, in ``notes``
        our parameter count, the published one where :mod:`dirac_core.catalog` has it and the
        authors' commit the family reproduces, and for a released network ``url`` and its
        files.

    Raises
    ------
    ValueError
        An unknown name.

    Examples
    --------
    >>> cfg = pretrained_cfg("diracnet34_2_cifar")
    >>> cfg["input_size"], cfg["first_conv"], cfg["classifier"]
    ((3, 32, 32), 'stem.0', 'head.1')
    """
    spec = registry.create_spec(name)
    family = catalog.family(registry.parse_name(name)[3])
    cifar = family.dataset == "cifar"
    notes = [f"parameters: {nets.count_parameters(spec):,} ({spec.name})"]
    for _, _, row in catalog.listed_networks(name):
        if row.published:
            notes.append(f"published parameter count: {row.published} "
                         f"({row.published_source})")
    notes.append(f"reproduces {family.source}")
    cfg: dict[str, Any] = {
        **_input_cfg(spec),
        "crop_pct": 1.0 if cifar else 0.875,
        "interpolation": "bilinear",
        "mean": CIFAR_MEAN if cifar else IMAGENET_MEAN,
        "std": CIFAR_STD if cifar else IMAGENET_STD,
        "num_classes": spec.num_classes,
        "first_conv": _layer_name(spec, nets.Conv, first=True),
        "classifier": _layer_name(spec, nets.Linear, first=False),
        "paper_ids": "arXiv:1706.00388",
        "paper_name": "DiracNets: Training Very Deep Neural Networks Without Skip-Connections",
        "origin_url": "https://github.com/szagoruyko/diracnets",
    }
    if name in RELEASED:
        unfolded, folded = RELEASED[name]
        cfg["url"] = RELEASED_URL + unfolded
        notes.append(f"folded weights: {RELEASED_URL}{folded} (sha256 prefix "
                     f"{folded.rpartition('-')[2].removesuffix('.pth')}); load with "
                     f"dirac_torch.pretrained.authors_model")
    cfg["notes"] = tuple(notes)
    return cfg


def _input_cfg(spec: nets.NetSpec) -> dict[str, tuple[int, int, int] | tuple[int, int]]:
    """The config's ``input_size`` and ``pool_size`` (the last feature map's) for ``spec``."""
    size, reduction = spec.image_size, stage_outputs(spec)[-1][2]
    return {"input_size": (spec.in_channels, size, size),
            "pool_size": (size // reduction, size // reduction)}


def _layer_name(spec: nets.NetSpec, kind: type, *, first: bool) -> str:
    """The module name (``stage.index``) of the first or last layer of type ``kind``."""
    names = [name for name, layer in spec.layers() if isinstance(layer, kind)]
    return names[0] if first else names[-1]


def create(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """The timm entrypoint of registry model ``name`` (``timm.create_model`` calls it).

    ``in_chans`` (timm's name) sets the input channels; ``image_size`` the size, which the
    model's ``pretrained_cfg`` (``input_size``, ``pool_size``) then follows, so timm's data
    config resizes to it (a ``pretrained_cfg_overlay`` given too wins).

    Raises
    ------
    TypeError
        ``in_channels``: timm always passes its own ``in_chans`` (3 unless given), which would
        silently replace it; the message says to pass ``in_chans``.
    ValueError
        ``global_pool`` other than ``"avg"``, a non-zero ``drop_rate``, or what
        :func:`~dirac_torch.registry.create_model` refuses.
    """
    kwargs.pop("cache_dir", None)  # only for downloads, which go through timm as usual
    if "in_channels" in kwargs:
        raise TypeError(f"timm.create_model({name!r}) takes no keyword in_channels (timm "
                        f"passes its own in_chans, 3 unless given, which would replace it); "
                        f"pass in_chans={kwargs['in_channels']!r}, timm's name for the input "
                        f"channels")
    if "image_size" in kwargs:  # the config describes the network built, not the default one
        sized = _input_cfg(registry.create_spec(name, image_size=kwargs["image_size"]))
        kwargs["pretrained_cfg_overlay"] = {**sized, **(kwargs.get("pretrained_cfg_overlay")
                                                         or {})}
    out_stages = len(stage_outputs(registry.create_spec(name))) - 1
    return build_model_with_cfg(
        functools.partial(_build, name), name, pretrained,
        feature_cfg={"out_indices": tuple(range(out_stages))},
        pretrained_filter_fn=_load_weights, **kwargs,
    )


def _build(
    name: str, *, num_classes: int | None = None, in_chans: int | None = None,
    global_pool: str = "avg", drop_rate: float = 0.0, device: Any = None, dtype: Any = None,
    **kwargs: Any,
) -> DiracNet:
    if global_pool != "avg":
        raise ValueError(f"global_pool={global_pool!r} is not accepted; a DiracNet pools "
                         f"with 'avg'")
    if drop_rate:
        raise ValueError(f"drop_rate={drop_rate!r} is not accepted; a DiracNet has no dropout "
                         f"(pass 0)")
    if in_chans is not None:
        kwargs["in_channels"] = in_chans
    # timm's num_classes=0 asks for the pooled features, as reset_classifier(0) gives them.
    model = registry.create_model(name, None if num_classes == 0 else num_classes, **kwargs)
    if num_classes == 0:
        model.reset_classifier(0)
    return model.to(device=device, dtype=dtype)


def _load_weights(state_dict: Mapping[str, Any], model: DiracNet) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: our state dict from a loaded file, through
    :func:`~dirac_torch.pretrained.load_authors` unless it already is ours (then checked by
    :func:`~dirac_torch.untrusted.stored_tensors`, as the authors' files are, and every shape
    by :func:`~dirac_torch.pretrained.check_shape` before timm loads it)."""
    if set(state_dict) == set(model.state_dict()):
        cfg = getattr(model, "pretrained_cfg", None) or {}
        source = f"the pretrained file {cfg.get('file') or cfg.get('url') or ''!r}"
        tensors = stored_tensors(state_dict, source)
        for key, shape in _pretrained_shapes(model).items():
            check_shape(shape, tensors[key], key, key)
        return tensors
    target = copy.deepcopy(model)
    params = state_dict.get("params")  # the authors' v1 {"params", "stats"} checkpoints
    fc = (params if isinstance(params, Mapping) else state_dict).get("fc.weight")
    if isinstance(fc, torch.Tensor) and fc.shape[0] != target.num_classes:
        # timm drops the classifier afterwards when the model's class count is not the file's.
        target.reset_classifier(fc.shape[0])
    return load_authors(target, state_dict).state_dict()


def _pretrained_shapes(model: DiracNet) -> dict[str, tuple[int, ...]]:
    """The shapes a file of our own layout must have for timm to load it into ``model``: the
    model's, but the stem for the config's input channels (timm adapts it to ``in_chans``
    afterwards) and no classifier when the class count is not the config's (timm drops it)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    stem = f"{cfg.get('first_conv')}.weight"
    if stem in shapes:
        in_chans = (cfg.get("input_size") or (3,))[0]
        shapes[stem] = (shapes[stem][0], in_chans, *shapes[stem][2:])
    if model.num_classes != cfg.get("num_classes", model.num_classes):
        for key in (f"{cfg.get('classifier')}.weight", f"{cfg.get('classifier')}.bias"):
            shapes.pop(key, None)
    return shapes


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return create(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    spec_name = registry.create_spec(name).name
    entrypoint.__doc__ = f"{spec_name}: ``dirac_torch.create_model({name!r})`` for timm."
    return entrypoint


__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "create",
    "pretrained_cfg",
]
# Read by timm's register_model, which also adds each entrypoint's name to __all__.
default_cfgs = generate_default_cfgs({n: pretrained_cfg(n) for n in registry.list_models()})
for _name in registry.list_models():
    globals()[_name] = register_model(_entrypoint(_name))
