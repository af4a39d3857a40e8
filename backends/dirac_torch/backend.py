"""The ``torch`` backend: the :class:`dirac_core.backend.Backend` protocol on torch tensors.

Forward ops are the unchecked kernels of :mod:`dirac_torch.kernels` (the conformance runner
has validated the arguments already); each VJP runs the same kernel under autograd and returns
the gradients in the protocol's shapes. Works on
CPU and on CUDA tensors (results stay on the input's device).

Precision on CUDA: PyTorch lets cuDNN convolutions use TF32 by default, which keeps only 10
mantissa bits and would silently loosen float32 results. The backend is the spec's
conformance target, so its conv ops run with cuDNN and cuBLAS forced to IEEE float32 and put
the user's settings back afterwards. (The layers and :mod:`dirac_torch.functional` follow the
user's global settings instead, like any ``nn.Conv2d``.)

Half precision: float16 and bfloat16 convolutions are computed in float32 and rounded once,
as the spec requires (PyTorch's CPU half kernels round intermediate products to half).

NumPy has no bfloat16 of its own: :meth:`TorchBackend.from_numpy` accepts ml_dtypes' bfloat16
arrays and :meth:`TorchBackend.to_numpy` returns bfloat16 tensors as float32 (exact).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from dirac_core.backend import Availability
from dirac_core.padding import resolve_padding
from dirac_core.validation import FLOAT_DTYPES

from . import functional as fn
from . import kernels
from .torch_types import torch_device, torch_dtype, work_dtype


@contextlib.contextmanager
def ieee_float32(device: torch.device) -> Iterator[None]:
    """Within the block, CUDA float32 convolutions and matmuls use IEEE float32, not TF32.

    A no-op for CPU tensors. Only PyTorch's current ``fp32_precision`` API is touched, since
    mixing it with the legacy ``allow_tf32`` flags is an error in recent PyTorch.

    Examples
    --------
    >>> with ieee_float32(torch.device("cpu")):
    ...     pass
    """
    if device.type != "cuda":
        yield
        return
    flags = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [f.fp32_precision for f in flags]
    try:
        for f in flags:
            f.fp32_precision = "ieee"
        yield
    finally:
        for f, value in zip(flags, saved, strict=True):
            f.fp32_precision = value


def _vjp(
    op: Callable[..., torch.Tensor], g: torch.Tensor, *inputs: torch.Tensor | None
) -> list[torch.Tensor | None]:
    """``g``'s pullback through ``op(*inputs)``: one gradient per input (None for None)."""
    with torch.enable_grad():
        leaves = [None if t is None else t.detach().requires_grad_() for t in inputs]
        used = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(op(*leaves), used, g, allow_unused=True))
    out: list[torch.Tensor | None] = []
    for leaf in leaves:
        if leaf is None:
            out.append(None)
            continue
        grad = next(grads)
        out.append(torch.zeros_like(leaf) if grad is None else grad)
    return out


class TorchBackend:
    """PyTorch implementation of every op of the specification (CPU and CUDA).

    Registered under the entry point ``torch`` of the ``dirac_core.backends`` group, so
    ``dirac_core`` functions called with torch tensors (or ``backend="torch"``) run here.

    Examples
    --------
    >>> import dirac_core as dc
    >>> dc.ncrelu(torch.tensor([[-1.0, 2.0]])).tolist()
    [[0.0, 2.0, -1.0, 0.0]]
    """

    name = "torch"
    dtypes: tuple[str, ...] = FLOAT_DTYPES

    def available(self) -> Availability:
        """Always usable: this module imported torch, and CPU tensors always work."""
        return Availability(True)

    def owns(self, x: object) -> bool:
        return isinstance(x, torch.Tensor)

    def from_numpy(self, a: np.ndarray, device: Any = None) -> torch.Tensor:
        if a.dtype.name == "bfloat16":  # ml_dtypes' NumPy bfloat16: through float32, exactly
            return torch.from_numpy(a.astype(np.float32)).to(
                device=torch_device(device), dtype=torch.bfloat16
            )
        # A fresh C-ordered copy: results must not alias the caller's buffer, and from_numpy
        # rejects negative strides.
        return torch.from_numpy(np.array(a, order="C", copy=True)).to(torch_device(device))

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()

    def device(self, x: torch.Tensor) -> torch.device:
        return x.device

    # ------------------------------------------------------------------ forward ops

    def dirac_tensor(
        self, shape: tuple[int, ...], *, groups: int, policy: str, dtype: str | None, device: Any
    ) -> torch.Tensor:
        return kernels.dirac_tensor(
            shape, groups, policy, torch_dtype(dtype), torch_device(device)
        )

    def normalize_filters(self, w: torch.Tensor, *, eps: float) -> torch.Tensor:
        return kernels.normalized(w, eps).to(w.dtype)

    def dirac_weight(
        self, w: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, *, eps: float,
        normalize: bool, groups: int, policy: str,
    ) -> torch.Tensor:
        delta = self._delta(w, groups, policy)
        work = work_dtype(w.dtype)  # a float64 alpha is not rounded to half on the way
        return kernels.dirac_weight(w, alpha.to(work), beta.to(work), delta, eps, normalize)

    def ncrelu(self, x: torch.Tensor, *, axis: int) -> torch.Tensor:
        return kernels.ncrelu(x, axis)

    def conv(
        self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, *,
        stride: tuple[int, ...], padding: str | tuple[tuple[int, int], ...],
        dilation: tuple[int, ...], groups: int,
    ) -> torch.Tensor:
        fn.check_spatial_dims(w)
        pairs = resolve_padding(padding, tuple(w.shape[2:]), dilation)
        work = work_dtype(x.dtype)
        if work != x.dtype:
            # The spec: half inputs accumulate in float32 and are rounded once. PyTorch's CPU
            # half kernels round products (and the gradients' sums) to half on the way, so
            # the backend computes in float32; autograd rounds the gradients once too.
            y = self.conv(x.to(work), w.to(work), None if bias is None else bias.to(work),
                          stride=stride, padding=padding, dilation=dilation, groups=groups)
            return y.to(x.dtype)
        with ieee_float32(x.device):
            return kernels.conv(x, w, bias, stride, pairs, dilation, groups)

    def fold_batchnorm(
        self, weight: torch.Tensor, bias: torch.Tensor | None, gamma: torch.Tensor,
        beta: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, *, eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return kernels.fold_batchnorm(weight, bias, gamma, beta, mean, var, eps=eps)

    # ------------------------------------------------------------------ VJPs

    def normalize_filters_vjp(self, g: torch.Tensor, w: torch.Tensor, *, eps: float) -> Any:
        (dw,) = _vjp(lambda v: self.normalize_filters(v, eps=eps), g, w)
        return dw

    def dirac_weight_vjp(
        self, g: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, *,
        eps: float, normalize: bool, groups: int, policy: str,
    ) -> tuple[Any, Any, Any]:
        delta = self._delta(w, groups, policy)

        def op(v: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return kernels.dirac_weight(v, a, b, delta, eps, normalize)

        work = work_dtype(w.dtype)
        dw, dalpha, dbeta = _vjp(op, g, w, alpha.to(work), beta.to(work))
        return dw, dalpha.to(alpha.dtype), dbeta.to(beta.dtype)  # each in its argument's dtype

    def ncrelu_vjp(self, g: torch.Tensor, x: torch.Tensor, *, axis: int) -> Any:
        # The spec's formula rather than autograd of the forward's selects, which would pass
        # both halves of g at a NaN (no comparison holds there: the gradient is 0).
        positive, negative = g.chunk(2, dim=axis)
        return torch.where(x > 0, positive, 0) + torch.where(x < 0, negative, 0)

    def conv_vjp(
        self, g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, *,
        stride: tuple[int, ...], padding: str | tuple[tuple[int, int], ...],
        dilation: tuple[int, ...], groups: int,
    ) -> tuple[Any, Any, Any]:
        def op(xv: torch.Tensor, wv: torch.Tensor, bv: torch.Tensor | None) -> torch.Tensor:
            return self.conv(
                xv, wv, bv, stride=stride, padding=padding, dilation=dilation, groups=groups
            )

        with ieee_float32(x.device):
            dx, dw, dbias = _vjp(op, g, x, w, bias)
        return dx, dw, dbias

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _delta(w: torch.Tensor, groups: int, policy: str) -> torch.Tensor:
        return kernels.dirac_tensor(
            tuple(w.shape), groups, policy, work_dtype(w.dtype), w.device
        )

    def __repr__(self) -> str:
        return "TorchBackend()"
