"""Weights from a PyTorch DiracNet into the Flax one of the same spec.

Both are built from one :class:`dirac_core.nets.NetSpec` with the same layouts, so each spec
layer's arrays carry over as they are, except the classifier's (PyTorch stores ``Linear``
weights ``(out, in)``, Flax ``(in, out)``). Torch is not imported here: the torch model is
only read, through its modules' attributes.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .nn import Conv, DiracConv, DiracNet


def _array(tensor: Any, like: Any) -> Any:
    """A torch tensor as a JAX array of ``like``'s dtype."""
    return jnp.asarray(np.asarray(tensor.detach().cpu().numpy()), dtype=like.dtype)


def _set(variable: nnx.Variable, tensor: Any) -> None:
    if tuple(tensor.shape) != tuple(variable[...].shape):
        raise ValueError(f"shape {tuple(tensor.shape)} does not fit {variable[...].shape}")
    variable[...] = _array(tensor, variable[...])


def _torch_conv(module: Any) -> Any:
    """The convolution inside a torch layer (a plain conv may sit behind an explicit pad)."""
    convs = [m for m in module.modules() if hasattr(m, "weight") and m.weight.dim() > 2]
    return convs[-1]


def load_torch(model: DiracNet, torch_model: Any) -> DiracNet:
    """Copy the parameters and batch-norm statistics of ``torch_model`` (a
    ``dirac_torch.models.DiracNet``) into ``model``, built from the same spec.

    Returns ``model``. Raises ``ValueError`` when the specs differ or an array does not fit.

    Examples
    --------
    >>> import dirac_torch.models as tm
    >>> torch_net = tm.diracnet_cifar(10, in_channels=1, image_size=8)
    >>> net = load_torch(DiracNet(torch_net.spec, rngs=nnx.Rngs(0)), torch_net)
    >>> float(net.layer("group0.1").alpha[...])
    5.0
    """
    if model.spec != torch_model.spec:
        raise ValueError(f"specs differ: {model.spec.name!r} and {torch_model.spec.name!r}")
    for name, layer in zip(model.names, model.layers, strict=True):
        module = torch_model.get_submodule(name)
        if isinstance(layer, DiracConv):
            _set(layer.weight, module.parametrizations.weight.original)
            _set(layer.alpha, module.alpha)
            _set(layer.beta, module.beta)
        elif isinstance(layer, Conv):
            _set(layer.weight, _torch_conv(module).weight)
        elif isinstance(layer, nnx.BatchNorm):
            for ours, theirs in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                                 ("var", "running_var")):
                _set(getattr(layer, ours), getattr(module, theirs))
        elif isinstance(layer, nnx.Linear):
            _set(layer.kernel, module.weight.T)
            _set(layer.bias, module.bias)
        if isinstance(layer, Conv) and layer.bias is not None:
            _set(layer.bias, _torch_conv(module).bias)
    return model
