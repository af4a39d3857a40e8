"""The ``cupy`` backend: every op of the specification on a CUDA GPU, forward and VJP.

Two paths compute each op:

- the *generic* path runs the reference :mod:`dirac_core` unchanged on CuPy arrays (the
  reference takes its array module from the inputs). The convolution there is im2col +
  batched ``matmul``, so under CuPy its products run in cuBLAS; no cuDNN is involved (CuPy 14
  removed its cuDNN wrappers).
- the *fused* path runs the kernels of ``dirac_kernels.cu`` for the Dirac weight, filter
  normalization and NCReLU, forward and VJP, and batch-norm folding: one launch instead of a
  chain of elementwise kernels and temporaries (``benchmarks/bench_gpu.py`` measures the
  difference), computed in double, which CuPy's flush-to-zero cannot touch.

The fused path is the default. ``CupyBackend(fused=False)`` or the environment variable
``DIRAC_CUPY_FUSED=0`` selects the generic path, and the backend falls back to it by itself,
with a warning, if the kernels fail to compile, unless it is strict (``strict=True`` or
``DIRAC_CUPY_STRICT=1``, as ``scripts/gpu_check.sh`` runs it): then the compile error is
raised — CuPy's own, or the RuntimeError/ImportError/OSError of a missing NVRTC or CUDA
headers. :attr:`CupyBackend.path` says which path ran. The kernels cover float64, float32 and
float16; the backend declares only those, so the public API refuses bfloat16 (a direct call
with another dtype runs the generic path). CuPy is imported only when an op runs.

>>> from dirac_cupy import CupyBackend
>>> CupyBackend().name
'cupy'
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Any

import numpy as np

from dirac_core import delta
from dirac_core.backend import Array, Availability
from dirac_core.errors import BackendUnavailableError
from dirac_core.padding import Pairs
from dirac_core.reference import NumpyBackend
from dirac_core.validation import device_name

from . import kernels
from .availability import cached_probe
from .fused_math import unit_scales


def _cupy() -> Any:
    status = cached_probe()
    if not status:
        raise BackendUnavailableError(f"the cupy backend cannot run here: {status.reason}")
    import cupy

    return cupy


def _device_id(device: Any) -> int | None:
    """``None`` (the current device), an int, a ``cupy.cuda.Device`` or ``"cuda[:N]"``."""
    if device is None or (isinstance(device, int) and not isinstance(device, bool)):
        return device
    if hasattr(device, "id"):
        return int(device.id)
    if isinstance(device, str) and device.partition(":")[0] == "cuda":
        with contextlib.suppress(ValueError):  # a malformed index: refused below
            return device_name(device)[1] or 0
    raise ValueError(
        f"device={device!r} is not a CUDA device; accepted: None (the current device), an int, "
        f"a cupy.cuda.Device, 'cuda' or 'cuda:N'"
    )


class CupyBackend:
    """The specification on CuPy arrays (float64, float32 and float16).

    Parameters
    ----------
    fused : bool, optional
        Use the fused CUDA kernels where there are some (default: true unless the environment
        sets ``DIRAC_CUPY_FUSED=0``).
    strict : bool, optional
        Raise if the kernels do not compile, instead of warning and falling back to the
        generic path (default: true where the environment sets ``DIRAC_CUPY_STRICT=1``).
    """

    name = "cupy"
    dtypes: tuple[str, ...] = ("float64", "float32", "float16")

    def __init__(self, *, fused: bool | None = None, strict: bool | None = None) -> None:
        if fused is None:
            fused = os.environ.get("DIRAC_CUPY_FUSED", "1") != "0"
        if strict is None:
            strict = os.environ.get("DIRAC_CUPY_STRICT", "0") == "1"
        self.fused = fused
        self.strict = strict
        self._generic = NumpyBackend()
        self._compiled: set[int] = set()  # devices the kernels are compiled for

    def __repr__(self) -> str:
        return f"CupyBackend(fused={self.fused}, strict={self.strict})"

    @property
    def path(self) -> str:
        """``"fused"`` or ``"generic"``: the path the Dirac weight and NCReLU run on (after a
        failed compile, ``"generic"``)."""
        return "fused" if self.fused else "generic"

    # ------------------------------------------------------------------ arrays and devices

    def available(self) -> Availability:
        return cached_probe()

    def owns(self, x: object) -> bool:
        # Only a process that already imported CuPy can hold CuPy arrays.
        ndarray = getattr(sys.modules.get("cupy"), "ndarray", None)
        return ndarray is not None and isinstance(x, ndarray)

    def from_numpy(self, a: np.ndarray, device: Any = None) -> Array:
        cupy = _cupy()
        with cupy.cuda.Device(_device_id(device)):  # Device(None) is the current device
            return cupy.asarray(a)

    def to_numpy(self, x: Array) -> np.ndarray:
        host: np.ndarray = _cupy().asnumpy(x)
        return host

    def device(self, x: Array) -> int:
        return int(x.device.id)

    # ------------------------------------------------------------------ ops

    def dirac_tensor(
        self, shape: tuple[int, ...], *, groups: int, policy: str, dtype: str | None, device: Any
    ) -> Array:
        cupy = _cupy()
        with cupy.cuda.Device(_device_id(device)):
            return delta.dirac_tensor(shape, groups, policy, np.dtype(dtype or "float64"), cupy)

    def normalize_filters(self, w: Array, *, eps: float) -> Array:
        with w.device:
            if not self._use_fused(w):
                return self._generic.normalize_filters(w, eps=eps)
            zero, one = unit_scales(w)
            return kernels.dirac_weight(
                w, zero, one, eps=eps, normalize=True, groups=1, policy="tile", identity=False
            )

    def normalize_filters_vjp(self, g: Array, w: Array, *, eps: float) -> Array:
        with w.device:
            if not self._use_fused(g, w):
                return self._generic.normalize_filters_vjp(g, w, eps=eps)
            return kernels.normalize_filters_vjp(g, w, eps=eps)

    def dirac_weight(
        self, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool, groups: int,
        policy: str,
    ) -> Array:
        args: dict[str, Any] = {
            "eps": eps, "normalize": normalize, "groups": groups, "policy": policy
        }
        with w.device:
            if not self._use_fused(w, alpha, beta):
                return self._generic.dirac_weight(w, alpha, beta, **args)
            return kernels.dirac_weight(w, alpha, beta, **args)

    def dirac_weight_vjp(
        self, g: Array, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool,
        groups: int, policy: str,
    ) -> tuple[Array, Array, Array]:
        args: dict[str, Any] = {
            "eps": eps, "normalize": normalize, "groups": groups, "policy": policy
        }
        with w.device:
            if not self._use_fused(g, w, alpha, beta):
                return self._generic.dirac_weight_vjp(g, w, alpha, beta, **args)
            return kernels.dirac_weight_vjp(g, w, alpha, beta, **args)

    def ncrelu(self, x: Array, *, axis: int) -> Array:
        with x.device:
            if not self._use_fused(x):
                return self._generic.ncrelu(x, axis=axis)
            return kernels.ncrelu(x, axis=axis)

    def ncrelu_vjp(self, g: Array, x: Array, *, axis: int) -> Array:
        with x.device:
            if not self._use_fused(g, x):
                return self._generic.ncrelu_vjp(g, x, axis=axis)
            return kernels.ncrelu_vjp(g, x, axis=axis)

    def conv(
        self, x: Array, w: Array, bias: Array | None, *, stride: tuple[int, ...],
        padding: str | Pairs, dilation: tuple[int, ...], groups: int,
    ) -> Array:
        with x.device:
            return self._generic.conv(
                x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups
            )

    def conv_vjp(
        self, g: Array, x: Array, w: Array, bias: Array | None, *, stride: tuple[int, ...],
        padding: str | Pairs, dilation: tuple[int, ...], groups: int,
    ) -> tuple[Array, Array, Array | None]:
        with x.device:
            return self._generic.conv_vjp(
                g, x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups
            )

    def fold_batchnorm(
        self, weight: Array, bias: Array | None, gamma: Array, beta: Array, mean: Array,
        var: Array, *, eps: float,
    ) -> tuple[Array, Array]:
        vectors = {"bias": bias, "gamma": gamma, "beta": beta, "mean": mean, "var": var}
        with weight.device:
            if not self._use_fused(weight, *(v for v in vectors.values() if v is not None)):
                return self._generic.fold_batchnorm(weight, eps=eps, **vectors)
            return kernels.fold_batchnorm(weight, eps=eps, **vectors)

    # ------------------------------------------------------------------ fused or generic

    def _use_fused(self, *arrays: Any) -> bool:
        """Whether to launch the fused kernels for these arrays (their dtypes have kernels);
        compiles them on first use on each device."""
        if not self.fused or not kernels.has_kernels(*arrays):
            return False
        device = int(arrays[0].device.id)
        if device in self._compiled:
            return True
        cupy = _cupy()
        # NVRTC or the CUDA headers missing surface as RuntimeError, ImportError or OSError
        # (CuPy cannot load libnvrtc, or cannot find cuda_fp16.h), not as a CompileException.
        missing = (cupy.cuda.compiler.CompileException, cupy.cuda.driver.CUDADriverError,
                   RuntimeError, ImportError, OSError)
        try:
            kernels.compile_for(device)
        except missing as exc:
            why = f"{type(exc).__name__}: {exc}"
            if self.strict:
                raise RuntimeError(
                    f"dirac_cupy: the fused kernels did not compile (strict, so no fallback to "
                    f"the generic path): {why}"
                ) from exc
            warnings.warn(
                f"dirac_cupy: the fused kernels did not compile ({why}); using the generic "
                f"path (the reference on CuPy arrays) from now on",
                RuntimeWarning,
                stacklevel=3,
            )
            self.fused = False
            return False
        self._compiled.add(device)
        return True
