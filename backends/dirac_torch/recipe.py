"""Saving a user's own model, converted or folded, with the recipe that rebuilds it.

A model that is not a :class:`~dirac_torch.models.DiracNet` has no spec to rebuild it from, and
its trained weights no longer fit the class it was built from: converting adds
``parametrizations.weight.original``/``.0.alpha``/``.0.beta`` keys, folding turns every conv
into one with a bias and every folded batch norm into ``nn.Identity``. So the file stores, next
to the ``state_dict`` (safetensors), the *recipe* that takes a freshly built instance of the
class to the saved structure (JSON metadata under :data:`METADATA_KEY`):

- ``dirac``: every Dirac-parameterized conv, by name, with its
  :class:`~dirac_torch.parametrize.DiracParametrization` options;
- ``identities``: every ``nn.Identity`` (where folding put one in place of a batch norm);
- ``class``: the model's class, for messages.

Loading (:func:`load_with_recipe`, or :func:`dirac_torch.load_model` with ``model=``) takes the
fresh instance from the caller (the code of the class is theirs, and nothing from the file is
ever run), checks the recipe against it, registers the parametrizations, and, when the file
holds a folded model, makes the structure plain (:func:`dirac_torch.fold.plain_structure`) and
puts the identities in place. The weights must then fit exactly (every key and shape).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

from dirac_core import validation as ck
from dirac_core.untrusted import parse_json

from .parametrize import DiracParametrization, register_dirac

METADATA_KEY = "dirac_torch.recipe"
FORMAT_VERSION = 1
# The DiracParametrization options a recipe records, each with the check it must pass.
OPTIONS = {
    "per_channel": lambda value, name: ck.per_channel_value(value),
    "normalize": ck.bool_value,
    "learnable": ck.bool_value,
    "policy": lambda value, name: ck.policy_value(value),
    "eps": ck.positive_number,
}
_KEYS = {"format_version", "class", "dirac", "identities"}


def recipe(model: nn.Module) -> dict[str, Any]:
    """The JSON-ready recipe :func:`recipe_bytes` stores for ``model`` (see the module
    docstring).

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``.

    Examples
    --------
    >>> from dirac_torch.convert import convert_model
    >>> from dirac_torch.fold import fold_model
    >>> net = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    >>> recipe(convert_model(net).model)["dirac"]
    {'0': {'per_channel': False, 'normalize': True, 'learnable': True, 'policy': 'tile', \
'eps': 1e-12}}
    >>> recipe(fold_model(net))["identities"]
    ['1']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    dirac = {}
    for name, module in model.named_modules():
        if isinstance(module, _ConvNd) and parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, DiracParametrization):
                    dirac[name] = {key: getattr(p, key) for key in OPTIONS}
    cls = parametrize.type_before_parametrizations(model)
    return {
        "format_version": FORMAT_VERSION,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "dirac": dirac,
        "identities": [n for n, m in model.named_modules() if type(m) is nn.Identity],
    }


def recipe_bytes(model: nn.Module) -> bytes:
    """``model``'s ``state_dict`` as a safetensors file with its :func:`recipe` in the
    metadata (what :func:`dirac_torch.save_model` writes for a model that is not a DiracNet).

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``.
    """
    from safetensors.torch import save

    description = recipe(model)
    state, storages = {}, set()
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        # a module used in several places has one state_dict entry per place, all the same
        # tensor (and views may share a storage); safetensors stores each entry on its own,
        # so a repeated storage is copied
        state[key] = tensor.clone() if storage in storages and tensor.numel() else tensor
        storages.add(storage)
    return save(state, {METADATA_KEY: json.dumps(description)})


def read_recipe(path: str | os.PathLike) -> dict[str, Any] | None:
    """The recipe stored in the safetensors file ``path``, checked for form (not yet against
    a model), or None if it holds none (a DiracNet file, or weights from elsewhere).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        A recipe that is not valid JSON or not of the form :func:`recipe` writes.
    """
    from .untrusted import safetensors_header

    metadata, _ = safetensors_header(path)
    text = metadata.get(METADATA_KEY)
    if text is None:
        return None
    source = f"model file {str(path)!r}"
    raw = parse_json(text, f"{source}: its {METADATA_KEY!r} metadata")
    return check_recipe(raw, source)


def check_recipe(raw: Any, source: str) -> dict[str, Any]:
    """``raw`` (untrusted) if it has exactly the form :func:`recipe` writes.

    Raises
    ------
    ValueError
        Anything else, naming ``source`` and the field.
    """

    def bad(what: str) -> ValueError:
        return ValueError(f"{source}: the recipe's {what}")

    if not isinstance(raw, dict) or set(raw) != _KEYS:
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise bad(f"fields are {keys}; expected {sorted(_KEYS)}")
    if raw["format_version"] != FORMAT_VERSION or isinstance(raw["format_version"], bool):
        raise bad(f"format_version is {raw['format_version']!r}; this dirac_torch reads "
                  f"{FORMAT_VERSION}")
    if not isinstance(raw["class"], str):
        raise bad(f"class must be a string, got {type(raw['class']).__name__}")
    identities = raw["identities"]
    if not isinstance(identities, list) or not all(isinstance(n, str) for n in identities):
        raise bad("identities must be a list of module names")
    if len(set(identities)) != len(identities):
        raise bad("identities name a module twice")
    if not isinstance(raw["dirac"], dict):
        raise bad(f"dirac must be an object, got {type(raw['dirac']).__name__}")
    for name, options in raw["dirac"].items():
        if not isinstance(options, dict) or set(options) != set(OPTIONS):
            raise bad(f"dirac entry {name!r} must have exactly the options {sorted(OPTIONS)}")
        for key, check in OPTIONS.items():
            try:
                check(options[key], key)
            except (TypeError, ValueError) as exc:
                raise bad(f"dirac entry {name!r}: {exc}") from None
    return raw


def rebuild(model: nn.Module, description: dict[str, Any], state_keys: dict[str, tuple],
            source: str) -> nn.Module:
    """``model`` (a fresh instance of the saved class) brought to the structure a checked
    recipe describes, whichever of unfolded and folded has exactly the keys and shapes
    ``state_keys`` (the file's); changed in place and returned (a new module only when
    ``model`` is itself a convolution).

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``.
    ValueError
        The recipe names a module that ``model`` lacks or holds something else there; the
        weights fit neither structure (the message names the keys that differ).
    """
    from .fold import plain_structure

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a freshly built instance of "
                        f"{description['class']}), got {type(model).__name__}")
    modules = dict(model.named_modules())
    _check_names(description, modules, source)
    with warnings.catch_warnings():
        # A conv where delta is not the identity warned when it was converted; not again here.
        warnings.simplefilter("ignore")
        for name, options in description["dirac"].items():
            conv = modules[name]
            if not parametrize.is_parametrized(conv, "weight"):
                register_dirac(conv, **options)
    if _keys(model) == state_keys:
        return model
    unfolded = _keys(model)
    model = plain_structure(model)
    for name in description["identities"]:
        if isinstance(modules[name], _BatchNorm):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, nn.Identity())
    folded = _keys(model)
    if folded != state_keys:
        closest = min((unfolded, folded), key=lambda keys: _distance(keys, state_keys))
        cls = parametrize.type_before_parametrizations(model)
        raise ValueError(
            f"the weights in {source} (saved from {description['class']}) do not fit "
            f"{cls.__module__}.{cls.__qualname__}, unfolded or folded: "
            f"{_difference(closest, state_keys)}"
        )
    return model


def load_with_recipe(path: str | os.PathLike, model: nn.Module | None,
                     map_location: Any = "cpu") -> nn.Module:
    """Rebuild the model :func:`recipe_bytes` wrote to ``path`` from ``model``, a freshly built
    instance of its class; weights loaded, in eval mode.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    TypeError
        ``model`` is None or not an ``nn.Module``.
    ValueError
        The file holds no recipe (a DiracNet file: load it without ``model=``); a recipe that
        is not valid or does not fit ``model``; weights that fit neither structure.
    """
    from .untrusted import load_safetensors, load_state

    source = f"{str(path)!r}"
    description = read_recipe(path)
    if description is None:
        raise ValueError(
            f"{source} holds no recipe for a model of your own: it was written from a "
            f"DiracNet (load it with load_model(path), without model=) or not by "
            f"dirac_torch.save_model"
        )
    if model is None:
        raise TypeError(
            f"{source} holds a {description['class']} saved with its recipe: pass a freshly "
            f"built instance, load_model(path, model={description['class'].rpartition('.')[2]}"
            f"(...))"
        )
    state = load_safetensors(path, map_location)
    model = rebuild(model, description, _shapes(state), source)
    load_state(model, state, source)
    return model.eval()


def _check_names(description: dict[str, Any], modules: dict[str, nn.Module],
                 source: str) -> None:
    """Every module the recipe names exists in ``modules`` and is of a kind it can be."""
    for name, options in description["dirac"].items():
        conv = modules.get(name)
        if not isinstance(conv, _ConvNd) or conv.transposed:
            raise ValueError(f"{source}: the recipe's Dirac conv {name!r} is "
                             f"{type(conv).__name__} in the model, not a convolution")
        existing = [p for p in getattr(getattr(conv, "parametrizations", None), "weight", [])
                    if isinstance(p, DiracParametrization)]
        if existing and any(getattr(existing[0], k) != v for k, v in options.items()):
            have = {k: getattr(existing[0], k) for k in OPTIONS}
            raise ValueError(f"{source}: conv {name!r} was saved with {options} but the "
                             f"model's has {have}")
    for name in description["identities"]:
        module = modules.get(name)
        if not isinstance(module, _BatchNorm | nn.Identity) or not name:
            raise ValueError(f"{source}: the recipe's folded batch norm {name!r} is "
                             f"{type(module).__name__} in the model, not a batch norm")


def _keys(model: nn.Module) -> dict[str, tuple]:
    return _shapes(model.state_dict())


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _distance(a: dict[str, tuple], b: dict[str, tuple]) -> int:
    return len(set(a.items()) ^ set(b.items()))


def _difference(have: dict[str, tuple], want: dict[str, tuple]) -> str:
    """The keys (and shapes) that differ, first few of each kind."""
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shapes = [f"{k} {want[k]} vs {have[k]}" for k in want if k in have and want[k] != have[k]]
    parts = [f"{label} {items[:3]}{' ...' if len(items) > 3 else ''}"
             for label, items in (("in the file only:", missing),
                                  ("in the model only:", unexpected),
                                  ("shapes (file vs model):", shapes)) if items]
    return "; ".join(parts)
