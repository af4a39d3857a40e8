"""Every DiracNet by name, in the style of timm: :func:`list_models`, :func:`create_model`.

A model name is ``{kind}{depth}[_{width}]_{family}``:

- ``kind``: ``diracnet`` (the Dirac parameterization) or ``plain`` (the paper's control);
- ``depth``: ``6n + 4`` for the CIFAR families, 18 or 34 for the ImageNet ones;
- ``width``: the width multiplier, ``2`` or ``10``; a fraction below 1 as its hundredths in
  three digits, ``075`` for 0.75 (timm's habit), another fraction with ``p`` for the point,
  ``1p5``; omitted for width 1 in the ImageNet families (``diracnet18_imagenet``), as the paper
  writes ``DiracNet-18``;
- ``family``: one registered builder, listed by :func:`families`.

:func:`list_models` lists the networks of the paper's tables and of the authors' releases;
:func:`create_model` accepts any depth and width of a family, listed or not.

>>> create_model("diracnet34_2_cifar", num_classes=100).spec.name
'DiracNet-34-2'
>>> "diracnet18_075_imagenet" in list_models("*imagenet")
True
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dirac_core import nets

from .models import DiracNet, build

KINDS = {"diracnet": "dirac", "plain": "plain"}
_INIT_KEYS = ("alpha_init", "beta_init", "init_std")


@dataclass(frozen=True)
class Family:
    """A registered builder: ``builder(depth, width, num_classes, **variant) -> NetSpec``."""

    name: str
    builder: Callable[..., nets.NetSpec]
    fixed: dict[str, Any]
    init: dict[str, Any] = field(default_factory=dict)
    listed: tuple[tuple[str, int, float], ...] = ()

    @property
    def doc(self) -> str:
        return (self.builder.__doc__ or "").strip().splitlines()[0]


_FAMILIES: dict[str, Family] = {}


def register_family(
    name: str, *, fixed: dict[str, Any] | None = None, init: dict[str, Any] | None = None,
    listed: tuple[tuple[str, int, float], ...] = (),
) -> Callable[[Callable[..., nets.NetSpec]], Callable[..., nets.NetSpec]]:
    """Register ``builder`` as family ``name``.

    ``fixed`` are variant keywords a caller cannot change (the family *is* them); ``init`` are
    default initial values for :func:`~dirac_torch.models.build` (a caller may change them);
    ``listed`` are the ``(kind, depth, width)`` that :func:`list_models` shows.
    """

    def register(builder: Callable[..., nets.NetSpec]) -> Callable[..., nets.NetSpec]:
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} is already registered")
        _FAMILIES[name] = Family(name, builder, fixed or {}, init or {}, listed)
        return builder

    return register


_V2 = {"activation": "relu", "per_channel": True, "policy": "min"}
_V2_INIT = {"alpha_init": 1.0, "beta_init": 0.1}


@register_family("cifar", listed=(("diracnet", 28, 10), ("diracnet", 34, 2), ("plain", 34, 2)))
def _cifar(depth: int, width: float, num_classes: int = 10, **variant: Any) -> nets.NetSpec:
    """The paper's CIFAR DiracNet (v1: NCReLU, scalar alpha/beta, tiled Dirac tensor)."""
    return nets.diracnet_cifar(depth, width, num_classes, **variant)


@register_family("imagenet", listed=(
    ("diracnet", 18, 1), ("diracnet", 34, 1), ("diracnet", 18, 0.75), ("diracnet", 34, 0.75),
    ("diracnet", 34, 0.5), ("plain", 18, 1), ("plain", 34, 1),
))
def _imagenet(depth: int, width: float, num_classes: int = 1000, **variant: Any) -> nets.NetSpec:
    """ImageNet DiracNet-18/34 (v1 variant; ResNet's 2-2-2-2 and 3-4-6-3 blocks per group)."""
    return nets.diracnet_imagenet(depth, width, num_classes, **variant)


@register_family("paper_imagenet", fixed={"blocks": nets.PAPER_IMAGENET_34}, listed=(
    ("diracnet", 34, 1), ("diracnet", 34, 0.75), ("diracnet", 34, 0.5),
))
def _paper_imagenet(
    depth: int, width: float, num_classes: int = 1000, **variant: Any
) -> nets.NetSpec:
    """The network the paper's ImageNet table counts as DiracNet-34 (blocks 3-4-6-5, v1 code)."""
    if depth != 34:
        raise ValueError(f"depth={depth!r} is not accepted by paper_imagenet; use 34")
    return nets.diracnet_imagenet(depth, width, num_classes, **variant)


@register_family("v2_cifar", fixed=_V2, init=_V2_INIT, listed=(("diracnet", 34, 2),))
def _v2_cifar(depth: int, width: float, num_classes: int = 10, **variant: Any) -> nets.NetSpec:
    """The authors' v2 CIFAR DiracNet: ReLU, per-channel alpha/beta (1, 0.1), dirac_ fill."""
    return nets.diracnet_cifar(depth, width, num_classes, **variant)


@register_family("v2_imagenet", fixed=_V2, init=_V2_INIT, listed=(
    ("diracnet", 18, 1), ("diracnet", 34, 1),
))
def _v2_imagenet(
    depth: int, width: float, num_classes: int = 1000, **variant: Any
) -> nets.NetSpec:
    """The authors' v2 ImageNet DiracNet-18/34, the networks of their released weights."""
    return nets.diracnet_imagenet(depth, width, num_classes, **variant)


def families() -> dict[str, str]:
    """Every family name with its one-line description."""
    return {name: family.doc for name, family in _FAMILIES.items()}


def model_name(kind: str, depth: int, width: float, family: str) -> str:
    """The registry name of ``(kind, depth, width, family)``.

    >>> model_name("diracnet", 34, 0.5, "imagenet")
    'diracnet34_050_imagenet'
    """
    if width == 1 and "imagenet" in family:
        return f"{kind}{depth}_{family}"
    if float(width).is_integer():
        code = str(int(width))
    elif width < 1 and float(round(width * 100, 6)).is_integer():
        code = f"{round(width * 100):03d}"
    else:
        code = repr(float(width)).replace(".", "p")
    return f"{kind}{depth}_{code}_{family}"


_NAME = re.compile(r"(?P<kind>[a-z]+?)(?P<depth>\d+)(?:_(?P<width>\d+(?:p\d+)?))?_(?P<family>.+)")


def parse_name(name: str) -> tuple[str, int, float, str]:
    """``(kind, depth, width, family)`` of a model name; the inverse of :func:`model_name`.

    Raises
    ------
    ValueError
        A name that is not of the form ``{kind}{depth}[_{width}]_{family}`` with a known kind
        and family; a width omitted outside the ImageNet families.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}: {name!r}")
    match = _NAME.fullmatch(name)
    if match is None or match["kind"] not in KINDS or match["family"] not in _FAMILIES:
        raise ValueError(
            f"unknown model {name!r}; names are {{kind}}{{depth}}[_{{width}}]_{{family}} with "
            f"kind in {sorted(KINDS)} and family in {sorted(_FAMILIES)}, e.g. "
            f"'diracnet34_2_cifar'; list_models() lists the paper's networks"
        )
    family, code = match["family"], match["width"]
    if code is None:
        if "imagenet" not in family:
            raise ValueError(f"model {name!r} needs a width, e.g. '{name[:-len(family)]}1_"
                             f"{family}'")
        width: float = 1
    elif "p" in code:
        width = float(code.replace("p", "."))
    elif code.startswith("0"):
        width = int(code) / 100
    else:
        width = int(code)
    return match["kind"], int(match["depth"]), width, family


def list_models(pattern: str = "*") -> list[str]:
    """The listed model names matching the shell-style ``pattern``, sorted.

    >>> list_models("diracnet*_v2_*")
    ['diracnet18_v2_imagenet', 'diracnet34_2_v2_cifar', 'diracnet34_v2_imagenet']
    """
    names = (model_name(kind, depth, width, family.name)
             for family in _FAMILIES.values() for kind, depth, width in family.listed)
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def family_spec(
    family: str, depth: int, width: float, num_classes: int | None = None, **variant: Any
) -> nets.NetSpec:
    """The :class:`~dirac_core.nets.NetSpec` of ``family`` at ``depth`` and ``width``.

    ``variant`` goes to the family's builder (``parameterization``, ``activation``,
    ``per_channel``, ``policy``, ``head_relu``, ``in_channels``, ``image_size``, ...); a value
    the family fixes may be given only if equal.

    Raises
    ------
    ValueError
        An unknown family; a bad depth, width or variant; a keyword the family fixes, with a
        different value.
    """
    if family not in _FAMILIES:
        raise ValueError(f"model family {family!r} is not accepted; use one of "
                         f"{sorted(_FAMILIES)}")
    fixed = _FAMILIES[family].fixed
    clash = sorted(k for k in fixed.keys() & variant.keys() if variant[k] != fixed[k])
    if clash:
        raise ValueError(
            f"model family {family!r} fixes "
            f"{', '.join(f'{k}={fixed[k]!r}' for k in clash)}; got "
            f"{', '.join(f'{k}={variant[k]!r}' for k in clash)}"
        )
    if num_classes is not None:
        variant["num_classes"] = num_classes
    return _FAMILIES[family].builder(depth, width, **{**variant, **fixed})


def create_spec(name: str, num_classes: int | None = None, **variant: Any) -> nets.NetSpec:
    """The :class:`~dirac_core.nets.NetSpec` of model ``name`` (no weights are made).

    ``variant`` as for :func:`family_spec`; the name's kind sets ``parameterization``.
    """
    kind, depth, width, family = parse_name(name)
    given = variant.setdefault("parameterization", KINDS[kind])
    if given != KINDS[kind]:
        raise ValueError(f"model {name!r} fixes parameterization={KINDS[kind]!r}; got {given!r}")
    return family_spec(family, depth, width, num_classes, **variant)


def family_fixed(family: str) -> dict[str, Any]:
    """The variant keywords ``family`` fixes (``{}`` for the paper's families)."""
    return dict(_FAMILIES[family].fixed)


def family_init(family: str) -> dict[str, Any]:
    """The family's default ``alpha_init``/``beta_init``/``init_std`` for ``build``."""
    return dict(_FAMILIES[family].init)


def create_model(name: str, num_classes: int | None = None, **kwargs: Any) -> DiracNet:
    """Build model ``name`` (see the module docstring for names).

    Parameters
    ----------
    name : str
        A registry name, e.g. ``"diracnet34_2_cifar"`` or ``"diracnet18_075_imagenet"``.
    num_classes : int, optional
        Default: the family's dataset (10 for CIFAR, 1000 for ImageNet).
    **kwargs
        ``alpha_init``, ``beta_init``, ``init_std`` for :func:`~dirac_torch.models.build`
        (family defaults apply), the rest as for :func:`create_spec`.

    Raises
    ------
    ValueError
        An unknown name; a bad depth, width or variant; a keyword the family fixes, with a
        different value.

    Examples
    --------
    >>> create_model("plain10_1_cifar").spec.options["parameterization"]
    'plain'
    """
    init = {**family_init(parse_name(name)[3]),
            **{k: kwargs.pop(k) for k in _INIT_KEYS if k in kwargs}}
    return build(create_spec(name, num_classes, **kwargs), **init)


__all__ = [
    "Family",
    "create_model",
    "create_spec",
    "families",
    "family_fixed",
    "family_init",
    "family_spec",
    "list_models",
    "model_name",
    "parse_name",
    "register_family",
]
