"""The torch backend's arithmetic on CUDA, checked on the CPU with the device mocked.

On a GPU, PyTorch may run float32 convolutions and matmuls in TF32 and let cuDNN pick Winograd
or FFT algorithms; the backend runs every op (forward and VJP, the half-precision paths
included) inside ``spec_arithmetic``: IEEE float32 and cuDNN off. Here the backend is told
that CPU tensors are on CUDA, the global flags start in the state a user may leave them in
(TF32, cuDNN on), and a dispatch mode records the flags at every aten op each backend call
runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import dirac_core as dc
from dirac_torch import backend as torch_backend

IEEE = ("ieee", "ieee", False)  # cudnn.conv and matmul fp32_precision, cudnn.enabled


def _flags():
    return (torch.backends.cudnn.conv.fp32_precision,
            torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.enabled)


class _Recorder(TorchDispatchMode):
    """Every aten op run, with the flags in force when it ran."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append((func.overloadpacket.__name__, _flags()))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def as_if_cuda(monkeypatch):
    """CPU tensors treated as CUDA ones by the backend; the user's flags set to TF32, cuDNN on."""
    monkeypatch.setattr(torch_backend, "_on_cuda", lambda device: True)
    saved = _flags()
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.enabled = True
    yield
    assert _flags() == ("tf32", "tf32", True)  # the user's settings came back
    torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved[:2]
    torch.backends.cudnn.enabled = saved[2]


def _every_op(b, dtype):
    """Each op of the protocol (forward and VJP) on small native tensors."""
    rng = np.random.default_rng(0)

    def t(*shape):
        return b.from_numpy(rng.normal(size=shape).astype(np.float32)).to(getattr(torch, dtype))

    w, x, g_w, g_x, g_y = t(4, 6, 3), t(2, 6, 5), t(4, 6, 3), t(2, 12, 5), t(2, 4, 5)
    alpha, beta, vec, var = t(), t(4), t(4), t(4).abs()
    weight = {"eps": 1e-3, "normalize": True, "groups": 1, "policy": "tile"}
    same = {"stride": (1,), "padding": "same", "dilation": (1,), "groups": 1}
    return {
        "normalize_filters": lambda: b.normalize_filters(w, eps=1e-3),
        "normalize_filters_vjp": lambda: b.normalize_filters_vjp(g_w, w, eps=1e-3),
        "dirac_weight": lambda: b.dirac_weight(w, alpha, beta, **weight),
        "dirac_weight_vjp": lambda: b.dirac_weight_vjp(g_w, w, alpha, beta, **weight),
        "ncrelu": lambda: b.ncrelu(x, axis=1),
        "ncrelu_vjp": lambda: b.ncrelu_vjp(g_x, x, axis=1),
        "conv": lambda: b.conv(x, w, vec, **same),
        "conv_vjp": lambda: b.conv_vjp(g_y, x, w, vec, **same),
        "fold_batchnorm": lambda: b.fold_batchnorm(w, vec, vec, vec, vec, var, eps=1e-3),
    }


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_every_op_runs_in_ieee_float32_without_cudnn(as_if_cuda, dtype):
    b = dc.get_backend("torch")
    covered = set()
    for name, call in _every_op(b, dtype).items():
        with _Recorder() as recorder:
            call()
        wrong = [(op, flags) for op, flags in recorder.ops if flags != IEEE]
        assert not wrong, f"{name} ran {wrong[:3]} outside the scope"
        covered |= {op for op, _ in recorder.ops}
    assert {"convolution", "convolution_backward"} <= covered  # the scope saw the convs


def test_every_op_of_the_protocol_is_exercised():
    from dirac_core import OPS

    assert set(_every_op(dc.get_backend("torch"), "float32")) == set(OPS) - {"dirac_tensor"}
