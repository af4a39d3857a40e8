"""convert_model: which convs become Dirac-parameterized, the report, the init rule, the inverse.

Also the rule behind it (``conv_geometry.identity_problem``) against its definition: ``delta`` is
the identity of a conv exactly when ``conv(x, delta) == x``; and ``register_dirac`` warning where
it is not. Numeric tolerance: 1e-12 absolute/relative in float64.
"""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

import dirac_torch as dt
from dirac_torch.conv_geometry import DiracIdentityWarning, identity_problem
from dirac_torch.convert import Conversion, convert_model
from dirac_torch.fold import fold_model


class Shifted(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) + 1


def zoo():
    """One conv of each kind the report distinguishes, in a model with a nested container."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 0: channels
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),  # 2: converted
        nn.Conv2d(8, 8, 3, stride=2, padding=1),  # 3: stride
        nn.Conv2d(8, 8, 3),  # 4: padding 0
        nn.Conv2d(8, 8, 4, padding="same"),  # 5: even kernel, PyTorch's "same"
        nn.Sequential(nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 5, padding=4, dilation=2)),  # 6.0, 6.1
        nn.ConvTranspose2d(8, 8, 3, padding=1),  # 7
        dt.DiracConv2d(8, 8, 3),  # 8: already parametrized
        Shifted(8, 8, 3, padding=1),  # 9: overrides forward
        nn.Conv2d(8, 8, 3, padding=1),  # 10: excluded by the filter
    )


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_report_names_every_conv_and_why():
    model = zoo()
    conversion = convert_model(model, include=lambda name, conv: name != "10")
    assert isinstance(conversion, Conversion) and conversion.model is not model
    assert conversion.converted == ("2", "6.0", "6.1")
    skipped = conversion.skipped
    assert list(skipped) == ["0", "3", "4", "5", "7", "8", "9", "10"]
    assert skipped["0"].startswith("in_channels=3 != out_channels=8")
    assert skipped["3"].startswith("stride=(2, 2)")
    assert "output is smaller than the input" in skipped["4"]
    assert "shifts the input" in skipped["5"]
    assert skipped["7"] == "transposed convolution"
    assert skipped["8"] == "weight already parametrized"
    assert skipped["9"] == "Shifted overrides forward"
    assert skipped["10"] == "excluded by include"
    text = str(conversion)
    assert text.startswith("converted 3 conv(s), skipped 8") and "skipped    3: stride" in text
    for name in conversion.converted:
        assert parametrize.is_parametrized(conversion.model.get_submodule(name), "weight")
        assert not parametrize.is_parametrized(model.get_submodule(name))  # original untouched


def test_inplace_converts_the_model_itself():
    model = nn.Sequential(nn.Conv1d(4, 4, 3, padding=1))
    assert convert_model(model, inplace=True).model is model
    assert parametrize.is_parametrized(model[0], "weight")


def chain(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 6, 1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 5, padding=2),
    ).to(dtype).eval()


def test_keep_with_per_channel_starts_as_the_conv_plus_identity():
    model = chain()
    converted = convert_model(model, per_channel=True).model.eval()
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        for name in ("2", "4", "7"):
            original, dirac = model.get_submodule(name), converted.get_submodule(name)
            torch.testing.assert_close(dirac(x), original(x) + x, rtol=1e-12, atol=1e-12)


def test_alpha_zero_with_kept_beta_reproduces_the_model():
    model = chain()
    converted = convert_model(model, alpha_init=0.0, per_channel=True).model.eval()
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=1e-12, atol=1e-12)


def test_scalar_keep_uses_the_mean_filter_norm():
    model = chain()
    conv = convert_model(model).model.get_submodule("2")
    norms = model[2].weight.detach().flatten(1).norm(dim=1)
    assert conv.parametrizations.weight[0].beta.shape == ()
    torch.testing.assert_close(conv.parametrizations.weight[0].beta, norms.mean())
    assert conv.parametrizations.weight[0].alpha.item() == 1.0


def test_folding_is_the_inverse():
    model = chain()
    converted = convert_model(model, alpha_init=2.0, beta_init=0.5).model
    folded = fold_model(converted)
    assert [type(m) for m in folded] == [
        nn.Identity if type(m) is nn.BatchNorm2d else type(m) for m in model
    ]
    assert not any(parametrize.is_parametrized(m) for m in folded.modules())
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), converted.eval()(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"include": "2"}, TypeError, "include must be a callable"),
        ({"beta_init": "same"}, ValueError, "beta_init='same' is not accepted"),
        ({"inplace": 1}, TypeError, "inplace must be a bool"),
        ({"alpha": 1.0}, TypeError, r"^convert_model takes no keyword alpha; accepted: include, "),
        ({"init_std": 0.1}, TypeError, r"^convert_model takes no keyword init_std: it keeps the "
                                       r"conv's weight as W"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    model = chain()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=match):
        convert_model(model, **{"inplace": True, **kwargs})
    # refused before any conv is touched, as it is without a conv to convert
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    with pytest.raises(error, match=match):
        convert_model(nn.Sequential(nn.ReLU()), **kwargs)


def test_not_a_module():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got list"):
        convert_model([nn.Conv2d(2, 2, 1)])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@settings(deadline=None, max_examples=60)
@given(
    kernel=st.integers(1, 5),
    dilation=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.one_of(st.integers(0, 6), st.just("same")),
    size=st.integers(13, 16),  # at least the dilated kernel (3 * 4 + 1)
)
def test_identity_problem_is_none_exactly_when_delta_is_the_identity(
    kernel, dilation, stride, padding, size
):
    if padding == "same" and stride != 1:
        return
    conv = nn.Conv1d(2, 2, kernel, stride, padding, dilation, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(dt.dirac_tensor((2, 2, kernel), dtype=torch.float64))
        x = torch.randn(1, 2, size, dtype=torch.float64)
        y = conv(x)
    is_identity = y.shape == x.shape and torch.equal(y, x)
    assert (identity_problem(conv) is None) == is_identity


@pytest.mark.parametrize(
    "conv, warns",
    [
        (lambda: nn.Conv2d(4, 4, 3, padding=1), False),
        (lambda: nn.Conv2d(8, 4, 1), False),  # unequal channels: NCReLU's partial identity
        (lambda: nn.Conv2d(4, 4, 3), True),
        (lambda: nn.Conv2d(4, 4, 4, padding="same"), True),
        (lambda: nn.Conv1d(4, 4, 3, stride=2, padding=1), True),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_register_dirac_warns_where_delta_is_not_the_identity(conv, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dt.register_dirac(conv())
    ours = [w for w in caught if issubclass(w.category, DiracIdentityWarning)]
    assert len(ours) == int(warns)
    if warns:
        assert "delta is not the identity" in str(ours[0].message)


# ------------------------------------------------------------------------ zero-initialised convs


def zero_branch():
    """A Fixup-style residual branch: its last conv starts at zero."""
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    nn.init.zeros_(conv.weight)
    return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), conv)


@pytest.mark.parametrize("per_channel", [False, True])
def test_zero_initialised_conv_starts_as_delta_and_learns(per_channel):
    torch.manual_seed(0)
    model = zero_branch().double()
    conversion = convert_model(model, per_channel=per_channel)
    assert conversion.redrawn == ("2",) and "redrawn    2" in str(conversion)
    converted = conversion.model
    dirac = converted[2].parametrizations.weight[0]
    assert torch.equal(dirac.beta, torch.zeros_like(dirac.beta))  # "keep": still W = 0 ...
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():  # ... so the converted conv starts as delta + 0
        torch.testing.assert_close(converted(x), converted[:2](x), rtol=1e-12, atol=1e-12)
    converted(x).square().sum().backward()
    assert float(dirac.beta.grad.abs().min()) > 0  # beta learns (it got exactly 0 before)
    w_grad = converted[2].parametrizations.weight.original.grad
    assert torch.isfinite(w_grad).all()


def test_only_the_zero_filters_are_redrawn():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight[1:3] = 0
    before = conv.weight.detach().clone()
    converted = convert_model(nn.Sequential(conv), per_channel=True).model[0]
    after = converted.parametrizations.weight.original.detach()
    assert torch.equal(after[[0, 3]], before[[0, 3]])
    assert bool((after[1:3].flatten(1).norm(dim=1) > 0).all())


def test_keep_without_normalize_is_beta_one():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)).double()
    converted = convert_model(model, normalize=False).model
    assert converted[0].parametrizations.weight[0].beta.item() == 1.0
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():  # delta + W: the conv with an identity shortcut
        torch.testing.assert_close(converted(x), model(x) + x, rtol=1e-12, atol=1e-12)


def test_eq14_variant_is_one_call():
    converted = convert_model(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)), normalize=False,
                              learnable=False).model
    dirac = converted[0].parametrizations.weight[0]
    assert not dirac.normalize and dirac.alpha.item() == dirac.beta.item() == 1.0
    assert not any(name.endswith(("alpha", "beta")) for name, _ in converted.named_parameters())


def test_conv_patched_on_the_instance_is_skipped():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1))
    model[0].forward = lambda x: x  # the parametrized weight would never be used
    conversion = convert_model(model)
    assert conversion.converted == ()
    assert conversion.skipped == {"0": "its forward is replaced on the instance"}


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_old_style_weight_and_spectral_norm_convs_are_skipped_with_a_reason():
    model = nn.Sequential(nn.utils.spectral_norm(nn.Conv2d(3, 3, 3, padding=1)),
                          nn.utils.weight_norm(nn.Conv2d(3, 3, 3, padding=1)),
                          nn.Conv2d(3, 3, 3, padding=1))
    conversion = convert_model(model)  # a copy: weight_norm's computed weight is not a leaf
    assert conversion.converted == ("2",)
    assert "old-style torch.nn.utils.spectral_norm" in conversion.skipped["0"]
    assert "use torch.nn.utils.parametrizations.weight_norm" in conversion.skipped["1"]
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(conversion.model[1](x), model[1](x))
    assert convert_model(model, inplace=True).skipped.keys() == {"0", "1"}
