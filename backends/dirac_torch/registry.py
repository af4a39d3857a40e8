"""Every DiracNet by name, in the style of timm: :func:`list_models`, :func:`create_model`.

What a name means (architecture, Dirac tensor, initial values, the authors' commit it
reproduces) is defined once, in :mod:`dirac_core.catalog`, for every backend; this module turns
it into PyTorch modules. Names are ``{kind}{depth}[_{width}]_{family}`` (see
:mod:`dirac_core.catalog`); :func:`list_models` lists the networks of the paper's tables and of
the authors' releases, :func:`create_model` accepts any depth and width of a family.

>>> create_model("diracnet34_2_cifar", num_classes=100).spec.name
'DiracNet-34-2'
>>> "diracnet18_075_imagenet" in list_models("*imagenet")
True
"""

from __future__ import annotations

from typing import Any

from dirac_core import catalog
from dirac_core.catalog import (
    KINDS,
    create_spec,
    family_spec,
    list_models,
    model_name,
    parse_name,
)

from .models import DiracNet, build


def families() -> dict[str, str]:
    """Every family name with its one-line description."""
    return {name: family.summary for name, family in catalog.FAMILIES.items()}


def family_fixed(family: str) -> dict[str, Any]:
    """The variant keywords ``family`` fixes."""
    return dict(catalog.family(family).fixed)


def create_model(name: str, num_classes: int | None = None, **kwargs: Any) -> DiracNet:
    """Build model ``name`` (see :mod:`dirac_core.catalog` for names).

    Parameters
    ----------
    name : str
        A registry name, e.g. ``"diracnet34_2_cifar"`` or ``"diracnet18_075_imagenet"``.
    num_classes : int, optional
        Default: the family's dataset (10 for CIFAR, 1000 for ImageNet).
    **kwargs
        ``alpha_init``, ``beta_init``, ``init_std`` replace the family's initial values
        (:class:`dirac_core.catalog.Init`); the rest as for
        :func:`dirac_core.catalog.create_spec`.

    Raises
    ------
    ValueError
        An unknown or misspelt name (the message gives the name meant); a bad depth, width or
        variant; a keyword the family fixes, with a different value; then an override the
        network cannot take (:func:`dirac_core.catalog.create_spec_and_init`, the order of
        ``dirac_jax.create_model`` too).

    Examples
    --------
    >>> create_model("plain10_1_cifar").spec.options["parameterization"]
    'plain'
    """
    spec, init = catalog.create_spec_and_init(name, num_classes, **kwargs)
    return build(spec, init=init)


__all__ = [
    "KINDS",
    "create_model",
    "create_spec",
    "families",
    "family_fixed",
    "family_spec",
    "list_models",
    "model_name",
    "parse_name",
]
