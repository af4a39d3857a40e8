"""dirac_torch: DiracNets in PyTorch: functional ops, the Dirac parametrization and layers.

``W_hat = alpha * delta + beta * normalize(W)`` (Zagoruyko & Komodakis 2017, eq. 13) for any
``nn.Conv1d/2d/3d`` (:func:`register_dirac`) or as ready layers (:class:`DiracConv2d`, ...),
matching the NumPy specification in :mod:`dirac_core` exactly. Importing this package imports
torch and the layers; the model builders, conversion, folding, saving, ONNX export and the
``torch`` backend of ``dirac_core`` load on first use.

>>> import torch, dirac_torch as dt
>>> net = torch.nn.Sequential(dt.NCReLU(), dt.DiracConv2d(32, 16, 3))
>>> net(torch.randn(1, 16, 8, 8)).shape
torch.Size([1, 16, 8, 8])
"""

from __future__ import annotations

from dirac_core.lazy import lazy_getattr

from .functional import conv, dirac_tensor, dirac_weight, ncrelu, normalize_filters
from .layers import DiracConv1d, DiracConv2d, DiracConv3d, NCReLU
from .parametrize import DiracParametrization, register_dirac

# Names defined in sibling modules that are imported only when first asked for.
_LAZY = {
    "TorchBackend": "backend",
    "build": "models",
    "convert_model": "convert",
    "diracnet_cifar": "models",
    "diracnet_imagenet": "models",
    "fold_model": "fold",
    "export_onnx": "onnx_export",
    "param_groups": "optimizer_groups",
    "load_model": "saving",
    "save_model": "saving",
    "create_model": "registry",
    "list_models": "registry",
    "authors_model": "pretrained",
    "load_authors": "pretrained",
}

__all__ = [
    "DiracConv1d",
    "DiracConv2d",
    "DiracConv3d",
    "DiracParametrization",
    "NCReLU",
    "TorchBackend",
    "authors_model",
    "build",
    "conv",
    "convert_model",
    "create_model",
    "dirac_tensor",
    "dirac_weight",
    "diracnet_cifar",
    "diracnet_imagenet",
    "export_onnx",
    "fold_model",
    "list_models",
    "load_authors",
    "load_model",
    "ncrelu",
    "normalize_filters",
    "param_groups",
    "register_dirac",
    "save_model",
]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
