"""Converting an existing model: its eligible convolutions become Dirac-parameterized.

:func:`convert_model` registers a :class:`~dirac_torch.parametrize.DiracParametrization` on every
``nn.Conv1d/2d/3d`` of a model whose Dirac tensor is its identity (stride 1, the spec's
``"same"`` padding, as many input as output channels; see
:func:`dirac_torch.conv_geometry.identity_problem`) and reports which convolutions it converted
and which it skipped, and why. The inverse is folding: :func:`dirac_torch.fold.fold_model`
turns the trained, converted model back into plain convolutions.

Initialisation
--------------
The paper's ``alpha = 5, beta = 1e-3`` assume a batch norm after every Dirac conv, which undoes
the factor ``alpha``; a converted model usually has none, and ``L`` converted layers then scale
activations by ``alpha ** L``. The defaults here are ``alpha_init=1`` and ``beta_init="keep"``:
``beta`` is the filters' norm, so ``beta * normalize(W) ~ W`` (exactly, with ``per_channel=True``)
and the converted conv starts as ``delta + W``, the original conv with an identity shortcut
around it, keeping the weight it had (trained or freshly initialised). ``docs/torch.md`` gives
the measurements behind this rule.

With ``normalize=False`` (``W_hat = alpha * delta + beta * W``) ``"keep"`` means ``beta = 1``:
the converted conv again starts as ``alpha * delta + W``; with ``learnable=False`` as well it is
the paper's eq. 14 variant, ``W_hat = delta + W`` with fixed scales.

A zero-initialised conv (the last conv of a Fixup-style residual branch) has no direction to
normalize: ``normalize(0) = 0``, so ``beta`` would get a gradient of exactly 0 forever (and ``W``
one scaled by ``1 / eps``). Its all-zero filters get a random direction instead (drawn from
``torch``'s global generator, ``nn.init.kaiming_normal_``); with ``beta_init="keep"`` their
``beta`` stays 0, so the converted conv still starts as ``alpha * delta + W``, and ``beta``
learns. :attr:`Conversion.redrawn` names these convs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

from dirac_core.validation import bool_value

from .conv_geometry import PLAIN_CONVS, identity_problem
from .fold import call_patch
from .parametrize import check_register_keywords, register_dirac

Include = Callable[[str, nn.Module], bool]


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_model` did.

    Attributes
    ----------
    model : nn.Module
        The converted model (the input itself when ``inplace=True``, else a copy).
    converted : tuple of str
        Names of the convolutions now Dirac-parameterized.
    skipped : dict of str to str
        Name of each other convolution -> why it was not converted.
    redrawn : tuple of str
        Converted convolutions that had all-zero filters: those got a random direction so that
        ``beta`` can learn (see the module docstring).
    """

    model: nn.Module
    converted: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    redrawn: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} conv(s), skipped {len(self.skipped)}"]
        lines += [f"  converted  {name}" for name in self.converted]
        lines += [f"  skipped    {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"  redrawn    {name}: all-zero filters got a random direction so that beta "
                  f"can learn" for name in self.redrawn]
        return "\n".join(lines)


def convert_model(
    model: nn.Module,
    *,
    include: Include | None = None,
    inplace: bool = False,
    alpha_init: Any = 1.0,
    beta_init: Any = "keep",
    per_channel: bool = False,
    **kwargs: Any,
) -> Conversion:
    """Dirac-parameterize every eligible convolution of ``model``.

    Parameters
    ----------
    model : nn.Module
    include : callable ``(name, conv) -> bool``, optional
        Which convolutions to consider (default: all); the others are reported as skipped.
    inplace : bool
        Convert ``model`` itself instead of a deep copy.
    alpha_init : float or array-like
        Initial ``alpha`` (default 1; see the module docstring for why not the paper's 5).
    beta_init : float, array-like or "keep"
        Initial ``beta``; ``"keep"`` (the default) sets it to the norm of each filter of the
        conv's current weight with ``per_channel=True``, so that the converted conv starts as
        ``alpha * delta + W`` exactly, and to their mean otherwise (``W`` up to the spread of
        its filter norms); with ``normalize=False`` to 1. All-zero filters get a random
        direction (:attr:`Conversion.redrawn`).
    per_channel : bool
        One ``alpha``/``beta`` per output channel, or (the default) one scalar per conv.
    **kwargs
        Any other keyword of :class:`~dirac_torch.DiracParametrization` (``normalize``,
        ``policy``, ``eps``, ``learnable``).

    Returns
    -------
    Conversion
        The model and the report; ``print(conversion)`` lists both.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``; ``include`` is not callable; a non-bool flag; a
        keyword :func:`~dirac_torch.register_dirac` does not take (``init_std``: the conv's
        weight is ``W``), before any conv is converted.
    ValueError
        ``beta_init`` is a string other than ``"keep"``; bad values of the other keywords.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    >>> print(convert_model(net))
    converted 1 conv(s), skipped 1
      converted  2
      skipped    0: in_channels=3 != out_channels=8: delta is only a partial identity
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_register_keywords(kwargs, "convert_model",
                            ("include", "inplace", "alpha_init", "beta_init", "per_channel"))
    if include is not None and not callable(include):
        raise TypeError(f"include must be a callable (name, conv) -> bool, got {include!r}")
    if isinstance(beta_init, str) and beta_init != "keep":
        raise ValueError(f"beta_init={beta_init!r} is not accepted; use a number, array or 'keep'")
    per_channel = bool_value(per_channel, "per_channel")
    normalize = bool_value(kwargs.pop("normalize", True), "normalize")
    if not bool_value(inplace, "inplace"):
        model = _copy(model)
    converted, skipped, redrawn = [], {}, []
    for name, conv in model.named_modules():
        if not isinstance(conv, _ConvNd):
            continue
        reason = _skip_reason(name, conv, include)
        if reason is not None:
            skipped[name] = reason
            continue
        beta = beta_init
        if isinstance(beta_init, str):
            beta = _filter_norms(conv.weight, per_channel) if normalize else 1.0
        if normalize and _redraw_zero_filters(conv.weight):
            redrawn.append(name)
        register_dirac(
            conv, alpha_init=alpha_init, beta_init=beta, per_channel=per_channel,
            normalize=normalize, **kwargs,
        )
        converted.append(name)
    return Conversion(model, tuple(converted), skipped, tuple(redrawn))


def _copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``; a weight that an old-style ``torch.nn.utils.weight_norm`` hook
    computed (a non-leaf tensor, which ``copy.deepcopy`` refuses) is copied detached: the hook
    computes it afresh before the next call."""
    computed = {id(t): t.detach().clone() for m in model.modules() for t in vars(m).values()
                if isinstance(t, torch.Tensor) and not t.is_leaf}
    return copy.deepcopy(model, computed)


def _old_style_hook(conv: _ConvNd) -> str | None:
    """The old-style weight hook (``torch.nn.utils.weight_norm``/``spectral_norm``) that
    recomputes ``conv.weight`` before each call, which a parametrization cannot wrap."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in conv._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm | SpectralNorm):
            kind = "weight_norm" if isinstance(hook, WeightNorm) else "spectral_norm"
            return (f"old-style torch.nn.utils.{kind} recomputes the weight before each call; "
                    f"use torch.nn.utils.parametrizations.{kind} to convert it")
    return None


def _skip_reason(name: str, conv: _ConvNd, include: Include | None) -> str | None:
    """Why ``conv`` is not converted, or None."""
    if include is not None and not include(name, conv):
        return "excluded by include"
    if conv.transposed:
        return "transposed convolution"
    hooked = _old_style_hook(conv)
    if hooked is not None:
        return hooked
    if parametrize.is_parametrized(conv, "weight"):
        return "weight already parametrized"
    base = PLAIN_CONVS[len(conv.kernel_size)]
    if type(conv).forward is not base.forward:
        return f"{type(conv).__name__} overrides forward"
    patch = call_patch(conv, ("forward", "_conv_forward"))
    if patch is not None:  # the parametrized weight may never reach what runs
        return patch
    return identity_problem(conv, channels=True)


def _redraw_zero_filters(weight: torch.Tensor) -> bool:
    """Give every all-zero output filter of ``weight`` a random (Kaiming-normal) direction in
    place; whether there was one."""
    zero = weight.detach().flatten(1).abs().amax(dim=1) == 0
    if not bool(zero.any()):
        return False
    with torch.no_grad():
        fresh = torch.empty_like(weight)
        nn.init.kaiming_normal_(fresh, nonlinearity="relu")
        weight[zero] = fresh[zero]
    return True


def _filter_norms(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """The L2 norm of each output filter of ``weight`` in float64 (their mean if not per
    channel): the ``beta`` with ``beta * normalize(W) == W``."""
    norms = weight.detach().to(torch.float64).flatten(1).norm(dim=1)
    return norms if per_channel else norms.mean()
