"""The paper's identities and the spec's edge cases on the torch side.

Eq. 1 (``conv(x, delta) == x``) and eq. 11 (``conv(ncrelu(x), delta) == x``) for every kernel
size, even ones included; ``policy="min"`` equals ``torch.nn.init.dirac_``; normalize at the
extremes of each dtype and at the clamp; NCReLU's gradient at zero; TF32 kept off; CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dirac_core as dc
import dirac_torch as dt
from dirac_torch.backend import spec_arithmetic


@st.composite
def identity_case(draw):
    """``(x, kernel, dilation)``: float64 input with 1 to 3 spatial dims, any kernel size."""
    ndim = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    size = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    channels = draw(st.integers(1, 3))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    x = torch.randn(2, channels, *size, generator=gen, dtype=torch.float64)
    return x, kernel, dilation


@given(case=identity_case())
def test_eq1_dirac_is_the_identity(case):
    x, kernel, dilation = case
    channels = x.shape[1]
    delta = dc.dirac_tensor((channels, channels, *kernel), dtype="float64", backend="torch")
    y = dc.conv(x, delta, padding="same", dilation=dilation)  # backend inferred: torch
    assert isinstance(y, torch.Tensor)
    assert torch.equal(y, x)


@given(case=identity_case())
def test_eq11_ncrelu_then_tiled_dirac_is_the_identity(case):
    x, kernel, dilation = case
    channels = x.shape[1]
    delta = dt.dirac_tensor((channels, 2 * channels, *kernel), dtype=torch.float64)
    assert torch.equal(dt.conv(dt.ncrelu(x), delta, padding="same", dilation=dilation), x)


@given(
    out_per_group=st.integers(1, 5),
    in_per_group=st.integers(1, 5),
    groups=st.integers(1, 3),
    kernel=st.lists(st.integers(1, 4), min_size=1, max_size=3),
)
def test_min_policy_equals_torch_dirac_init(out_per_group, in_per_group, groups, kernel):
    shape = (out_per_group * groups, in_per_group, *kernel)
    expected = torch.nn.init.dirac_(torch.empty(shape), groups=groups)
    got = dc.dirac_tensor(shape, groups=groups, policy="min", backend="torch")
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)


def test_tile_policy_is_the_papers_block_tiling():
    delta = dt.dirac_tensor((2, 6, 1), dtype=torch.float64)[:, :, 0]
    eye = torch.eye(2, dtype=torch.float64)
    assert torch.equal(delta, torch.cat([eye, eye, eye], dim=1))  # [I I I], paper eq. 8


@pytest.mark.parametrize(
    ("dtype", "big", "small"),
    [
        (torch.float64, 1e300, 1e-300),
        (torch.float32, 3e38, 1e-38),
        (torch.float16, 6e4, 1e-4),
        (torch.bfloat16, 3e38, 1e-30),
    ],
)
def test_normalize_is_overflow_safe_and_zero_safe(dtype, big, small):
    w = torch.tensor([[big, big, -big], [small, -small, small], [0.0, 0.0, 0.0]], dtype=dtype)
    w.requires_grad_()
    u = dt.normalize_filters(w)
    assert u.dtype == dtype
    expected = torch.tensor([[1, 1, -1], [1, -1, 1], [0, 0, 0]], dtype=torch.float64) / 3**0.5
    expected[1] *= 1 if small * 3**0.5 >= 1e-12 else 3**0.5 * small / 1e-12
    assert torch.allclose(u.double(), expected, rtol=1e-2 if dtype.itemsize == 2 else 1e-6)
    u.backward(torch.ones_like(u))
    # A zero filter's gradient is g / eps = 1e12: beyond float16's range, so inf there.
    expected_grad = torch.full((3,), 1e12, dtype=torch.float64).to(dtype)
    assert torch.equal(w.grad[2], expected_grad), "zero filter: g / eps"
    assert torch.isfinite(w.grad[:2]).all()


@pytest.mark.parametrize(("value", "grad"), [(1e-12, 0.0), (0.5e-12, 1e12)])
def test_normalize_gradient_at_the_clamp(value, grad):
    # A one-element filter: u = sign(v), so the norm branch has gradient 0 and the constant
    # branch 1/eps. At ||v|| == eps exactly the norm branch applies (like a clamp-min).
    w = torch.tensor([[value]], dtype=torch.float64, requires_grad=True)
    dt.normalize_filters(w, eps=1e-12).sum().backward()
    assert w.grad.item() == pytest.approx(grad, rel=1e-12)


def test_ncrelu_gradient_at_zero_is_zero_on_both_halves():
    x = torch.tensor([[-2.0, 0.0, -0.0, 3.0]], requires_grad=True)
    y = dt.ncrelu(x)
    assert torch.equal(y, torch.tensor([[0.0, 0.0, 0.0, 3.0, -2.0, 0.0, 0.0, 0.0]]))
    assert not torch.signbit(y[0, 1:3]).any() and not torch.signbit(y[0, 5:]).any()
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, torch.tensor([[1.0, 0.0, 0.0, 1.0]]))


def test_ncrelu_propagates_nan():
    y = dt.ncrelu(torch.tensor([[float("nan")]]))
    assert torch.isnan(y).all()


@given(groups=st.integers(1, 3), cin=st.integers(1, 3), cout=st.integers(1, 3))
def test_conv_without_spatial_dims_is_a_grouped_matmul(groups, cin, cout):
    gen = torch.Generator().manual_seed(cin * 9 + cout * 3 + groups)
    x = torch.randn(4, groups * cin, generator=gen, dtype=torch.float64)
    w = torch.randn(groups * cout, cin, generator=gen, dtype=torch.float64)
    expected = torch.cat(
        [xg @ wg.T for xg, wg in zip(x.chunk(groups, 1), w.chunk(groups, 0), strict=True)], 1
    )
    assert torch.allclose(dt.conv(x, w, groups=groups), expected, rtol=1e-13, atol=0)


def test_dirac_weight_with_precomputed_delta_matches():
    w = torch.randn(4, 6, 3, 3, dtype=torch.float64)
    alpha, beta = torch.tensor(2.0, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    delta = dt.dirac_tensor(w.shape, groups=2, dtype=torch.float64)
    plain = dt.dirac_weight(w, alpha, beta, groups=2)
    assert torch.equal(dt.dirac_weight(w, alpha, beta, delta=delta), plain)
    expected = dc.dirac_weight(w.numpy(), alpha.numpy(), beta.numpy(), groups=2)
    assert np.allclose(plain.numpy(), expected, rtol=1e-14, atol=1e-15)


def test_functional_errors_name_the_argument():
    w = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="beta has shape"):
        dt.dirac_weight(w, 1.0, torch.ones(3))
    with pytest.raises(ValueError, match="delta has shape"):
        dt.dirac_weight(w, 1.0, 1.0, delta=torch.zeros(4, 2, 1))
    with pytest.raises(TypeError, match="w must have a floating dtype"):
        dt.normalize_filters(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"w must be a torch\.Tensor"):
        dt.normalize_filters(np.ones((2, 2)))
    with pytest.raises(ValueError, match="stride=1"):
        dt.conv(torch.randn(1, 2, 5), w[:, :, :2], padding="same", stride=2)
    with pytest.raises(ValueError, match="channels"):
        dt.conv(torch.randn(1, 3, 5), w)
    with pytest.raises(ValueError, match=r"^dim=2 is out of range"):
        dt.ncrelu(torch.randn(2, 2), dim=2)
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
        dt.dirac_tensor((2, 2), dtype=torch.int32)
    with pytest.raises(ValueError, match="groups=3 must divide"):
        dt.dirac_tensor((4, 2, 3), groups=3)
    with pytest.raises(ValueError, match=r"shape=.* at least 2 entries"):
        dt.dirac_tensor((4,))
    with pytest.raises(ValueError, match=r"w has shape .* every dim must be >= 1"):
        dt.normalize_filters(torch.ones(0, 3))


def test_spec_arithmetic_forces_and_restores_cuda_flags():
    flags = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    before = [f.fp32_precision for f in flags], torch.backends.cudnn.enabled
    with spec_arithmetic(torch.device("cpu")):
        assert ([f.fp32_precision for f in flags], torch.backends.cudnn.enabled) == before
    try:
        with spec_arithmetic(torch.device("cuda")):  # flags are global: settable on a CPU build
            assert [f.fp32_precision for f in flags] == ["ieee", "ieee"]
            assert not torch.backends.cudnn.enabled
            raise KeyError("inside")
    except KeyError:
        pass
    assert ([f.fp32_precision for f in flags], torch.backends.cudnn.enabled) == before


def test_cuda_backend_matches_reference_in_ieee_float32(cuda):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(4, 64, 16, 16)), rng.normal(size=(32, 64, 3, 3))
    ref = dc.conv(x, w, padding="same")
    got = dc.conv(x.astype(np.float32), w.astype(np.float32), padding="same", backend="torch")
    assert isinstance(got, torch.Tensor) and got.device.type == "cpu"
    on_gpu = dc.conv(torch.from_numpy(x).float().to(cuda), torch.from_numpy(w).float().to(cuda),
                     padding="same")
    assert on_gpu.device.type == "cuda"
    scale = np.abs(dc.conv(np.abs(x), np.abs(w), padding="same")).max()
    # TF32 keeps 10 mantissa bits (~1e-3 relative); IEEE float32 is ~1e-6.
    assert np.abs(on_gpu.cpu().double().numpy() - ref).max() / scale < 1e-5
    assert np.abs(got.double().numpy() - ref).max() / scale < 1e-5


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_cuda_ops_match_cpu(cuda, dtype):
    torch_dtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(6, 4, 3, 3, generator=gen).to(torch_dtype)
    x = torch.randn(2, 8, 7, 7, generator=gen).to(torch_dtype)
    beta = torch.tensor(0.3, dtype=torch_dtype)
    cpu = dc.conv(dc.ncrelu(x), dc.dirac_weight(w, 2.0, beta, groups=2), padding="same",
                  groups=2)
    gpu = dc.conv(dc.ncrelu(x.to(cuda)), dc.dirac_weight(w.to(cuda), 2.0, beta.to(cuda),
                                                         groups=2), padding="same", groups=2)
    assert gpu.device.type == "cuda" and gpu.dtype == torch_dtype
    tol = {"float64": 1e-12, "float32": 1e-5}.get(dtype, 3e-2)
    assert torch.allclose(gpu.cpu().double(), cpu.double(), rtol=tol, atol=tol * 10)


def test_fused_dirac_weight_is_first_order_only_and_says_so():
    w = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    (dw,) = torch.autograd.grad(dt.dirac_weight(w, 1.0, 0.5).square().sum(), w, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        dw.sum().backward()


def test_fused_dirac_weight_skips_gradients_nobody_asked_for():
    w = torch.randn(4, 4, 3, dtype=torch.float64)
    alpha = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    out = dt.dirac_weight(w, alpha, torch.tensor(0.3, dtype=torch.float64))
    (dalpha,) = torch.autograd.grad(out.sum(), alpha)
    assert dalpha.item() == pytest.approx(4.0)  # four ones in a 4x4 Dirac tensor
