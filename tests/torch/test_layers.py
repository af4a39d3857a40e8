"""``DiracConv1d/2d/3d`` and ``NCReLU``: maths against the reference, gradients, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parametrize

import dirac_core as dc
import dirac_torch
from dirac_torch import DiracConv1d, DiracConv2d, DiracConv3d, NCReLU

LAYERS = {1: DiracConv1d, 2: DiracConv2d, 3: DiracConv3d}
BASES = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def numpy_of(t):
    return t.detach().double().numpy()


@st.composite
def layer_case(draw):
    """Constructor kwargs of a small float64 Dirac layer and a matching input shape."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 4 if ndim < 3 else 3)) for _ in range(ndim))
    kwargs = {
        "in_channels": groups * draw(st.integers(1, 3)),
        "out_channels": groups * draw(st.integers(1, 3)),
        "kernel_size": kernel,
        "dilation": draw(st.integers(1, 2)),
        "groups": groups,
        "bias": draw(st.booleans()),
        "per_channel": draw(st.booleans()),
        "normalize": draw(st.booleans()),
        "policy": draw(st.sampled_from(["tile", "min"])),
        "dtype": torch.float64,
    }
    size = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    return ndim, kwargs, (2, kwargs["in_channels"], *size)


@given(case=layer_case(), seed=st.integers(0, 2**31))
def test_layer_equals_reference_conv_of_reference_weight(case, seed):
    ndim, kwargs, x_shape = case
    torch.manual_seed(seed)
    layer = LAYERS[ndim](**kwargs)
    with torch.no_grad():
        layer.alpha.uniform_(-2, 2)
        layer.beta.uniform_(-2, 2)
        if layer.bias is not None:
            layer.bias.normal_()
    x = torch.randn(x_shape, dtype=torch.float64)
    w_hat = dc.dirac_weight(
        numpy_of(layer.parametrizations.weight.original), numpy_of(layer.alpha),
        numpy_of(layer.beta), normalize=kwargs["normalize"], groups=kwargs["groups"],
        policy=kwargs["policy"],
    )
    bias = None if layer.bias is None else numpy_of(layer.bias)
    expected = dc.conv(x.numpy(), w_hat, bias, padding="same", dilation=kwargs["dilation"],
                       groups=kwargs["groups"])
    got = layer(x)
    assert got.shape == expected.shape
    scale = np.abs(expected).max(initial=1.0)
    assert np.abs(numpy_of(got) - expected).max(initial=0.0) <= 1e-12 * scale


@pytest.mark.parametrize(
    ("ndim", "kernel", "per_channel"), [(1, 4, False), (2, 3, True), (2, 2, False), (3, 2, True)]
)
def test_gradcheck_float64(ndim, kernel, per_channel):
    torch.manual_seed(0)
    layer = LAYERS[ndim](4, 3, kernel, bias=True, per_channel=per_channel, dtype=torch.float64)
    x = torch.randn(1, 4, *(3,) * ndim, dtype=torch.float64, requires_grad=True)
    names = ["parametrizations.weight.original", "parametrizations.weight.0.alpha",
             "parametrizations.weight.0.beta", "bias"]
    params = dict(layer.named_parameters())
    inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)
    with torch.no_grad():  # a beta of order 1 so W's gradient is not negligible
        inputs[2].fill_(0.7)

    def f(x, *values):
        return functional_call(layer, dict(zip(names, values, strict=True)), (x,))

    # fast_mode checks random projections of the Jacobian: same maths, a fraction of the time.
    assert torch.autograd.gradcheck(
        f, (x, *inputs), eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=True
    )


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
def test_identity_at_zero_beta_for_every_kernel_size(ndim, kernel):
    # paper eq. 11 on the layer: at beta = 0, layer(ncrelu(x)) = alpha * x, also for even K.
    layer = LAYERS[ndim](6, 3, kernel, dilation=2, dtype=torch.float64)
    with torch.no_grad():
        layer.beta.zero_()
    x = torch.randn(2, 3, *(5,) * ndim, dtype=torch.float64)
    assert torch.equal(layer(NCReLU()(x)), 5 * x)


@pytest.mark.parametrize("init_std", [1.0, 0.01])
def test_init_std_sets_the_scale_of_w_and_reset_keeps_it(init_std):
    torch.manual_seed(0)
    layer = DiracConv2d(128, 64, 3, init_std=init_std)
    w = layer.parametrizations.weight.original
    assert abs(w.std().item() / init_std - 1) < 0.02
    with torch.no_grad():
        w.mul_(7)
    layer.reset_parameters()
    assert abs(w.std().item() / init_std - 1) < 0.02


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_init_std_rejects_non_positive_or_non_finite(bad):
    with pytest.raises(ValueError, match="init_std"):
        DiracConv2d(8, 4, 3, init_std=bad)


def test_init_defaults():
    torch.manual_seed(0)
    layer = DiracConv2d(128, 64, 3, bias=True)
    w = layer.parametrizations.weight.original
    assert w.shape == (64, 128, 3, 3) and w.dtype == torch.float32
    # N(0, 0.1^2), the authors' code (their conv_params(..., gain=0.1))
    assert abs(w.mean().item()) < 0.002 and abs(w.std().item() - 0.1) < 0.002
    assert layer.alpha.shape == () and layer.alpha.item() == 5.0
    assert layer.beta.item() == pytest.approx(1e-3)
    assert torch.equal(layer.bias, torch.zeros(64))
    assert layer.padding == (1, 1) and layer.padding_pairs == ((1, 1), (1, 1))
    assert isinstance(layer, nn.Conv2d) and isinstance(layer, DiracConv2d)
    per_channel = DiracConv1d(4, 6, 3, per_channel=True, alpha_init=2.0)
    assert torch.equal(per_channel.alpha, torch.full((6,), 2.0))


def test_reset_parameters_restores_the_initial_state():
    layer = DiracConv2d(4, 4, 3, bias=True)
    with torch.no_grad():
        layer.alpha.fill_(0.0)
        layer.bias.fill_(3.0)
    layer.reset_parameters()
    assert layer.alpha.item() == 5.0 and torch.equal(layer.bias, torch.zeros(4))


@pytest.mark.parametrize(
    ("padding", "pairs"),
    [("same", ((2, 1), (2, 1))), ("valid", ((0, 0), (0, 0))), (1, ((1, 1), (1, 1))),
     (((1, 0), (0, 2)), ((1, 0), (0, 2)))],
)
def test_padding_forms_match_the_reference(padding, pairs):
    layer = DiracConv2d(2, 2, 4, padding=padding, dtype=torch.float64)
    assert layer.padding_pairs == pairs
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64)
    expected = dc.conv(x.numpy(), numpy_of(layer.weight), padding=pairs)
    assert np.allclose(numpy_of(layer(x)), expected, rtol=1e-12, atol=1e-12)


def test_strided_layer_with_explicit_padding():
    layer = DiracConv2d(3, 3, 3, stride=2, padding=1)
    assert layer(torch.randn(1, 3, 8, 8)).shape == (1, 3, 4, 4)


def test_fold_by_removing_the_parametrization():
    torch.manual_seed(0)
    layer = DiracConv2d(4, 4, 3, bias=True)
    x = torch.randn(2, 4, 6, 6)
    before, w_hat = layer(x), layer.weight.detach().clone()
    parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    assert type(layer) is DiracConv2d and not parametrize.is_parametrized(layer)
    assert torch.equal(layer.weight, w_hat)
    assert torch.equal(layer(x), before)
    plain = nn.Conv2d(4, 4, 3, padding=layer.padding)
    plain.load_state_dict(layer.state_dict())
    assert torch.equal(plain(x), before)


def test_state_dict_and_deepcopy():
    torch.manual_seed(0)
    layer = DiracConv3d(2, 2, 3, per_channel=True)
    assert sorted(layer.state_dict()) == [
        "parametrizations.weight.0.alpha",
        "parametrizations.weight.0.beta",
        "parametrizations.weight.original",
    ]
    twin = DiracConv3d(2, 2, 3, per_channel=True)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(1, 2, 4, 4, 4)
    assert torch.equal(twin(x), layer(x))
    clone = copy.deepcopy(layer)
    assert torch.equal(clone(x), layer(x))
    with torch.no_grad():
        clone.alpha.zero_()
    assert not torch.equal(clone(x), layer(x))


def test_training_step_moves_every_parameter():
    torch.manual_seed(0)
    layer = DiracConv2d(4, 2, 3)
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    layer(torch.randn(2, 4, 5, 5)).square().mean().backward()
    with torch.no_grad():
        for param in layer.parameters():
            param -= 0.1 * param.grad
    for name, param in layer.named_parameters():
        assert not torch.equal(param, before[name]), f"{name} did not move"


def test_dtype_conversion_carries_delta_and_scales():
    layer = DiracConv2d(2, 2, 3).to(torch.float64)
    assert layer.dirac.delta.dtype == layer.alpha.dtype == layer.weight.dtype == torch.float64
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    assert layer(x).dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_layers_run_on_cpu(dtype):
    torch.manual_seed(0)
    layer = DiracConv2d(4, 2, 3, dtype=dtype)
    x = torch.randn(2, 2, 5, 5).to(dtype)
    y = layer(NCReLU()(x))
    assert y.dtype == dtype
    ref = DiracConv2d(4, 2, 3, dtype=torch.float64)
    ref.load_state_dict(layer.state_dict())
    expected = ref(NCReLU()(x.double()))
    assert torch.allclose(y.double(), expected, rtol=3e-2, atol=3e-2)


def test_layer_errors_name_the_argument():
    with pytest.raises(ValueError, match="padding='same' needs stride=1"):
        DiracConv2d(4, 4, 3, stride=2)
    with pytest.raises(ValueError, match="kernel_size"):
        DiracConv2d(4, 4, (3, 3, 3))
    with pytest.raises(ValueError, match="kernel_size"):
        DiracConv1d(4, 4, 0)
    with pytest.raises(ValueError, match="groups=2 must divide the input channel count 3"):
        DiracConv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="alpha_init has shape"):
        DiracConv2d(4, 4, 3, alpha_init=torch.ones(3), per_channel=True)
    with pytest.raises(ValueError, match="policy="):
        DiracConv2d(4, 4, 3, policy="eye")
    layer = DiracConv2d(4, 4, 3)
    with pytest.raises(ValueError, match=r"expects \(N, 4, \.\.\.\) with 2 spatial dims"):
        layer(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="2 spatial dims"):
        layer(torch.randn(4, 5, 5))


@pytest.mark.parametrize("call,error,message", [
    # torch's own words named no argument ("in_channels must be divisible by groups"), or came
    # from deep inside ("empty(): argument 'dtype' must be torch.dtype, not str").
    (lambda: DiracConv2d(4, 4, 3, groups=3), ValueError, "groups=3 must divide the output"),
    (lambda: DiracConv2d(4, 4, 3, groups=2.0), TypeError, "groups must be a positive int"),
    (lambda: DiracConv2d(4, -4, 3), ValueError, "out_channels must be a positive int, got -4"),
    (lambda: DiracConv2d(4.0, 4, 3), TypeError, "in_channels must be a positive int"),
    (lambda: DiracConv2d(4, 4, 3, dtype=torch.int32), TypeError, "dtype must be a floating"),
    (lambda: DiracConv2d(4, 4, 3, padding=0)(torch.ones(1, 4, 2, 2)), ValueError,
     r"x of spatial shape \(2, 2\) is too small for kernel \(3, 3\)"),
    (lambda: DiracConv2d(4, 4, 3)(torch.ones(1, 4, 5, 5).half()), TypeError,
     "x has dtype float16 but the layer's parameters have dtype float32"),
    (lambda: DiracConv2d(4, 4, 3)(torch.ones(1, 4, 5, 5, dtype=torch.int64)), TypeError,
     "x has dtype int64"),
])
def test_layer_arguments_and_inputs_follow_the_spec_rules(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_layer_input_checks_leave_autocast_and_dtype_names_working():
    assert DiracConv2d(4, 4, 3, dtype="float16").weight.dtype == torch.float16
    first, valid = DiracConv2d(4, 4, 3, padding=1), DiracConv2d(4, 4, 3, padding=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert DiracConv2d(4, 4, 3)(torch.ones(1, 4, 5, 5)).dtype == torch.bfloat16
        # autocast mixes dtypes on purpose: another refusal is not blamed on them
        with pytest.raises(ValueError, match="is too small for kernel"):
            valid(first(torch.ones(1, 4, 2, 2)))


def test_ncrelu_module():
    m = NCReLU(dim=-1)
    assert repr(m) == "NCReLU(dim=-1)"
    x = torch.tensor([[-1.0, 0.0, 2.0]])
    assert torch.equal(m(x), torch.tensor([[0.0, 0.0, 2.0, -1.0, 0.0, 0.0]]))
    assert NCReLU()(torch.randn(2, 3, 4, 4)).shape == (2, 6, 4, 4)
    with pytest.raises(ValueError, match="dim=1 is out of range"):
        NCReLU()(torch.randn(3))
    with pytest.raises(TypeError, match="dim must be an int"):
        NCReLU(dim=1.0)


@pytest.mark.parametrize("door", [lambda x, dim: NCReLU(dim=dim)(x),
                                  lambda x, dim: dirac_torch.ncrelu(x, dim=dim)],
                         ids=["NCReLU", "dirac_torch.ncrelu"])
def test_ncrelu_errors_name_dim_in_both_torch_doors(door):
    # The torch argument is ``dim``: a message saying "axis" names no argument the caller has.
    with pytest.raises(ValueError, match=r"^dim=5 is out of range for an array of 2 dims$"):
        door(torch.ones(2, 3), 5)
    with pytest.raises(TypeError, match=r"^dim must be an int, got NoneType: None$"):
        door(torch.ones(2, 3), None)
