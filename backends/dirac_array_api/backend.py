"""The ``array_api`` backend: the specification's own maths handed another array namespace.

:mod:`dirac_core`'s ops are written once against the Python Array API standard; this class
is only the adapter to the :class:`dirac_core.Backend` protocol: conversions, ownership, and
which dtypes the namespace can carry. ``ArrayApiBackend()`` runs on ``array-api-strict`` (the
standard's reference, which rejects anything outside it); ``ArrayApiBackend(namespace)`` on
any other: :data:`ON_NUMPY` (NumPy through ``array-api-compat``), ``ON_TORCH`` (PyTorch
through compat, :func:`on_torch`) and ``ON_JAX`` (``jax.numpy``, each op traced into one XLA
program: :mod:`.jitted`), the last two built on first use by the package.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat
import array_api_compat.numpy
import numpy as np

from dirac_core import activation, batchnorm, convolution, delta, normalize, weight
from dirac_core.backend import Array, Availability
from dirac_core.padding import Pairs
from dirac_core.validation import FLOAT_DTYPES
from dirac_core.xp import numpy_dtype

Shape = tuple[int, ...]


def _strict() -> ModuleType:
    import array_api_strict

    return array_api_strict


def _numpy_dtype(name: str) -> np.dtype | None:
    """The NumPy dtype that carries ``name`` (None for bfloat16 without ``ml_dtypes``)."""
    try:
        return numpy_dtype(name)
    except ImportError:
        return None


class ArrayApiBackend:
    """The specification on one Array API namespace.

    Parameters
    ----------
    xp : module, optional
        An Array API namespace (``array_api_strict``, ``array_api_compat.numpy``,
        ``array_api_compat.torch``, ``jax.numpy``, ...); default ``array_api_strict``.
    name : str
        The name reports use (default ``"array_api"``).
    subnormals : bool
        False for a library whose arithmetic flushes subnormal numbers to zero (XLA on CPU):
        ``eps`` then stays at or above the smallest normal number.

    Attributes
    ----------
    dtypes : tuple of str
        The spec's floating dtypes the namespace has *and* this adapter can carry both ways
        between NumPy and it (bfloat16 through ``ml_dtypes``; torch cannot take that one).

    Examples
    --------
    >>> import array_api_compat.numpy as cnp
    >>> ArrayApiBackend(cnp, name="array_api[numpy]").dtypes
    ('float64', 'float32', 'float16')
    """

    def __init__(self, xp: ModuleType | None = None, *, name: str = "array_api",
                 subnormals: bool = True) -> None:
        self.xp = _strict() if xp is None else xp
        self.name = name
        self.subnormals = subnormals
        # compat's view of the namespace (for NumPy: array_api_compat.numpy, not numpy).
        self._namespace = array_api_compat.array_namespace(self.xp.asarray(0.0))
        self.dtypes: tuple[str, ...] = tuple(d for d in FLOAT_DTYPES if self._carries(d))

    def _carries(self, name: str) -> bool:
        """Whether a ``name`` array goes from NumPy to the namespace and back unchanged."""
        carrier = _numpy_dtype(name)
        if carrier is None or not hasattr(self.xp, name):
            return False
        probe = np.array([1.5, -0.25], dtype=carrier)
        try:
            native = self.from_numpy(probe)
            back = self.to_numpy(native)
        except (TypeError, ValueError, RuntimeError, BufferError):
            return False
        return bool(native.dtype == getattr(self.xp, name) and back.dtype == carrier
                    and np.array_equal(back, probe))

    def __repr__(self) -> str:
        return f"ArrayApiBackend({self.xp.__name__}, name={self.name!r})"

    def available(self) -> Availability:
        return Availability(True)

    def owns(self, x: object) -> bool:
        if not array_api_compat.is_array_api_obj(x):
            return False
        return array_api_compat.array_namespace(x) is self._namespace

    def _device(self, device: Any) -> Any:
        """``device`` as the namespace takes it: ``"cpu"``, the host in every backend, is the
        namespace's CPU device (array-api-strict calls it ``CPU_DEVICE``); anything else is
        the namespace's to accept.

        Raises
        ------
        ValueError
            A device the namespace refuses (the message lists those it has).
        """
        if device is None:
            return None
        info = self.xp.__array_namespace_info__()
        if isinstance(device, str) and device == "cpu":
            # The default device first: devices() is slow in torch, which probes every kind.
            default = info.default_device()
            if "cpu" in str(default).lower():
                device = default
            else:
                device = next((d for d in info.devices() if "cpu" in str(d).lower()), device)
        try:
            self.xp.zeros((), device=device)
        except Exception as exc:  # each library refuses a device in its own way
            devices = [d for d in info.devices() if d is not None]
            raise ValueError(f"device={device!r} is not a device of backend {self.name!r}; it "
                             f"accepts None, 'cpu' or one of {devices}") from exc
        return device

    def from_numpy(self, a: np.ndarray, device: Any = None) -> Any:
        return self._kept(a, self.xp.asarray(np.array(a, copy=True), device=self._device(device)))

    def _kept(self, a: np.ndarray, native: Any) -> Any:
        """``native``, the namespace's copy of ``a``, if it kept ``a``'s floating dtype.

        Raises
        ------
        TypeError
            The namespace changed it (JAX without its 64-bit mode rounds float64 to float32),
            as the framework backends refuse such data rather than round it.
        """
        name = a.dtype.name
        if name in FLOAT_DTYPES and native.dtype != getattr(self.xp, name, None):
            raise TypeError(f"backend {self.name!r} cannot carry {name} data: it would become "
                            f"{native.dtype} (see the backend's dtypes)")
        return native

    def to_numpy(self, x: Any) -> np.ndarray:
        # DLPack refuses a torch tensor that requires grad; only its values are read here.
        if array_api_compat.is_torch_array(x):
            x = x.detach()
        return np.from_dlpack(x)

    def device(self, x: Any) -> Any:
        return array_api_compat.device(x)

    def dirac_tensor(self, shape: Shape, *, groups: int, policy: str, dtype: str | None,
                     device: Any) -> Array:
        dt = getattr(self.xp, dtype or "float64")
        return delta.dirac_tensor(shape, groups, policy, dt, self.xp, self._device(device))

    def normalize_filters(self, w: Array, *, eps: float) -> Array:
        return normalize.normalize_filters(w, eps, subnormals=self.subnormals)

    def normalize_filters_vjp(self, g: Array, w: Array, *, eps: float) -> Array:
        return normalize.normalize_filters_vjp(g, w, eps, subnormals=self.subnormals)

    def dirac_weight(self, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool,
                     groups: int, policy: str) -> Array:
        return weight.dirac_weight(w, alpha, beta, eps, normalize, groups, policy,
                                   subnormals=self.subnormals)

    def dirac_weight_vjp(self, g: Array, w: Array, alpha: Array, beta: Array, *, eps: float,
                         normalize: bool, groups: int, policy: str
                         ) -> tuple[Array, Array, Array]:
        return weight.dirac_weight_vjp(g, w, alpha, beta, eps, normalize, groups, policy,
                                       subnormals=self.subnormals)

    def ncrelu(self, x: Array, *, axis: int) -> Array:
        return activation.ncrelu(x, axis)

    def ncrelu_vjp(self, g: Array, x: Array, *, axis: int) -> Array:
        return activation.ncrelu_vjp(g, x, axis)

    def conv(self, x: Array, w: Array, bias: Array | None, *, stride: Shape,
             padding: str | Pairs, dilation: Shape, groups: int) -> Array:
        return convolution.conv(x, w, bias, stride, padding, dilation, groups)

    def conv_vjp(self, g: Array, x: Array, w: Array, bias: Array | None, *, stride: Shape,
                 padding: str | Pairs, dilation: Shape, groups: int
                 ) -> tuple[Array, Array, Array | None]:
        return convolution.conv_vjp(g, x, w, bias, stride, padding, dilation, groups)

    def fold_batchnorm(self, weight: Array, bias: Array | None, gamma: Array, beta: Array,
                       mean: Array, var: Array, *, eps: float) -> tuple[Array, Array]:
        return batchnorm.fold_batchnorm(weight, bias, gamma, beta, mean, var, eps)


ON_NUMPY = ArrayApiBackend(array_api_compat.numpy, name="array_api[numpy]")
"""The same code on NumPy arrays through ``array-api-compat`` (float64, float32, float16)."""


def on_torch() -> ArrayApiBackend:
    """The same code on PyTorch tensors through ``array-api-compat`` (``ON_TORCH``)."""
    import array_api_compat.torch

    return ArrayApiBackend(array_api_compat.torch, name="array_api[torch]")
