"""The Dirac scales alpha and beta of a model: finding them, decaying them, recording them."""

from __future__ import annotations

from typing import Any

from torch import nn

from dirac_core.validation import one_of

SUFFIX = ".parametrizations.weight.0"


def dirac_parametrizations(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(conv name, parametrization)`` for every Dirac-parameterized conv, in forward order."""
    from dirac_torch.parametrize import DiracParametrization

    return [
        (name.removesuffix(SUFFIX), module) for name, module in model.named_modules()
        if isinstance(module, DiracParametrization)
    ]


def parameter_groups(model: nn.Module, weight_decay: float, decay_scales: bool = True,
                     decay: str = "all") -> list[dict[str, Any]]:
    """SGD parameter groups: weight decay on everything, alpha and beta included unless
    ``decay_scales`` is false (the paper decays them: that is what fades the identity).

    ``decay="matrices"`` (the authors' v2 ``train.py``) decays only tensors of more than one
    dimension: every vector (per-channel alpha and beta, batch norm, biases) goes to a group
    ``"no_decay"`` without weight decay. Otherwise two groups, ``"weights"`` (every other
    parameter, in model order) and ``"dirac_scales"``
    (:func:`dirac_torch.optimizer_groups.dirac_scales`), as checkpoints store them; for three
    groups in your own optimizer use :func:`dirac_torch.param_groups`.
    """
    from dirac_torch.optimizer_groups import dirac_scales

    one_of(decay, "decay", ("all", "matrices"))
    params = [p for p in model.parameters() if p.requires_grad]
    if decay == "matrices":
        vectors = [p for p in params if p.dim() <= 1]
        params = [p for p in params if p.dim() > 1]
        return [{"params": params, "weight_decay": weight_decay, "name": "weights"},
                {"params": vectors, "weight_decay": 0.0, "name": "no_decay"}]
    scale_ids = {id(p) for p in dirac_scales(model)}
    scales = [p for p in params if id(p) in scale_ids]
    others = [p for p in params if id(p) not in scale_ids]
    groups = [{"params": others, "weight_decay": weight_decay, "name": "weights"}]
    if scales:
        groups.append({"params": scales, "weight_decay": weight_decay if decay_scales else 0.0,
                       "name": "dirac_scales"})
    return groups


def scale_snapshot(model: nn.Module) -> dict[str, dict[str, float]]:
    """Mean alpha and beta of each Dirac conv (the mean over channels when per-channel)."""
    snapshot: dict[str, dict[str, float]] = {"alpha": {}, "beta": {}}
    for name, module in dirac_parametrizations(model):
        for key in snapshot:
            snapshot[key][name] = float(getattr(module, key).detach().float().mean())
    return snapshot
