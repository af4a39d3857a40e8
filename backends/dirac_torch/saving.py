"""Saving a DiracNet so that it can be rebuilt anywhere, trained or folded, from one file.

(A model of your own, converted or folded, is saved with the recipe that rebuilds it from a
fresh instance of its class: :mod:`dirac_torch.recipe`; :func:`save_model` and
:func:`load_model` ``(path, model=...)`` take both.)

:func:`save_model` writes the model's ``state_dict`` as safetensors and puts the architecture
(the :class:`dirac_core.nets.NetSpec` as JSON, see :func:`dirac_core.nets.spec_to_dict`) into
the file's metadata under :data:`METADATA_KEY`. :func:`load_model` reads it back: it builds the
network from the spec with :func:`dirac_torch.models.build`, folds it with
:func:`dirac_torch.fold.fold_model` when the file holds a folded network, and loads the
weights (every key must match). Nothing but ``dirac_torch`` and ``safetensors`` is needed: no
training code, and loading never runs code from the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from dirac_core import nets
from dirac_core.untrusted import UntrustedInputError, from_dict, parse_json

from .untrusted import (
    MAX_PARAMETERS,
    check_parameter_count,
    load_safetensors,
    load_state,
    safetensors_header,
)

METADATA_KEY = "dirac_torch.architecture"
# 2: the v1 model families have no ReLU before the global pool, and a spec records its family.
# A format-1 file describes its network layer by layer, so it still builds exactly that
# network; only what the same training settings describe changed (diracnets.saved).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def architecture(model: nn.Module) -> dict[str, Any]:
    """The JSON-ready description :func:`save_model` stores: ``{"format_version", "folded",
    "spec"}``.

    ``folded`` is true for the output of :func:`~dirac_torch.fold.fold_model` (no
    parametrization and no batch norm left).

    Raises
    ------
    TypeError
        ``model`` is not a :class:`~dirac_torch.models.DiracNet` (it has no ``spec``).
    """
    from .models import DiracNet

    if not isinstance(model, DiracNet):
        raise TypeError(
            f"model must be a dirac_torch.models.DiracNet (built from a spec, folded or not), "
            f"got {type(model).__name__}; save_model stores other models with their recipe "
            f"(dirac_torch.recipe)"
        )
    folded = not any(parametrize.is_parametrized(m) or isinstance(m, _BatchNorm)
                     for m in model.modules())
    return {"format_version": FORMAT_VERSION, "folded": folded,
            "spec": nets.spec_to_dict(model.spec)}


def save_model(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` (a DiracNet, or a model of your own; trained, converted or folded) to
    the safetensors file ``path``.

    A DiracNet is stored with its spec; any other model with the recipe that rebuilds its
    structure from a fresh instance of its class (:mod:`dirac_torch.recipe`).

    Returns
    -------
    Path
        ``path``; :func:`load_model` rebuilds the model from it (with ``model=`` a fresh
        instance of your class, for a model of your own).

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``.

    Examples
    --------
    >>> import tempfile, torch
    >>> from dirac_torch.models import diracnet_cifar
    >>> net = diracnet_cifar(10, num_classes=4).eval()
    >>> path = save_model(net, tempfile.mkdtemp() + "/net.safetensors")
    >>> again = load_model(path)
    >>> x = torch.randn(2, 3, 8, 8)
    >>> bool(torch.equal(again(x), net(x)))
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model_bytes(model))
    return path


def model_bytes(model: nn.Module) -> bytes:
    """The safetensors file :func:`save_model` writes, as bytes (to write it your own way,
    say atomically).

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``.
    """
    from safetensors.torch import save

    from .models import DiracNet

    if not isinstance(model, DiracNet):
        from .recipe import recipe_bytes

        return recipe_bytes(model)
    description = architecture(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save(state, {METADATA_KEY: json.dumps(description)})


def read_architecture(path: str | os.PathLike) -> dict[str, Any]:
    """The architecture description stored in the safetensors file ``path``, checked
    (:func:`check_architecture`) without reading the weights.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    dirac_core.untrusted.UntrustedInputError
        (a ``ValueError``) Not a regular safetensors file, no description (the file was not
        written by :func:`save_model`), or a description that is not valid.
    """
    description, _ = _read_header(path)
    return description


def _read_header(path: str | os.PathLike) -> tuple[dict[str, Any], int]:
    """The checked description and the number of values the file stores."""
    metadata, counts = safetensors_header(path)
    source = f"model file {str(path)!r}"
    text = metadata.get(METADATA_KEY)
    if text is None:
        raise UntrustedInputError(
            f"{source} holds weights without an architecture description (no "
            f"{METADATA_KEY!r} metadata): it was not written by dirac_torch.save_model"
        )
    description = parse_json(text, f"{source} ({METADATA_KEY})")
    check_architecture(description, source)
    return description, sum(counts.values())


@dataclasses.dataclass
class _Architecture:
    """What :func:`architecture` writes (the spec is checked by ``nets.spec_from_dict``)."""

    format_version: int
    folded: bool
    spec: dict[str, Any]


def check_architecture(description: Any, source: str) -> nets.NetSpec:
    """The spec of an untrusted :func:`architecture` description, every field checked.

    Raises
    ------
    dirac_core.untrusted.UntrustedInputError
        Not an object, a ``format_version`` not in :data:`READABLE_VERSIONS`, a missing or
        wrongly typed field, or a spec that :func:`dirac_core.nets.spec_from_dict` refuses.
    """
    version = description.get("format_version") if isinstance(description, dict) else None
    if isinstance(description, dict) and (version not in READABLE_VERSIONS
                                          or isinstance(version, bool)):
        raise UntrustedInputError(f"{source} has architecture format_version {version!r}; "
                                  f"this dirac_torch reads {list(READABLE_VERSIONS)}")
    record = from_dict(_Architecture, description, f"{source}, architecture")
    return nets.spec_from_dict(record.spec, f"{source}, architecture spec")


def build_from_architecture(description: dict[str, Any], source: str = "architecture",
                            stored: int | None = None) -> nn.Module:
    """The untrained network an :func:`architecture` description names (folded if it says
    so), checked first; with ``stored`` (the values a weight file holds) the network's
    parameter count must fit in it before anything is built.

    Raises
    ------
    dirac_core.untrusted.UntrustedInputError
        As :func:`check_architecture`; more parameters than ``stored`` or than
        :data:`dirac_torch.untrusted.MAX_PARAMETERS`.
    """
    from .fold import fold_model
    from .models import build

    spec = check_architecture(description, source)
    folded = bool(description.get("folded"))
    check_parameter_count(spec, MAX_PARAMETERS if stored is None else stored, source,
                          folded=folded)
    model = build(spec)
    return fold_model(model) if folded else model


def load_model(
    path: str | os.PathLike, map_location: Any = "cpu", *, model: nn.Module | None = None
) -> nn.Module:
    """Rebuild the model :func:`save_model` wrote to ``path``, weights loaded, in eval mode.

    The file is read as untrusted (:mod:`dirac_torch.untrusted`): its header and description
    are checked, and the described network's parameter count compared with the values the
    file stores, before the network is built.

    Parameters
    ----------
    path : str or os.PathLike
    map_location : str or torch.device
        Where the weights go.
    model : nn.Module, optional
        For a model of your own: a freshly built instance of its class (the file's recipe
        converts and folds it as the saved one was, in place; see
        :func:`dirac_torch.recipe.load_with_recipe`). Not for a DiracNet file.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    dirac_core.untrusted.UntrustedInputError
        (a ``ValueError``) As :func:`read_architecture`; a network larger than the file's
        weights or than :data:`dirac_torch.untrusted.MAX_PARAMETERS`; NaN or infinite
        weights (:func:`dirac_torch.untrusted.stored_tensors`).
    ValueError
        The weights do not fit the described network, or ``model=`` with a DiracNet file.
    TypeError
        A file of a model of your own without ``model=``.
    """
    from .recipe import load_with_recipe, read_recipe

    if model is not None or read_recipe(path) is not None:
        return load_with_recipe(path, model, map_location)

    description, stored = _read_header(path)
    model = build_from_architecture(description, f"model file {str(path)!r}", stored)
    state = load_safetensors(path, map_location)
    load_state(model, state, f"{str(path)!r}")
    return model.eval()
