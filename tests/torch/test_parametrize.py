"""``DiracParametrization`` and ``register_dirac`` on plain ``nn.Conv1d/2d/3d``."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import dirac_core as dc
from dirac_torch import DiracParametrization, register_dirac


def reference_weight(w, alpha, beta, **kw):
    """``dc.dirac_weight`` on the NumPy reference, for torch tensors."""
    np_args = [t.detach().double().numpy() for t in (w, alpha, beta)]
    return torch.from_numpy(dc.dirac_weight(*np_args, **kw))


@pytest.mark.parametrize(
    ("conv_type", "spatial"), [(nn.Conv1d, (9,)), (nn.Conv2d, (7, 6)), (nn.Conv3d, (4, 5, 3))]
)
def test_registered_weight_is_the_dirac_weight(conv_type, spatial):
    torch.manual_seed(0)
    conv = conv_type(6, 4, 3, padding=1, groups=2, dtype=torch.float64)
    w = conv.weight.detach().clone()
    assert register_dirac(conv, alpha_init=2.0, beta_init=0.5) is conv
    assert torch.equal(conv.parametrizations.weight.original, w), "W is the old weight"
    expected = reference_weight(w, conv.parametrizations.weight[0].alpha,
                                conv.parametrizations.weight[0].beta, groups=2)
    assert torch.allclose(conv.weight, expected, rtol=1e-14, atol=1e-15)
    x = torch.randn(2, 6, *spatial, dtype=torch.float64)
    assert conv(x).shape == (2, 4, *spatial)


def test_state_dict_holds_only_what_is_learned_and_round_trips():
    torch.manual_seed(0)
    conv = register_dirac(nn.Conv2d(4, 4, 3, padding=1, bias=False), per_channel=True)
    with torch.no_grad():
        conv.parametrizations.weight[0].alpha.uniform_(1, 2)
    state = conv.state_dict()
    assert sorted(state) == [
        "parametrizations.weight.0.alpha",
        "parametrizations.weight.0.beta",
        "parametrizations.weight.original",
    ]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = register_dirac(nn.Conv2d(4, 4, 3, padding=1, bias=False), per_channel=True)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh.weight, conv.weight)


def test_deepcopy_is_independent_and_equal():
    conv = register_dirac(nn.Conv2d(3, 3, 3, padding=1))
    twin = copy.deepcopy(conv)
    x = torch.randn(1, 3, 5, 5)
    assert torch.equal(twin(x), conv(x))
    with torch.no_grad():
        twin.parametrizations.weight[0].alpha.fill_(0.0)
    assert conv.parametrizations.weight[0].alpha.item() == 5.0
    assert not list(twin.buffers())  # nothing shared or copied but the parameters


def test_remove_parametrizations_leaves_the_folded_weight():
    torch.manual_seed(0)
    conv = register_dirac(nn.Conv2d(4, 4, 3, padding=1))
    x = torch.randn(2, 4, 6, 6)
    before, folded = conv(x), conv.weight.detach().clone()
    parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    assert type(conv) is nn.Conv2d and not parametrize.is_parametrized(conv)
    assert torch.equal(conv.weight, folded)
    assert torch.equal(conv(x), before)
    assert sorted(conv.state_dict()) == ["bias", "weight"]


def test_gradients_reach_w_alpha_and_beta():
    conv = register_dirac(nn.Conv1d(2, 2, 3, padding=1, bias=False))
    conv(torch.randn(3, 2, 8)).square().sum().backward()
    dirac = conv.parametrizations.weight[0]
    for tensor in (conv.parametrizations.weight.original, dirac.alpha, dirac.beta):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert len(list(conv.parameters())) == 3


def test_resnet_variant_eq14_has_fixed_unit_scales():
    conv = register_dirac(
        nn.Conv2d(3, 3, 3, padding=1, bias=False),
        alpha_init=1.0, beta_init=1.0, normalize=False, learnable=False,
    )
    dirac = conv.parametrizations.weight[0]
    assert not isinstance(dirac.alpha, nn.Parameter) and not isinstance(dirac.beta, nn.Parameter)
    assert [n for n, _ in conv.named_parameters()] == ["parametrizations.weight.original"]
    assert "parametrizations.weight.0.alpha" in conv.state_dict()
    w = conv.parametrizations.weight.original
    assert torch.equal(conv.weight, dirac.delta + w)  # eq. 14: W_hat = delta + W


def test_per_channel_vector_init_and_reset():
    p = DiracParametrization((3, 2, 3), alpha_init=[1.0, 2.0, 3.0], per_channel=True)
    assert p.alpha.shape == (3,) and p.beta.shape == (3,)
    assert torch.equal(p.alpha, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(p.beta, torch.full((3,), 1e-3))
    with torch.no_grad():
        p.alpha.zero_()
    p.reset_parameters()
    assert torch.equal(p.alpha, torch.tensor([1.0, 2.0, 3.0]))


def test_dtype_and_device_follow_the_conv_and_to():
    conv = register_dirac(nn.Conv2d(2, 2, 1, dtype=torch.float64))
    dirac = conv.parametrizations.weight[0]
    assert dirac.alpha.dtype == dirac.delta.dtype == conv.weight.dtype == torch.float64
    conv.to(torch.float32)
    assert dirac.alpha.dtype == dirac.delta.dtype == conv.weight.dtype == torch.float32


def test_identity_at_zero_beta():
    conv = register_dirac(nn.Conv2d(3, 3, 3, padding=1, bias=False), alpha_init=1.0,
                          beta_init=0.0)
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(conv(x), x)


def test_forward_rejects_a_weight_of_another_shape():
    p = DiracParametrization((2, 2, 3))
    with pytest.raises(ValueError, match=r"weight has shape \(2, 2, 1\)"):
        p(torch.randn(2, 2, 1))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha_init": torch.ones(3)}, ValueError, r"alpha_init has shape \(3,\)"),
        ({"beta_init": torch.ones(4)}, ValueError, "beta_init has shape .* per_channel=False"),
        ({"alpha_init": torch.ones(2, 2), "per_channel": True}, ValueError, "alpha_init"),
        ({"alpha_init": float("nan")}, ValueError, "alpha_init must be a finite number >= 0"),
        ({"beta_init": -1e-3}, ValueError, "beta_init must be a finite number >= 0, got -0.001"),
        ({"alpha_init": [1.0, -1.0, 1.0, 1.0], "per_channel": True}, ValueError,
         r"alpha_init must be a finite number >= 0 in every entry, got array\(\[ 1., -1.,"),
        ({"alpha_init": "five"}, TypeError, "alpha_init must be"),
        ({"beta_init": True}, TypeError, "beta_init"),
        ({"beta_init": torch.ones((), dtype=torch.bool)}, TypeError, "beta_init"),
        ({"policy": "diagonal"}, ValueError, "policy='diagonal'"),
        ({"groups": 3}, ValueError, "groups=3"),
        ({"eps": 0.0}, ValueError, "eps must be"),
        ({"normalize": 1}, TypeError, "normalize must be a bool"),
        ({"dtype": torch.int64}, TypeError, "dtype must be a floating dtype"),
    ],
)
def test_parametrization_errors_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        DiracParametrization((4, 2, 3), **kwargs)


def test_bad_weight_shape():
    with pytest.raises(ValueError, match="weight_shape"):
        DiracParametrization((4,))
    with pytest.raises(TypeError, match="weight_shape"):
        DiracParametrization(4)


def test_register_dirac_errors():
    with pytest.raises(TypeError, match=r"conv must be an nn\.Conv1d, nn\.Conv2d or nn\.Conv3d"):
        register_dirac(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="got ConvTranspose2d"):
        register_dirac(nn.ConvTranspose2d(3, 3, 3))
    conv = register_dirac(nn.Conv2d(3, 3, 3, padding=1))
    with pytest.raises(ValueError, match="already parametrized"):
        register_dirac(conv)
    with pytest.raises(ValueError, match="groups=1 differs"):
        register_dirac(nn.Conv2d(4, 4, 3, groups=2), groups=1)
    with pytest.raises(TypeError, match="dtype"):
        register_dirac(nn.Conv2d(4, 4, 3), dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^register_dirac takes no keyword alpha; accepted: "
                                        r"groups, alpha_init, beta_init, per_channel, "):
        register_dirac(nn.Conv2d(4, 4, 3), alpha=1.0)
    with pytest.raises(TypeError, match=r"^register_dirac takes no keyword init_std: it keeps "
                                        r"the conv's weight as W"):
        register_dirac(nn.Conv2d(4, 4, 3), init_std=0.1)
    integer = nn.Conv2d(2, 2, 1)
    integer.weight = nn.Parameter(torch.ones(2, 2, 1, 1, dtype=torch.int64), requires_grad=False)
    with pytest.raises(TypeError, match=r"conv\.weight must be floating"):
        register_dirac(integer)


def test_float16_weights_accumulate_in_float32():
    conv = register_dirac(nn.Conv2d(2, 2, 3, padding=1, dtype=torch.float16), beta_init=1.0)
    w = conv.parametrizations.weight.original
    expected = reference_weight(w, conv.parametrizations.weight[0].alpha,
                                conv.parametrizations.weight[0].beta)
    assert conv.weight.dtype == torch.float16
    got = conv.weight.detach().double().numpy()
    assert np.allclose(got, expected.numpy(), rtol=1e-3, atol=1e-3)


def test_assigning_the_weight_inverts_the_unnormalized_parameterization():
    conv = register_dirac(nn.Conv2d(4, 6, 3, padding=1, bias=False).double(), normalize=False,
                          per_channel=True, alpha_init=[1.0, 2.0, 0.5, 1.0, 3.0, 1.0],
                          beta_init=[0.5, 2.0, 1.0, 4.0, 0.25, 1.0])
    target = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    original = conv.parametrizations.weight.original
    conv.weight = target
    assert conv.parametrizations.weight.original is original  # updated in place
    torch.testing.assert_close(conv.weight, target, rtol=1e-14, atol=1e-14)


def test_registering_keeps_the_weight_as_the_free_w():
    conv = nn.Conv1d(3, 3, 3, padding=1, bias=False)
    before = conv.weight.detach().clone()
    register_dirac(conv, normalize=False, alpha_init=1.0, beta_init=1.0)
    assert torch.equal(conv.parametrizations.weight.original, before)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "normalize=True"),
    ({"normalize": False, "beta_init": 0.0}, "beta has a zero entry"),
])
def test_assigning_an_unreachable_weight_says_why(kwargs, message):
    conv = register_dirac(nn.Conv1d(2, 2, 3, padding=1, bias=False), **kwargs)
    before = conv.parametrizations.weight.original.detach().clone()
    with pytest.raises(ValueError, match=message):
        conv.weight = torch.zeros(2, 2, 3)
    assert torch.equal(conv.parametrizations.weight.original, before)  # nothing changed
