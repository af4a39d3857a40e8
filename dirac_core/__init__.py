"""dirac_core: the exact specification of Dirac weight parameterization (DiracNets).

Zagoruyko & Komodakis, "DiracNets: Training Very Deep Neural Networks Without
Skip-Connections" (2017). Every function here is the reference: written against the NumPy
API, float64-exact, with an exact vector-Jacobian product for each op. Other backends
(``torch``, ``cupy``, third parties) are found through the ``dirac_core.backends`` entry-point
group and checked against this reference by ``dirac_conformance``.

>>> import numpy as np, dirac_core as dc
>>> x = np.random.default_rng(0).normal(size=(2, 3, 5, 5))
>>> delta = dc.dirac_tensor((3, 6, 3, 3))
>>> bool(np.allclose(dc.conv(dc.ncrelu(x), delta, padding="same"), x))  # paper eq. 11
True
"""

from .api import (
    conv,
    conv_vjp,
    dirac_tensor,
    dirac_weight,
    dirac_weight_vjp,
    fold_batchnorm,
    ncrelu,
    ncrelu_vjp,
    normalize_filters,
    normalize_filters_vjp,
)
from .backend import OPS, Availability, Backend
from .errors import (
    BackendError,
    BackendUnavailableError,
    BrokenBackendError,
    DeviceUnavailableError,
    UnknownBackendError,
)
from .padding import conv_output_shape, resolve_padding
from .registry import available_backends, backend_names, get_backend, infer_backend

__version__ = "0.1.0"

__all__ = [
    "OPS",
    "Availability",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "BrokenBackendError",
    "DeviceUnavailableError",
    "UnknownBackendError",
    "available_backends",
    "backend_names",
    "conv",
    "conv_output_shape",
    "conv_vjp",
    "dirac_tensor",
    "dirac_weight",
    "dirac_weight_vjp",
    "fold_batchnorm",
    "get_backend",
    "infer_backend",
    "ncrelu",
    "ncrelu_vjp",
    "normalize_filters",
    "normalize_filters_vjp",
    "resolve_padding",
]
