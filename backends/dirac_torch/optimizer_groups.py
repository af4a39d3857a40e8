"""Optimizer parameter groups for a Dirac-parameterized model: scales, weights, the rest.

A converted or built model holds three kinds of learnable tensors, and training recipes treat
them differently:

- ``"dirac_scales"``: the ``alpha`` and ``beta`` of every
  :class:`~dirac_torch.parametrize.DiracParametrization` (in ``state_dict`` they are
  ``<conv>.parametrizations.weight.0.alpha`` and ``.beta``). The paper decays them like every
  other parameter: the decay on ``alpha`` is what fades the identity during training. The
  authors' later "v2" code decays none of them.
- ``"weights"``: every other tensor of two or more dimensions: conv weights (for a Dirac conv
  the free ``W`` at ``parametrizations.weight.original``) and ``Linear`` weights.
- ``"norms_biases"``: everything else (batch-norm scales and shifts, biases, other vectors and
  scalars), which many recipes exempt from weight decay.

:func:`param_groups` returns them as the list ``torch.optim`` optimizers take.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dirac_core.validation import non_negative_number

from .parametrize import DiracParametrization

GROUPS = ("dirac_scales", "weights", "norms_biases")


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    scale_decay: float | None = None,
    norm_decay: float | None = None,
) -> list[dict[str, Any]]:
    """The learnable parameters of ``model`` in three optimizer groups (see the module
    docstring), each with its weight decay.

    Parameters
    ----------
    model : nn.Module
    weight_decay : float
        For ``"weights"``, and for the other groups unless given.
    scale_decay : float, optional
        For ``"dirac_scales"`` (default ``weight_decay``, as in the paper; 0 as in the authors'
        "v2" code).
    norm_decay : float, optional
        For ``"norms_biases"`` (default ``weight_decay``, as in the paper).

    Returns
    -------
    list of dict
        ``{"name", "params", "weight_decay"}`` per non-empty group, in the order of
        :data:`GROUPS`; parameters with ``requires_grad=False`` are left out. Other options
        (``lr``, ...) can be added to each dict before it goes to the optimizer.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``; a decay that is not a real number.
    ValueError
        A negative or non-finite decay (named as its argument).

    Examples
    --------
    >>> import torch, dirac_torch as dt
    >>> net = nn.Sequential(dt.DiracConv2d(8, 8, 3), nn.BatchNorm2d(8))
    >>> groups = param_groups(net, 5e-4, scale_decay=0.0, norm_decay=0.0)
    >>> [(g["name"], len(g["params"]), g["weight_decay"]) for g in groups]
    [('dirac_scales', 2, 0.0), ('weights', 1, 0.0005), ('norms_biases', 2, 0.0)]
    >>> optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    chosen = {"weight_decay": weight_decay, "scale_decay": scale_decay, "norm_decay": norm_decay}
    decay = {name: non_negative_number(weight_decay if value is None else value, name)
             for name, value in chosen.items()}
    decays = {"dirac_scales": decay["scale_decay"], "weights": decay["weight_decay"],
              "norms_biases": decay["norm_decay"]}
    scales = {id(p) for p in dirac_scales(model)}
    members: dict[str, list[nn.Parameter]] = {name: [] for name in GROUPS}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        if id(parameter) in scales:
            members["dirac_scales"].append(parameter)
        elif parameter.dim() >= 2:
            members["weights"].append(parameter)
        else:
            members["norms_biases"].append(parameter)
    return [{"name": name, "params": members[name], "weight_decay": decays[name]}
            for name in GROUPS if members[name]]


def dirac_scales(model: nn.Module) -> list[nn.Parameter]:
    """The learnable ``alpha`` and ``beta`` of every Dirac parametrization in ``model``, in
    module order (the ``"dirac_scales"`` group of :func:`param_groups`).

    Examples
    --------
    >>> import dirac_torch as dt
    >>> [tuple(p.shape) for p in dirac_scales(nn.Sequential(dt.DiracConv2d(4, 4, 3)))]
    [(), ()]
    """
    return [p for m in model.modules() if isinstance(m, DiracParametrization)
            for p in m.parameters(recurse=False)]
