"""The ``torch`` backend: the :class:`dirac_core.backend.Backend` protocol on torch tensors.

Forward ops are the unchecked kernels of :mod:`dirac_torch.kernels` (the conformance runner
has validated the arguments already); each VJP runs the same kernel under autograd and returns
the gradients in the protocol's shapes. Works on
CPU and on CUDA tensors (results stay on the input's device).

Arithmetic on CUDA (:func:`spec_arithmetic`): PyTorch lets cuDNN convolutions use TF32 by
default, which keeps only 10 mantissa bits and would silently loosen float32 results, and
cuDNN may pick Winograd or FFT algorithms, whose transforms round, so that
``conv(x, delta, padding="same")`` would no longer be exactly ``x`` as the spec requires. The
backend is the spec's conformance target, so every op of it (forward and VJP) runs with
float32 convolutions and matmuls in IEEE float32 and with cuDNN off (PyTorch's own
convolutions: im2col and cuBLAS products, or a direct depthwise kernel, which sum each
output's products, so a one-hot weight reproduces its input bit for bit), and puts the user's
settings back afterwards. (The layers and :mod:`dirac_torch.functional` follow the user's
global settings instead, like any ``nn.Conv2d``.)

Half precision: float16 and bfloat16 convolutions are computed in float32 and rounded once,
as the spec requires (PyTorch's CPU half kernels round intermediate products to half).

NumPy has no bfloat16 of its own: :meth:`TorchBackend.from_numpy` accepts ml_dtypes' bfloat16
arrays and :meth:`TorchBackend.to_numpy` returns bfloat16 tensors as float32 (exact).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

from dirac_core.backend import Availability
from dirac_core.delta import weight_geometry
from dirac_core.padding import conv_output_shape, resolve_padding
from dirac_core.validation import FLOAT_DTYPES

from . import functional as fn
from . import kernels
from .torch_types import torch_device, torch_dtype, work_dtype


def _on_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


@contextlib.contextmanager
def spec_arithmetic(device: torch.device) -> Iterator[None]:
    """Within the block, on CUDA: float32 convolutions and matmuls in IEEE float32 (not TF32),
    and convolutions without cuDNN (no Winograd or FFT algorithm: exact where the spec says
    exact). The previous settings come back on exit, however the block ends.

    A no-op for CPU tensors. Only PyTorch's current ``fp32_precision`` API is touched, since
    mixing it with the legacy ``allow_tf32`` flags is an error in recent PyTorch.

    Examples
    --------
    >>> with spec_arithmetic(torch.device("cpu")):
    ...     pass
    """
    if not _on_cuda(device):
        yield
        return
    flags = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [f.fp32_precision for f in flags]
    cudnn = torch.backends.cudnn.enabled
    try:
        for f in flags:
            f.fp32_precision = "ieee"
        torch.backends.cudnn.enabled = False
        yield
    finally:
        torch.backends.cudnn.enabled = cudnn
        for f, value in zip(flags, saved, strict=True):
            f.fp32_precision = value


_Op = TypeVar("_Op", bound=Callable[..., Any])


def _in_spec_arithmetic(op: _Op) -> _Op:
    """Run a backend op inside :func:`spec_arithmetic` for the device of its first tensor."""

    @functools.wraps(op)
    def run(self: Any, first: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with spec_arithmetic(first.device):
            return op(self, first, *args, **kwargs)

    return run  # type: ignore[return-value]


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

    @_in_spec_arithmetic
    def normalize_filters(self, w: torch.Tensor, *, eps: float) -> torch.Tensor:
        return kernels.normalized(w, eps).to(w.dtype)

    @_in_spec_arithmetic
    def dirac_weight(
        self, w: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, *, eps: float,
        normalize: bool, groups: int, policy: str,
    ) -> torch.Tensor:
        geo = weight_geometry(tuple(w.shape), groups, policy)
        work = work_dtype(w.dtype)  # a float64 alpha is not rounded to half on the way
        return kernels.dirac_weight(w, alpha.to(work), beta.to(work), geo, eps, normalize)

    @_in_spec_arithmetic
    def ncrelu(self, x: torch.Tensor, *, axis: int) -> torch.Tensor:
        return kernels.ncrelu(x, axis)

    @_in_spec_arithmetic
    def conv(
        self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, *,
        stride: tuple[int, ...], padding: str | tuple[tuple[int, int], ...],
        dilation: tuple[int, ...], groups: int,
    ) -> torch.Tensor:
        pairs = resolve_padding(padding, tuple(w.shape[2:]), dilation)
        work = work_dtype(x.dtype)
        if work != x.dtype:
            # The spec: half inputs accumulate in float32 and are rounded once. PyTorch's CPU
            # half kernels round products (and the gradients' sums) to half on the way, so
            # the backend computes in float32; autograd rounds the gradients once too.
            y = self.conv(x.to(work), w.to(work), None if bias is None else bias.to(work),
                          stride=stride, padding=padding, dilation=dilation, groups=groups)
            return y.to(x.dtype)
        # The backend is handed canonical arguments without the shape they give.
        expected = conv_output_shape(tuple(x.shape), tuple(w.shape), stride, pairs, dilation)
        return fn.sized_conv(x, w, bias, stride, pairs, dilation, groups, expected)

    @_in_spec_arithmetic
    def fold_batchnorm(
        self, weight: torch.Tensor, bias: torch.Tensor | None, gamma: torch.Tensor,
        beta: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, *, eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return kernels.fold_batchnorm(weight, bias, gamma, beta, mean, var, eps=eps)

    # ------------------------------------------------------------------ VJPs

    @_in_spec_arithmetic
    def normalize_filters_vjp(self, g: torch.Tensor, w: torch.Tensor, *, eps: float) -> Any:
        (dw,) = _vjp(lambda v: self.normalize_filters(v, eps=eps), g, w)
        return dw

    @_in_spec_arithmetic
    def dirac_weight_vjp(
        self, g: torch.Tensor, w: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, *,
        eps: float, normalize: bool, groups: int, policy: str,
    ) -> tuple[Any, Any, Any]:
        geo = weight_geometry(tuple(w.shape), groups, policy)

        def op(v: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return kernels.dirac_weight(v, a, b, geo, eps, normalize)

        work = work_dtype(w.dtype)
        dw, dalpha, dbeta = _vjp(op, g, w, alpha.to(work), beta.to(work))
        return dw, dalpha.to(alpha.dtype), dbeta.to(beta.dtype)  # each in its argument's dtype

    @_in_spec_arithmetic
    def ncrelu_vjp(self, g: torch.Tensor, x: torch.Tensor, *, axis: int) -> Any:
        return kernels.ncrelu_vjp(g, x <= 0, x >= 0, axis)

    @_in_spec_arithmetic
    def conv_vjp(
        self, g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, *,
        stride: tuple[int, ...], padding: str | tuple[tuple[int, int], ...],
        dilation: tuple[int, ...], groups: int,
    ) -> tuple[Any, Any, Any]:
        def op(xv: torch.Tensor, wv: torch.Tensor, bv: torch.Tensor | None) -> torch.Tensor:
            return self.conv(
                xv, wv, bv, stride=stride, padding=padding, dilation=dilation, groups=groups
            )

        dx, dw, dbias = _vjp(op, g, x, w, bias)
        return dx, dw, dbias

    def __repr__(self) -> str:
        return "TorchBackend()"
