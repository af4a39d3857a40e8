"""Weights between a PyTorch DiracNet and the Flax one of the same spec, both ways.

Both are built from one :class:`dirac_core.nets.NetSpec` with the same layouts, so each spec
layer's arrays carry over as they are, except the classifier's (PyTorch stores ``Linear``
weights ``(out, in)``, Flax ``(in, out)``). Folded models carry over too, and so does the
mode (train or eval, per batch norm), which decides what a call computes. Each side gets copies:
torch updates its tensors in place (optimizer steps, a train-mode forward's running statistics),
which must not reach arrays JAX treats as immutable. bfloat16, which NumPy lacks, crosses
through the torch backend's NumPy carrier (``ml_dtypes``' bfloat16 one way, float32 the other,
both exact). :func:`load_torch` imports torch only once it holds a torch DiracNet (so torch is
loaded already); :func:`to_torch` builds one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .nn import Conv, DiracConv, DiracNet

if TYPE_CHECKING:
    import torch


def _array(tensor: Any, like: jax.Array) -> jax.Array:
    """A torch tensor as a JAX array of ``like``'s dtype, sharing no memory with it."""
    from dirac_torch.backend import TorchBackend

    # to_numpy may view the tensor's storage; astype always copies (jnp.asarray would not).
    return jnp.asarray(TorchBackend().to_numpy(tensor).astype(like.dtype))


def _set(variable: nnx.Variable[jax.Array], tensor: Any) -> None:
    if tuple(tensor.shape) != tuple(variable[...].shape):
        raise ValueError(f"shape {tuple(tensor.shape)} does not fit {variable[...].shape}")
    variable[...] = _array(tensor, variable[...])


def _torch_conv(module: Any) -> Any:
    """The convolution inside a torch layer (a plain conv may sit behind an explicit pad)."""
    convs = [m for m in module.modules() if hasattr(m, "weight") and m.weight.dim() > 2]
    return convs[-1]


def _check_flax(model: Any) -> None:
    if not isinstance(model, DiracNet):
        raise TypeError(f"model must be a dirac_jax.nn.DiracNet, got {type(model).__name__}")


def _checked_torch(torch_model: Any) -> Any:
    """The torch DiracNet ``torch_model`` is, or wraps (``torch.compile``'s module, as
    ``fold_model`` and ``save_model`` take it)."""
    # A class that was never imported has no instances: torch stays unimported for a wrong
    # argument.
    models = sys.modules.get("dirac_torch.models")
    inner = getattr(torch_model, "_orig_mod", torch_model)
    if models is None or not isinstance(inner, models.DiracNet):
        raise TypeError(
            "torch_model must be a dirac_torch.models.DiracNet (or dirac_torch.fold_model of "
            f"one, or torch.compile of either), got {type(torch_model).__name__}"
        )
    return inner


def is_folded(model: DiracNet) -> bool:
    """Whether ``model`` is :func:`~dirac_jax.nn.fold_model`'s output (no batch norms left)."""
    return not any(isinstance(layer, nnx.BatchNorm) for layer in model.layers)


def _torch_is_folded(torch_model: Any) -> bool:
    return not any(type(m).__name__.startswith("BatchNorm") for m in torch_model.modules())


def _pairs(
    model: DiracNet, torch_model: Any
) -> Iterator[tuple[Conv | nnx.BatchNorm | nnx.Linear, Any]]:
    """``(Flax layer, torch module)`` of every layer with arrays, by the spec's names; folded
    models pair too (torch keeps a folded batch norm's place as an ``Identity``)."""
    if model.spec != torch_model.spec:
        raise ValueError(f"specs differ: {model.spec.name!r} and {torch_model.spec.name!r}")
    ours, theirs = is_folded(model), _torch_is_folded(torch_model)
    if ours != theirs:
        folded, other = ("the torch model", "dirac_jax.nn.fold_model(net)") if theirs else (
            "the Flax model", "dirac_torch.fold_model(model)")
        raise ValueError(f"{folded} is folded and the other is not; fold both first: {other}")
    for name, layer in zip(model.names, model.layers, strict=True):
        if isinstance(layer, Conv | nnx.BatchNorm | nnx.Linear):
            yield layer, torch_model.get_submodule(name)


def _arrays(
    layer: nnx.Module, module: Any
) -> Iterator[tuple[nnx.Variable[jax.Array], Any, bool]]:
    """``(Flax variable, torch tensor, transpose)`` of each array of one layer."""
    if isinstance(layer, DiracConv):
        yield layer.weight, module.parametrizations.weight.original, False
        yield layer.alpha, module.alpha, False
        yield layer.beta, module.beta, False
    elif isinstance(layer, Conv):
        yield layer.weight, _torch_conv(module).weight, False
    elif isinstance(layer, nnx.BatchNorm):
        for ours, theirs in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                             ("var", "running_var")):
            yield getattr(layer, ours), getattr(module, theirs), False
    elif isinstance(layer, nnx.Linear):
        yield layer.kernel, module.weight, True
        assert layer.bias is not None  # the spec's classifiers have a bias
        yield layer.bias, module.bias, False
    if isinstance(layer, Conv) and layer.bias is not None:
        yield layer.bias, _torch_conv(module).bias, False


def load_torch(model: DiracNet, torch_model: Any) -> DiracNet:
    """Copy the parameters and batch-norm statistics of ``torch_model`` (a
    ``dirac_torch.models.DiracNet``, or ``dirac_torch.fold_model`` of one) into ``model``,
    built from the same spec (and folded with :func:`~dirac_jax.nn.fold_model` when the torch
    model is), and its mode: each batch norm of ``model`` normalizes with its batch's
    statistics (``train()``) or its running ones (``eval()``) as its torch twin does
    (``.training``), so that both compute the same function.

    Returns ``model``.

    Raises
    ------
    TypeError
        ``model`` is not a :class:`~dirac_jax.nn.DiracNet`, or ``torch_model`` not a
        ``dirac_torch.models.DiracNet`` (a bare module or a ``state_dict``, say).
    ValueError
        The specs differ, one model is folded and the other not, or an array does not fit.

    Examples
    --------
    >>> import dirac_torch.models as tm
    >>> torch_net = tm.diracnet_cifar(10, in_channels=1, image_size=8)
    >>> net = load_torch(DiracNet(torch_net.spec, rngs=nnx.Rngs(0)), torch_net)
    >>> float(net.layer("group0.1").alpha[...])
    5.0
    """
    _check_flax(model)
    torch_model = _checked_torch(torch_model)
    for layer, module in _pairs(model, torch_model):
        for variable, tensor, transpose in _arrays(layer, module):
            _set(variable, tensor.T if transpose else tensor)
        if isinstance(layer, nnx.BatchNorm):  # what layer.train() / .eval() set
            layer.use_running_average = not module.training
    return model


def to_torch(model: DiracNet) -> torch.nn.Module:
    """The PyTorch model of ``model`` (folded if it is): ``dirac_torch.models.build`` of its
    spec and initial values, holding its arrays, in its mode (``.training`` as each batch norm
    of ``model`` is in train mode; a folded model, which has none, comes back in eval mode).
    Imports torch.

    Raises
    ------
    TypeError
        ``model`` is not a :class:`~dirac_jax.nn.DiracNet`.

    Examples
    --------
    >>> from dirac_core import nets
    >>> net = DiracNet(nets.diracnet_cifar(10, in_channels=1, image_size=8), rngs=nnx.Rngs(0))
    >>> to_torch(net).get_submodule("group0.1").alpha.item()
    5.0
    >>> net.eval()
    >>> to_torch(net).training
    False
    """
    import torch

    from dirac_torch.backend import TorchBackend
    from dirac_torch.fold import fold_model
    from dirac_torch.models import build

    _check_flax(model)
    first = cast(Conv, model.layers[0])  # every spec opens with a convolution
    dtype = getattr(torch, str(first.weight[...].dtype))
    torch_model: torch.nn.Module = build(model.spec, init=model.init).to(dtype)
    if is_folded(model):
        torch_model = fold_model(torch_model.eval())
    else:  # the model's mode is its batch norms' (net.train() / net.eval() set them all)
        torch_model.train(any(_training(layer) for layer in model.layers
                              if isinstance(layer, nnx.BatchNorm)))
    with torch.no_grad():
        for layer, module in _pairs(model, torch_model):
            for variable, tensor, transpose in _arrays(layer, module):
                value = TorchBackend().from_numpy(np.asarray(variable[...]))
                if tuple(value.shape) != tuple(tensor.T.shape if transpose else tensor.shape):
                    raise ValueError(f"shape {tuple(value.shape)} does not fit "
                                     f"{tuple(tensor.shape)}")
                tensor.copy_(value.T if transpose else value)
            if isinstance(layer, nnx.BatchNorm):
                module.train(_training(layer))
    return torch_model


def _training(bn: nnx.BatchNorm) -> bool:
    """Whether a Flax batch norm is in train mode (normalizes with, and updates from, the
    batch's statistics), as ``torch.nn.Module.training``."""
    return not bn.use_running_average
