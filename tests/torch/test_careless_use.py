"""Calls a careless user makes: each gets the right answer or a clear error, never a silent one.

Layers as a drop-in ``nn.Conv2d`` (``padding_mode``, assigning ``stride``/``padding``/
``dilation``), the eq. 14 layer's re-initialisation, in-place changes of ``beta`` between
forward and backward, devices that do not exist here, NumPy scalar scales, scales too large
for the weights' dtype, and the torch version floor.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from torch import nn

import dirac_core as dc
import dirac_torch as dt
from dirac_core.delta import weight_geometry
from dirac_torch import kernels
from dirac_torch.models import resnet_eq14_cifar


def plain_copy(layer: dt.DiracConv2d, **geometry) -> nn.Conv2d:
    """An ``nn.Conv2d`` holding the layer's current ``W_hat`` and bias."""
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                     bias=layer.bias is not None, **geometry)
    with torch.no_grad():
        conv.weight.copy_(layer.weight)
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    return conv


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_mode_as_nn_conv2d(mode):
    torch.manual_seed(0)
    layer = dt.DiracConv2d(4, 4, 3, bias=True, padding_mode=mode, beta_init=0.5)
    x = torch.randn(2, 4, 6, 5)
    expected = plain_copy(layer, padding=1, padding_mode=mode)(x)
    torch.testing.assert_close(layer(x), expected)
    assert layer.padding_mode == mode


def test_assigned_stride_padding_dilation_are_honoured():
    torch.manual_seed(0)
    layer = dt.DiracConv2d(3, 3, 3, beta_init=0.5)
    x = torch.randn(1, 3, 9, 9)
    layer.padding = 0
    assert layer(x).shape == (1, 3, 7, 7)
    layer.stride = 2
    layer.dilation = (1, 2)
    layer.padding = (2, 1)
    assert (layer.stride, layer.dilation, layer.padding) == ((2, 2), (1, 2), (2, 1))
    expected = plain_copy(layer, stride=2, dilation=(1, 2), padding=(2, 1))(x)
    torch.testing.assert_close(layer(x), expected)


def test_assignment_breaking_same_padding_is_refused_and_changes_nothing():
    layer = dt.DiracConv2d(3, 3, 2)  # spec "same" for an even kernel: asymmetric
    before = layer.padding_pairs
    with pytest.raises(ValueError, match="padding='same' needs stride=1"):
        layer.stride = 2
    assert layer.stride == (1, 1) and layer.padding_pairs == before
    with pytest.raises(TypeError, match="dilation"):
        layer.dilation = "two"
    layer.dilation = 3  # "same" follows the dilation, as at construction
    assert layer.padding_pairs == ((3, 0), (3, 0))


def test_eq14_reset_parameters_is_he_not_unit_normal():
    model = resnet_eq14_cifar(10)
    layer = [m for m in model.modules() if isinstance(m, dt.DiracConv2d)][-1]
    w = layer.parametrizations.weight.original.detach()
    he_std = (2.0 / w[0].numel()) ** 0.5
    for reinit in (False, True):
        if reinit:
            layer.reset_parameters()
        assert abs(float(w.std()) / he_std - 1) < 0.05
    assert torch.equal(layer.alpha, torch.tensor(1.0))


def test_changing_beta_in_place_before_backward_raises_like_autograd():
    w = torch.randn(3, 3, 3, requires_grad=True)
    delta, geo = dt.dirac_tensor((3, 3, 3)), weight_geometry((3, 3, 3), 1, "tile")
    for op in (
        lambda b: kernels.dirac_weight(w, 1.0, b, geo, 1e-12, True),
        lambda b: 1.0 * delta + b * kernels.normalized(w, 1e-12),  # autograd's own version
    ):
        beta = torch.tensor(0.5, requires_grad=True)
        scaled = beta * 1  # a non-leaf beta, as a parametrization may compute it
        out = op(scaled)
        with torch.no_grad():
            scaled.mul_(2.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()


def test_changing_alpha_in_place_gives_the_gradients_of_autograd():
    # The backward never reads alpha's value, so (as with autograd) no error and exact grads.
    torch.manual_seed(0)
    w = torch.randn(3, 3, 3, requires_grad=True)
    delta, geo = dt.dirac_tensor((3, 3, 3)), weight_geometry((3, 3, 3), 1, "tile")
    grads = []
    for op in (
        lambda a, b: kernels.dirac_weight(w, a, b, geo, 1e-12, True),
        lambda a, b: a * delta + b * kernels.normalized(w, 1e-12),
    ):
        w.grad = None
        alpha, beta = torch.tensor(2.0, requires_grad=True), torch.tensor(0.5, requires_grad=True)
        scaled = alpha * 1
        out = op(scaled, beta)
        with torch.no_grad():
            scaled.mul_(3.0)
        out.square().sum().backward()
        grads.append((w.grad, alpha.grad, beta.grad))
    for got, expected in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    ("device", "match"),
    [("gpu", "device='gpu' is not a torch device"), ("cuda:7", "device='cuda:7' is not available")],
)
def test_devices_that_cannot_be_used_name_the_argument(device, match):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 CUDA devices")
    calls = [
        lambda: dt.DiracConv2d(4, 4, 3, device=device),
        lambda: dt.DiracParametrization((4, 4, 3), device=device),
        lambda: dt.dirac_tensor((4, 4, 3), device=device),
        lambda: dc.dirac_tensor((4, 4, 3), backend="torch", device=device),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=re.escape(match)):
            call()


def test_cuda_without_cuda_names_the_argument():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ValueError, match="device='cuda' is not available"):
        dt.DiracConv2d(4, 4, 3, device="cuda")


def test_numpy_scalar_scales_with_torch_weights():
    w = torch.randn(3, 3, 3)
    expected = dc.dirac_weight(w, 2.0, 1.0)
    for alpha, beta in [(np.float32(2), np.int64(1)), (np.float64(2), np.float16(1))]:
        got = dc.dirac_weight(w, alpha, beta)
        assert isinstance(got, torch.Tensor)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        grads = dc.dirac_weight_vjp(torch.ones_like(w), w, alpha, beta)
        assert all(isinstance(g, torch.Tensor) for g in grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_bfloat16_numpy_scalar_scales_go_with_torch_weights(dtype):
    # ml_dtypes' bfloat16 scalar is a NumPy scalar (no numbers.Real): a number, like float16's.
    bfloat16 = pytest.importorskip("ml_dtypes").bfloat16
    w = torch.randn(3, 3, 3).to(dtype)
    expected = dc.dirac_weight(w, np.float16(2), np.float16(0.5))
    for door in (dc.dirac_weight, dt.dirac_weight):
        got = door(w, bfloat16(2), bfloat16(0.5))
        assert isinstance(got, torch.Tensor) and got.dtype == dtype
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    grads = dc.dirac_weight_vjp(torch.ones_like(w), w, bfloat16(2), bfloat16(0.5))
    assert all(isinstance(g, torch.Tensor) for g in grads)


def _jax_array(values):
    return pytest.importorskip("jax.numpy").asarray(values)


@pytest.mark.parametrize("make", [np.asarray, _jax_array], ids=["numpy", "jax"])
@pytest.mark.parametrize("shape", [(), (2,)], ids=["0-d", "vector"])
def test_torch_door_refuses_scales_of_another_library_as_dirac_core_does(make, shape):
    # Torch weights take tensors or Python/NumPy scalars; an array of another library is
    # refused, not converted, by both doors.
    w, other = torch.ones(2, 2, 1), make(np.full(shape, 2.0, np.float32))
    for name, args in (("alpha", (other, 1.0)), ("beta", (1.0, other))):
        with pytest.raises(TypeError, match="inputs mix arrays"):
            dc.dirac_weight(w, *args)
        with pytest.raises(TypeError, match=rf"^{name} must be a torch.Tensor or a Python/NumPy "
                                            rf"scalar, got (numpy\.ndarray|jaxlib\.\S+): "):
            dt.dirac_weight(w, *args)
        with pytest.raises(TypeError, match=rf"^{name} must be a torch.Tensor"):
            dt.dirac_weight(w, *args, delta=torch.zeros(2, 2, 1))
    assert torch.equal(dt.dirac_weight(w, torch.tensor(2.0), np.float32(1)),
                       dc.dirac_weight(w, 2.0, 1.0))


def test_a_refused_array_is_shown_on_one_line():
    # An array's repr spans lines; the message quotes it on one, shortened.
    with pytest.raises(TypeError) as refused:
        dt.dirac_weight(np.ones((2, 2, 3, 3)), 1.0, 1.0)
    message = str(refused.value)
    assert "\n" not in message and message.endswith("...")
    assert "got numpy.ndarray: array([[[[1., 1., 1.], [1., 1., 1.]," in message


@pytest.mark.parametrize("w", [np.ones((2, 2, 3), np.float32), torch.ones(2, 2, 3),
                               torch.ones(2, 2, 3, dtype=torch.bfloat16)],
                         ids=["numpy", "torch", "torch-bfloat16"])
def test_scalar_scales_beyond_float32_are_refused(w):
    with pytest.raises(ValueError, match=r"alpha=1e\+40 does not fit the working dtype float32"):
        dc.dirac_weight(w, 1e40, 1.0)
    with pytest.raises(ValueError, match=r"beta=-1e\+39 does not fit"):
        dc.dirac_weight(w, 1.0, -1e39)
    if isinstance(w, torch.Tensor):
        with pytest.raises(ValueError, match=r"alpha=1e\+40 does not fit"):
            dt.dirac_weight(w, 1e40, 1.0)


def test_large_scalar_scales_are_fine_in_float64():
    w = np.ones((2, 2, 3))
    assert np.isfinite(dc.dirac_weight(w, 1e40, 1.0)).all()
    assert torch.isfinite(dt.dirac_weight(torch.from_numpy(w), 1e40, 1.0)).all()
    with pytest.raises(ValueError, match="alpha_init must be finite in the parameters' dtype"):
        dt.DiracConv2d(2, 2, 3, alpha_init=1e40)
    layer = dt.DiracConv2d(2, 2, 3, alpha_init=1e40, dtype=torch.float64)
    assert float(layer.alpha) == 1e40


def test_lengths_torch_cannot_index_or_allocate_are_errors_not_wrong_shapes():
    x, w = torch.ones(1, 1, 5), torch.ones(1, 1, 3)
    with pytest.raises(ValueError, match=r"stride=\d+ in spatial dim 0 makes the stride"):
        dc.conv(x, w, stride=2**70)  # torch: "Overflow when unpacking long long"
    with pytest.raises(ValueError, match=r"dilation=\d+ in spatial dim 0 makes the kernel's span"):
        dt.conv(x, w, padding="same", dilation=2**62)  # torch: its own padding bound
    with pytest.raises(ValueError, match=r"dilation=\d+ in spatial dim 0 makes the kernel's span"):
        dt.DiracConv1d(1, 1, 3, dilation=2**62)
    # 2**41 + 5 outputs: torch's CPU conv1d returned 5 of them.
    for call in (dc.conv, dt.conv):
        try:
            y = call(x, w, padding=2**41, dilation=2**40)
        except MemoryError as error:
            assert "output shape (1, 1, 2199023255557)" in str(error)
        else:
            assert y.shape == (1, 1, 2**41 + 5)


def test_torch_floor_covers_the_apis_the_code_uses():
    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    (requirement,) = [r for r in extras["torch"] if r.startswith("torch")]
    floor = tuple(int(p) for p in re.fullmatch(r"torch>=(\d+)\.(\d+)", requirement).groups())
    # fp32_precision (backend.spec_arithmetic) and the torch.export-based ONNX exporter as the
    # default came with 2.9; weights_only=True loading by default with 2.6.
    assert floor >= (2, 9)
    assert hasattr(torch.backends.cudnn.conv, "fp32_precision")


def test_a_float64_scale_of_float32_weights_means_the_same_at_both_doors():
    """dirac_torch.dirac_weight takes scale tensors in the working dtype, as
    dirac_core.dirac_weight does: a float64 beta beyond float32's range is inf in both (the
    torch door computed in float64 and gave 1e29), and dbeta stays float64."""
    w = torch.tensor([[[1e-10], [0.0]]])
    beta = torch.tensor(1e39, dtype=torch.float64, requires_grad=True)
    ours = dt.dirac_weight(w, 0.0, beta, normalize=False)
    spec = dc.dirac_weight(w, 0.0, beta.detach(), normalize=False)
    np.testing.assert_array_equal(ours.detach().numpy(), spec.numpy())  # [inf, nan]
    beta = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    dt.dirac_weight(torch.ones(2, 2, 3), 1.0, beta).sum().backward()
    assert beta.grad is not None and beta.grad.dtype == torch.float64
