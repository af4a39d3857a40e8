"""Every named DiracNet, defined once: architecture, Dirac tensor, initial values, provenance.

:data:`FAMILIES` is the one home of what a model name means. Every door reads it: the torch
registry (``dirac_torch.registry.create_model``), the model functions
(``dirac_torch.models.diracnet_cifar``, ``diracnet_v2_cifar``, ...), the training presets and
``diracnets train --model``/``--arch``, ``diracnets models``, the authors' weight loaders
(``dirac_torch.pretrained``) and JAX (``dirac_jax.create_model``). A backend only turns a
:class:`~dirac_core.nets.NetSpec` and an :class:`Init` into modules.

A model name is ``{kind}{depth}[_{width}]_{family}``:

- ``kind``: ``diracnet`` (the Dirac parameterization) or ``plain`` (the paper's control: the
  same network with plain He-initialised convolutions);
- ``depth``: ``6n + 4`` for the CIFAR families, 18 or 34 for the ImageNet ones;
- ``width``: the width multiplier: an integer without leading zeros (``2``, ``10``), a fraction
  below 1 as exactly three digits of hundredths (``075`` is 0.75, ``050`` is 0.5), any other
  fraction with ``p`` for the point (``1p5``); omitted at width 1 in the ImageNet families
  (``diracnet18_imagenet``, as the paper writes DiracNet-18). A name that does not spell its
  width this one way (``05``, ``diracnet18_1_imagenet``) is refused with the spelling meant;
- ``family``: a key of :data:`FAMILIES`.

The API, in the order one needs it:

- :func:`parse_name` / :func:`model_name`: a name and its ``(kind, depth, width, family)``;
- :func:`list_models`: the listed networks (the paper's tables and the authors' releases);
- :func:`listed_networks`: those rows with what they reproduce (:class:`Listed`);
- :func:`create_spec`: the architecture of a name; :func:`family_spec` the same from parts;
- :func:`model_init`: the initial values of a name (:class:`Init`), with caller overrides;
  :func:`create_spec_and_init`: both, checked in the one order every framework's
  ``create_model`` follows;
  :func:`check_overrides`: which overrides a network takes (none without a Dirac conv);
- :func:`family`: a :class:`Family` (``.fixed``, ``.defaults``, ``.init``, ``.source``, ...);
  :func:`register_family` adds one.

>>> parse_name("diracnet34_075_paper_imagenet")
('diracnet', 34, 0.75, 'paper_imagenet')
>>> create_spec("diracnet34_2_cifar").name
'DiracNet-34-2'
>>> model_init("diracnet34_2_v2_cifar").alpha
1.0
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import nets
from .initial import check_init
from .validation import is_real, positive_int

KINDS = {"diracnet": "dirac", "plain": "plain"}
OVERRIDES = ("alpha_init", "beta_init", "init_std")

# The authors' repository, szagoruyko/diracnets, at the commits each family reproduces.
V1_JUNE = ("szagoruyko/diracnets@0d0e033 (June 2017, as from 070886e) diracnet.py: "
           "define_diracnet")
V1_AUGUST = ("szagoruyko/diracnets@bd4e1c4 (August 2017 on; CIFAR as in June) diracnet.py: "
             "define_diracnet")
V1_RELEASED = ("szagoruyko/diracnets@af0123c (June 2017) diracnet-export.ipynb: "
               "define_train_diracnet, the released diracnet-18-0.75-br.hkl")
V2 = "szagoruyko/diracnets@df843a7 (v2, January 2018; master 3c6f986) diracnet.py"


@dataclass(frozen=True)
class Init:
    """How a network's parameters start.

    Attributes
    ----------
    alpha, beta : float
        Initial Dirac scales (every entry, scalar or per channel).
    weight : {"normal", "he"}
        The Dirac convolutions' ``W``: ``"normal"`` is ``N(0, init_std**2)`` (the authors' v1),
        ``"he"`` Kaiming-normal, ``std = sqrt(2 / fan_in)`` (their v2). ``W`` is normalized, so
        its scale changes no output, only how fast it learns.
    init_std : float
        The standard deviation of ``"normal"``.
    bn_weight : {"uniform", "ones"}
        Batch-norm gamma: ``U(0, 1)`` as in all the authors' code, or 1 (PyTorch's default).
        Batch-norm beta is 0 either way.
    classifier : {"he", "default"}
        The linear classifier: Kaiming-normal weight and zero bias (the authors'), or the
        framework's default.

    Stem convolutions and the ``plain`` control's convolutions are Kaiming-normal always, as in
    the authors' code.
    """

    alpha: float = 5.0
    beta: float = 1e-3
    weight: str = "normal"
    init_std: float = 0.1
    bn_weight: str = "uniform"
    classifier: str = "he"

    def overridden(self, *, alpha_init: float | None = None, beta_init: float | None = None,
                   init_std: float | None = None) -> Init:
        """These values with a caller's ``alpha_init``, ``beta_init``, ``init_std`` (``None``
        keeps the family's), checked by :func:`dirac_core.initial.check_init`; an
        ``init_std`` makes ``W`` ``N(0, init_std**2)``.

        >>> Init(weight="he").overridden(init_std=0.5)
        Init(alpha=5.0, beta=0.001, weight='normal', init_std=0.5, bn_weight='uniform', \
classifier='he')
        """
        out = self
        if alpha_init is not None:
            out = replace(out, alpha=alpha_init)
        if beta_init is not None:
            out = replace(out, beta=beta_init)
        if init_std is not None:
            out = replace(out, weight="normal", init_std=init_std)
        check_init(out)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (JSON-ready)."""
        return {"alpha": self.alpha, "beta": self.beta, "weight": self.weight,
                "init_std": self.init_std, "bn_weight": self.bn_weight,
                "classifier": self.classifier}


V1_INIT = Init()
V2_INIT = Init(alpha=1.0, beta=0.1, weight="he")


@dataclass(frozen=True)
class Listed:
    """A network :func:`list_models` shows.

    ``table`` names the paper's table whose row it reproduces (``""`` if none) and
    ``published`` the parameter count printed there (``""`` if none), or, for a network no
    table has, in ``published_in`` (the authors' document that prints it).

    Raises
    ------
    ValueError
        A ``published`` count with no ``table`` and no ``published_in`` to say where it is
        printed.
    """

    kind: str
    depth: int
    width: float
    table: str = ""
    published: str = ""
    published_in: str = ""

    def __post_init__(self) -> None:
        if self.published and not (self.table or self.published_in):
            raise ValueError(f"published count {self.published!r} of {self.kind}{self.depth} "
                             "needs a table or published_in saying where it is printed")

    @property
    def published_source(self) -> str:
        """Where ``published`` is printed: ``"the paper's Table 3"`` or ``published_in``."""
        return self.published_in or (f"the paper's {self.table}" if self.published else "")


@dataclass(frozen=True)
class Family:
    """One family of networks: any depth and width of one architecture and initialisation.

    Attributes
    ----------
    name : str
        The name's last part (``cifar``, ``v2_imagenet``, ...).
    dataset : {"cifar", "imagenet"}
        Which builder of :mod:`dirac_core.nets` makes the architecture.
    summary : str
        One line for ``diracnets models``.
    version : {"v1", "v2"}
        The authors' code generation it follows.
    source : str
        The authors' commit and file it reproduces.
    fixed : mapping
        Variant keywords a caller cannot change (the family *is* them).
    defaults : mapping
        Variant keywords a caller may change (``activation``, ``per_channel``, ``policy``,
        ``head_relu``).
    init : Init
    blocks : mapping of depth to blocks per group, optional
        ImageNet only: the family's blocks (each two Dirac layers); absent depths are refused.
    listed : tuple of Listed
    """

    name: str
    dataset: str
    summary: str
    version: str
    source: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    init: Init = V1_INIT
    blocks: Mapping[int, tuple[int, int, int, int]] | None = None
    listed: tuple[Listed, ...] = ()

    def variant(self, **given: Any) -> dict[str, Any]:
        """The builder keywords: defaults, then ``given``, then the fixed ones.

        Raises
        ------
        ValueError
            ``given`` sets a keyword the family fixes to another value.
        """
        clash = sorted(k for k in self.fixed.keys() & given.keys() if given[k] != self.fixed[k])
        if clash:
            raise ValueError(
                f"model family {self.name!r} fixes "
                f"{', '.join(f'{k}={self.fixed[k]!r}' for k in clash)}; got "
                f"{', '.join(f'{k}={given[k]!r}' for k in clash)}"
            )
        return {**self.defaults, **given, **self.fixed}

    def spec(self, depth: int, width: float, num_classes: int | None = None,
             **variant: Any) -> nets.NetSpec:
        """The :class:`~dirac_core.nets.NetSpec` at ``depth`` and ``width``; ``variant`` as
        :meth:`variant` takes it (plus ``parameterization``, ``in_channels``,
        ``image_size``, and for ImageNet ``blocks``, which must be the family's at ``depth``
        where it has them: a named network's blocks are fixed).

        Raises
        ------
        TypeError
            A keyword the family's builder does not take (the message names the network and
            lists the keywords it takes).
        ValueError
            A keyword the family fixes, with another value; ``blocks`` other than the
            family's.
        """
        builder = nets.diracnet_cifar if self.dataset == "cifar" else nets.diracnet_imagenet
        accepted = [key for key, p in inspect.signature(builder).parameters.items()
                    if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(variant) - set(accepted))
        if unknown:
            raise TypeError(
                f"{self.network(depth, width, variant)} takes no keyword "
                f"{', '.join(unknown)}; accepted: num_classes, {', '.join(accepted)} (and "
                f"{', '.join(OVERRIDES)} where weights are made and a conv is Dirac)")
        kw = self.variant(**variant)
        if num_classes is not None:
            kw["num_classes"] = num_classes
        depth = positive_int(depth, "depth")  # 18.0 is no depth, though it is a key of blocks
        if self.blocks is not None:
            if depth not in self.blocks:
                raise ValueError(f"depth={depth!r} is not accepted by model family "
                                 f"{self.name!r}; use one of {sorted(self.blocks)}")
            given = kw.setdefault("blocks", self.blocks[depth])
            if not (isinstance(given, tuple | list) and tuple(given) == self.blocks[depth]):
                raise ValueError(
                    f"{self.network(depth, width, variant)} has blocks={self.blocks[depth]}; "
                    f"got blocks={given!r} (a named network's blocks are fixed)")
            kw["blocks"] = self.blocks[depth]
        spec = builder(depth, width, **kw)
        spec.options["family"] = self.name
        return spec

    def network(self, depth: Any, width: Any, variant: Mapping[str, Any]) -> str:
        """The network of this family at ``depth``, ``width`` and ``variant`` (its
        ``parameterization``), as an error names it: its registry name where it has one, else
        the family, depth, width and parameterization.

        >>> family("cifar").network(10, 1, {"parameterization": "resnet"})
        "model family 'cifar' at depth=10, width=1, parameterization='resnet'"
        """
        kind = next((k for k, v in KINDS.items() if v == variant.get("parameterization",
                                                                     "dirac")), None)
        if kind and isinstance(depth, int) and is_real(width) and width > 0:
            return f"model {model_name(kind, depth, width, self.name)!r}"
        where = f"model family {self.name!r} at depth={depth!r}, width={width!r}"
        given = variant.get("parameterization", "dirac")
        return where if given == "dirac" else f"{where}, parameterization={given!r}"


_V2_VARIANT = {"activation": "relu", "per_channel": True, "policy": "min", "head_relu": True}
_V1_VARIANT = {"activation": "ncrelu", "per_channel": False, "policy": "tile",
               "head_relu": False}
PAPER_BLOCKS = {18: nets.IMAGENET_LAYERS[18], 34: nets.PAPER_IMAGENET_34}

FAMILIES: dict[str, Family] = {}


def register_family(new: Family) -> Family:
    """Add ``new`` to :data:`FAMILIES` (a name is registered once).

    Raises
    ------
    ValueError
        ``new.name`` is taken, or is not of lowercase letters, digits and underscores.
    """
    if new.name in FAMILIES:
        raise ValueError(f"model family {new.name!r} is already registered")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", new.name) or new.dataset not in ("cifar",
                                                                              "imagenet"):
        raise ValueError(f"model family name={new.name!r} (dataset={new.dataset!r}) is not "
                         "accepted; use lowercase letters, digits and _, dataset cifar or "
                         "imagenet")
    FAMILIES[new.name] = new
    return new


for _family in (
    Family(
        "cifar", "cifar", "The paper's CIFAR DiracNet (v1: NCReLU, scalar alpha 5 / beta 1e-3, "
        "tiled Dirac tensor, no ReLU before the pool)", "v1", V1_JUNE, defaults=_V1_VARIANT,
        listed=(Listed("diracnet", 34, 2, "Table 2", "3.7M"),
                Listed("diracnet", 34, 8, "Table 2", "59M"),
                Listed("plain", 34, 2, "Figure 2 (plain control)"),
                Listed("diracnet", 28, 10)),
    ),
    Family(
        "relu_cifar", "cifar", "The paper's CIFAR DiracNet with ReLU instead of NCReLU "
        "(section 3.4)", "v1", V1_JUNE + ", F.relu for ncrelu",
        fixed={"activation": "relu"}, defaults=_V1_VARIANT,
        listed=(Listed("diracnet", 34, 2),),
    ),
    Family(
        "v2_cifar", "cifar", "The authors' v2 CIFAR DiracNet (ReLU, per-channel alpha 1 / beta "
        "0.1, policy='min' delta, W Kaiming)", "v2", V2, fixed=_V2_VARIANT, init=V2_INIT,
        listed=(Listed("diracnet", 34, 2), Listed("diracnet", 28, 10)),
    ),
    Family(
        "imagenet", "imagenet", "ImageNet DiracNet-18/34 of the authors' later v1 code (blocks "
        "2-2-2-2 / 3-4-6-3, scalar scales, no ReLU before the pool)", "v1", V1_AUGUST,
        defaults=_V1_VARIANT, blocks={18: (2, 2, 2, 2), 34: (3, 4, 6, 3)},
        listed=(Listed("diracnet", 18, 1), Listed("diracnet", 34, 1),
                Listed("diracnet", 18, 0.75), Listed("diracnet", 34, 0.75),
                Listed("diracnet", 34, 0.5), Listed("plain", 18, 1), Listed("plain", 34, 1)),
    ),
    Family(
        "jun2017_imagenet", "imagenet", "ImageNet DiracNet of the authors' June-2017 v1 code "
        "(its 34 has blocks 3-4-6-5; scalar scales, no ReLU before the pool)", "v1", V1_JUNE,
        defaults=_V1_VARIANT, blocks=PAPER_BLOCKS,
        listed=(Listed("diracnet", 34, 0.75), Listed("diracnet", 34, 0.5)),
    ),
    Family(
        "paper_imagenet", "imagenet", "The paper's ImageNet DiracNets (Table 3), as the "
        "authors' released file: per-filter beta, scalar alpha, blocks 3-4-6-5 for 34, ReLU "
        "before the pool", "v1", V1_RELEASED,
        fixed={"per_channel": "beta", "head_relu": True}, defaults=_V1_VARIANT,
        blocks=PAPER_BLOCKS,
        listed=(Listed("diracnet", 18, 0.75, "Table 3", "12.8M"),
                Listed("diracnet", 34, 0.5, "Table 3", "15.5M"),
                Listed("diracnet", 34, 0.75, "Table 3", "34.8M")),
    ),
    Family(
        "v2_imagenet", "imagenet", "The authors' v2 ImageNet DiracNet-18/34, the networks of "
        "their released v2 weights", "v2", V2, fixed=_V2_VARIANT, init=V2_INIT,
        blocks={18: (2, 2, 2, 2), 34: (3, 4, 6, 3)},
        listed=(Listed("diracnet", 18, 1, "", "11.7M",
                       "the authors' v2 notebook (diracnet-export.ipynb)"),
                Listed("diracnet", 34, 1)),
    ),
):
    register_family(_family)


def family(name: str) -> Family:
    """The registered family ``name``.

    Raises
    ------
    ValueError
        An unknown family, with the closest registered name.
    """
    if name not in FAMILIES:
        raise ValueError(f"model family {name!r} is not accepted; use one of "
                         f"{sorted(FAMILIES)}{_suggest(name, FAMILIES)}")
    return FAMILIES[name]


def _suggest(given: str, choices: Any) -> str:
    close = difflib.get_close_matches(given, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def width_code(width: float) -> str:
    """The width as a name spells it: ``2``, ``075`` (0.75), ``1p5``.

    >>> [width_code(w) for w in (2, 0.75, 0.5, 1.5)]
    ['2', '075', '050', '1p5']
    """
    if float(width).is_integer():
        return str(int(width))
    if width < 1 and float(round(width * 100, 6)).is_integer():
        return f"{round(width * 100):03d}"
    return repr(float(width)).replace(".", "p")


def model_name(kind: str, depth: int, width: float, family_name: str) -> str:
    """The registry name of ``(kind, depth, width, family)``.

    >>> model_name("diracnet", 34, 0.5, "imagenet")
    'diracnet34_050_imagenet'
    """
    if width == 1 and family(family_name).dataset == "imagenet":
        return f"{kind}{depth}_{family_name}"
    return f"{kind}{depth}_{width_code(width)}_{family_name}"


_NAME = re.compile(r"(?P<kind>[a-z]+?)(?P<depth>\d+)(?:_(?P<width>\d+(?:p\d+)?))?_(?P<family>.+)")


def _width_of(code: str, name: str) -> float:
    """The width a code spells, refusing every spelling but the canonical one."""
    if "p" in code:
        width = float(code.replace("p", "."))
    elif code.startswith("0"):
        if len(code) != 3 or code == "000":
            meant = code.ljust(3, "0")
            hint = (f" (did you mean {meant!r}, width {int(meant) / 100:g}?)"
                    if len(code) < 3 and code.strip("0") else "")
            raise ValueError(
                f"model {name!r}: width code {code!r} is not accepted; a width below 1 is "
                f"three digits of hundredths: '075' is 0.75, '050' is 0.5, '005' is 0.05{hint}")
        width = int(code) / 100
    else:
        width = int(code)
    if width <= 0 or width_code(width) != code:
        raise ValueError(f"model {name!r}: width code {code!r} is not accepted; width "
                         f"{width:g} is spelled {width_code(width)!r}")
    return width


def parse_name(name: str) -> tuple[str, int, float, str]:
    """``(kind, depth, width, family)`` of a model name; the inverse of :func:`model_name`.

    Raises
    ------
    TypeError
        ``name`` is not a str.
    ValueError
        A name not of the form ``{kind}{depth}[_{width}]_{family}`` with a known kind and
        family, or not spelled as :func:`model_name` spells it; the message gives the name
        meant where one is close.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}: {name!r}")
    match = _NAME.fullmatch(name)
    if match is None or match["kind"] not in KINDS or match["family"] not in FAMILIES:
        hint = _suggest(name, list_models())
        if match is not None and match["kind"] in KINDS and not hint:
            hint = _suggest(match["family"], FAMILIES)
        raise ValueError(
            f"unknown model {name!r}; names are {{kind}}{{depth}}[_{{width}}]_{{family}} with "
            f"kind in {sorted(KINDS)} and family in {sorted(FAMILIES)}, e.g. "
            f"'diracnet34_2_cifar'{hint}; list_models() lists the paper's networks"
        )
    kind, depth, fam, code = match["kind"], int(match["depth"]), match["family"], match["width"]
    if code is None:
        if FAMILIES[fam].dataset != "imagenet":
            raise ValueError(f"model {name!r} needs a width, e.g. "
                             f"{model_name(kind, depth, 1, fam)!r}")
        width: float = 1
    else:
        width = _width_of(code, name)
    canonical = model_name(kind, depth, width, fam)
    if canonical != name:
        raise ValueError(f"model {name!r} is spelled {canonical!r}")
    return kind, depth, width, fam


def listed_networks(pattern: str = "*") -> list[tuple[str, Family, Listed]]:
    """``(name, family, row)`` of every listed network whose name matches ``pattern``."""
    rows = ((model_name(row.kind, row.depth, row.width, fam.name), fam, row)
            for fam in FAMILIES.values() for row in fam.listed)
    return sorted((r for r in rows if fnmatch.fnmatchcase(r[0], pattern)), key=lambda r: r[0])


def list_models(pattern: str = "*") -> list[str]:
    """The listed model names matching the shell-style ``pattern``, sorted.

    >>> list_models("diracnet*_v2_*")
    ['diracnet18_v2_imagenet', 'diracnet28_10_v2_cifar', 'diracnet34_2_v2_cifar', \
'diracnet34_v2_imagenet']
    """
    return [name for name, _, _ in listed_networks(pattern)]


def family_spec(family_name: str, depth: int, width: float, num_classes: int | None = None,
                **variant: Any) -> nets.NetSpec:
    """The :class:`~dirac_core.nets.NetSpec` of ``family_name`` at ``depth`` and ``width``.

    ``variant`` goes to the family's builder (``parameterization``, ``activation``,
    ``per_channel``, ``policy``, ``head_relu``, ``in_channels``, ``image_size``, ...); a value
    the family fixes may be given only if equal.

    Raises
    ------
    ValueError
        An unknown family; a bad depth, width or variant; a keyword the family fixes, with a
        different value.
    """
    return family(family_name).spec(depth, width, num_classes, **variant)


def create_spec(name: str, num_classes: int | None = None, **variant: Any) -> nets.NetSpec:
    """The :class:`~dirac_core.nets.NetSpec` of model ``name`` (no weights are made).

    ``variant`` as for :func:`family_spec`; the name's kind sets ``parameterization``.

    Raises
    ------
    ValueError
        As :func:`parse_name` and :func:`family_spec`; a ``parameterization`` the name's kind
        contradicts.
    """
    kind, depth, width, fam = parse_name(name)
    given = variant.setdefault("parameterization", KINDS[kind])
    if given != KINDS[kind]:
        raise ValueError(f"model {name!r} fixes parameterization={KINDS[kind]!r}; got {given!r}")
    return family_spec(fam, depth, width, num_classes, **variant)


def model_init(name: str, **overrides: float | None) -> Init:
    """The initial values of model ``name``: its family's :class:`Init` with ``overrides``
    (``alpha_init``, ``beta_init``, ``init_std``; ``None`` keeps the family's), checked
    against the network's convolutions as :func:`create_spec_and_init` checks them.

    Raises
    ------
    TypeError
        An unknown override keyword (the message lists the accepted ones).
    ValueError
        An unknown name; an override the network cannot take (a ``plain`` network takes
        none).
    """
    _check_override_names(overrides)
    return create_spec_and_init(name, None, **overrides)[1]


def create_spec_and_init(name: str, num_classes: int | None = None,
                         **kwargs: Any) -> tuple[nets.NetSpec, Init]:
    """The spec and the initial values of model ``name``: what every framework's
    ``create_model`` builds, so a call wrong twice gets the same first error from each.

    The architecture is checked first (:func:`create_spec`: the name, the depth, the variant
    keywords), then the overrides against the network it made (:func:`spec_init`): whether an
    ``alpha_init`` can be taken depends on the network's convolutions.

    Parameters
    ----------
    name : str
        A registry name (:func:`parse_name`).
    num_classes : int, optional
        Default: the family's dataset's.
    **kwargs
        ``alpha_init``, ``beta_init``, ``init_std`` (:data:`OVERRIDES`) and the variant
        keywords of :func:`create_spec`.

    Returns
    -------
    tuple of NetSpec and Init

    Raises
    ------
    TypeError, ValueError
        As :func:`create_spec`, then as :func:`spec_init`.

    Examples
    --------
    >>> create_spec_and_init("plain11_1_cifar", alpha_init=2.0)
    Traceback (most recent call last):
    ...
    ValueError: depth=11 is not accepted; use 6n + 4 with n >= 1 (10, 16, 28, 34, ...)
    >>> spec, init = create_spec_and_init("diracnet10_1_cifar", beta_init=0.5)
    >>> spec.name, init.beta
    ('DiracNet-10-1', 0.5)
    """
    overrides = {k: kwargs.pop(k) for k in OVERRIDES if k in kwargs}
    spec = create_spec(name, num_classes, **kwargs)
    return spec, spec_init(spec, **overrides)


def spec_init(spec: nets.NetSpec, init: Init | None = None, **overrides: float | None) -> Init:
    """The :class:`Init` a builder uses for ``spec``: ``init`` if given, else that of the
    family that made it (:func:`family_spec`, ``spec.options["family"]``), or the paper's v1
    values for a spec made otherwise; with ``overrides`` (checked by
    :func:`check_spec_overrides`, the result by :meth:`Init.overridden`). The one path of
    every framework's builders."""
    check_spec_overrides(spec, **overrides)
    if init is None:
        name = spec.options.get("family")
        init = FAMILIES[name].init if name in FAMILIES else V1_INIT
    return init.overridden(**overrides)


def accepted_overrides(parameterizations: Iterable[str]) -> tuple[str, ...]:
    """Which of :data:`OVERRIDES` a network whose convolutions have ``parameterizations``
    takes: all three where one is ``"dirac"``, none otherwise.

    ``alpha_init`` and ``beta_init`` are the starting Dirac scales and ``init_std`` the
    standard deviation of a Dirac convolution's ``W``; they set nothing else. ``"plain"``
    convolutions (the paper's control) and the stem (``"none"``) are He-initialised, and the
    eq. 14 ``"resnet"`` convolutions have fixed ``alpha = beta = 1`` and a He-initialised
    ``W`` (the layer's own), so a network without a ``"dirac"`` convolution takes none: an
    override there would be recorded and ignored.

    >>> accepted_overrides({"none", "plain"})
    ()
    >>> accepted_overrides({"none", "dirac"})
    ('alpha_init', 'beta_init', 'init_std')
    """
    return OVERRIDES if "dirac" in set(parameterizations) else ()


def check_overrides(network: str, parameterizations: Iterable[str],
                    **overrides: float | None) -> None:
    """The one rule of which initial-value overrides a network takes (see
    :func:`accepted_overrides`); ``None`` is no override and always accepted. Every door
    that takes ``alpha_init``, ``beta_init`` or ``init_std`` reads it: :func:`model_init`,
    :func:`spec_init`, ``dirac_torch.models.build`` (so every model function and
    ``create_model``), the training settings.

    Parameters
    ----------
    network : str
        How the message names the network (``"model 'plain10_1_cifar'"``).
    parameterizations : iterable of str
        Its convolutions' parameterizations.
    **overrides
        ``alpha_init``, ``beta_init``, ``init_std``.

    Raises
    ------
    TypeError
        An override keyword that is not one of :data:`OVERRIDES`.
    ValueError
        An override given (not None) that the network cannot take; the message names the
        network and the override.

    Examples
    --------
    >>> check_overrides("model 'plain10_1_cifar'", {"none", "plain"}, alpha_init=3.0)
    Traceback (most recent call last):
    ...
    ValueError: model 'plain10_1_cifar' has no Dirac convolution (its convolutions are \
'none', 'plain'), so alpha_init=3.0 would set nothing; it takes none of alpha_init, \
beta_init, init_std (leave them None)
    """
    _check_override_names(overrides)
    kinds = sorted(set(parameterizations))
    accepted = accepted_overrides(kinds)
    refused = [k for k in OVERRIDES if overrides.get(k) is not None and k not in accepted]
    if refused:
        given = ", ".join(f"{k}={overrides[k]!r}" for k in refused)
        raise ValueError(
            f"{network} has no Dirac convolution (its convolutions are "
            f"{', '.join(map(repr, kinds))}), so {given} would set nothing; it takes none of "
            f"{', '.join(OVERRIDES)} (leave them None)")


def check_spec_overrides(spec: nets.NetSpec, **overrides: float | None) -> None:
    """:func:`check_overrides` for the network ``spec`` describes, named by its registry name
    where it has one."""
    kinds = {layer.parameterization for _, layer in spec.layers() if isinstance(layer, nets.Conv)}
    options = spec.options
    fam = FAMILIES.get(options.get("family", ""))
    if fam is not None and "depth" in options and "width" in options:
        network = fam.network(options["depth"], options["width"], options)
    else:
        network = f"network {spec.name!r}"
    check_overrides(network, kinds, **overrides)


def _check_override_names(overrides: Mapping[str, Any]) -> None:
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"unknown initial-value keyword {', '.join(unknown)}; accepted: "
                        f"{', '.join(OVERRIDES)}")


__all__ = [
    "FAMILIES",
    "KINDS",
    "Family",
    "Init",
    "Listed",
    "accepted_overrides",
    "check_overrides",
    "check_spec_overrides",
    "create_spec",
    "create_spec_and_init",
    "family",
    "family_spec",
    "list_models",
    "listed_networks",
    "model_init",
    "model_name",
    "parse_name",
    "register_family",
    "spec_init",
    "width_code",
]
