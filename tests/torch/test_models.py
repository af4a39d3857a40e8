"""DiracNet builders: generated from dirac_core.nets, right sizes, right initialisation."""

import doctest

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import dirac_core as dc
import dirac_torch
from dirac_core import nets
from dirac_torch import DiracConv2d, NCReLU, models

CIFAR_VARIANTS = [
    ("diracnet_cifar", {}),
    ("diracnet_cifar", {"width": 2}),
    ("diracnet_cifar", {"depth": 16, "num_classes": 100}),
    ("plain_cifar", {}),
    ("diracnet_relu_cifar", {}),
    ("diracnet_v2_cifar", {}),
    ("resnet_eq14_cifar", {}),
    ("diracnet_cifar", {"activation": "relu", "per_channel": True}),
]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("builder, kw", CIFAR_VARIANTS)
def test_cifar_parameter_count_and_forward(builder, kw):
    torch.manual_seed(0)
    kw = {"depth": 10, **kw}
    model = getattr(models, builder)(**kw)
    assert n_params(model) == nets.count_parameters(model.spec)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, kw.get("num_classes", 10))
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize(
    "builder, kw", [("plain_imagenet", {"depth": 34}), ("resnet_eq14_imagenet", {})]
)
def test_imagenet_parameter_count(builder, kw):
    model = getattr(models, builder)(num_classes=7, **kw)
    assert n_params(model) == nets.count_parameters(model.spec)
    assert model.spec.num_classes == 7


def test_imagenet_diracnet_size_and_forward():
    model = models.diracnet_imagenet(18, num_classes=5).eval()
    assert n_params(model) == nets.count_parameters(model.spec)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_modules_follow_the_spec_names_and_types():
    model = models.diracnet_cifar(10)
    assert [name for name, _ in model.named_children()] == [s.name for s in model.spec.stages]
    expected = {
        nets.BatchNorm: nn.BatchNorm2d, nets.ReLU: nn.ReLU, nets.NCReLU: NCReLU,
        nets.MaxPool: nn.MaxPool2d, nets.GlobalAvgPool: models.GlobalAvgPool,
        nets.Linear: nn.Linear,
    }
    for name, layer in model.spec.layers():
        module = model.get_submodule(name)
        if isinstance(layer, nets.Conv):
            cls = DiracConv2d if layer.parameterization == "dirac" else nn.Conv2d
            assert isinstance(module, cls), name
            assert (module.in_channels, module.out_channels) == (
                layer.in_channels, layer.out_channels)
        else:
            assert isinstance(module, expected[type(layer)]), name
    assert model.spec == nets.diracnet_cifar(10)


def test_build_keeps_the_spec_object():
    spec = nets.diracnet_cifar(10, parameterization="plain")
    assert models.build(spec).spec is spec


def dirac_convs(model):
    return [m for m in model.modules() if isinstance(m, DiracConv2d)]


@pytest.mark.parametrize("init_std", [None, 1.0, 0.03])
def test_dirac_initialisation_follows_the_authors_code(init_std):
    torch.manual_seed(0)
    kw = {} if init_std is None else {"init_std": init_std}
    convs = dirac_convs(models.diracnet_cifar(10, width=2, **kw))
    assert len(convs) == 6
    w = torch.cat([c.parametrizations.weight.original.detach().flatten() for c in convs])
    std = 0.1 if init_std is None else init_std  # their conv_params(..., gain=0.1)
    assert abs(float(w.mean())) < 0.02 * std and abs(float(w.std()) / std - 1.0) < 0.02
    for conv in convs:
        assert conv.alpha.shape == () and conv.alpha.item() == 5.0
        assert conv.beta.shape == () and conv.beta.item() == pytest.approx(1e-3)
        assert isinstance(conv.alpha, nn.Parameter) and conv.dirac.normalize


def test_per_channel_scales():
    # the authors' v2: per-channel alpha 1 and beta 0.1
    for conv in dirac_convs(models.diracnet_v2_cifar(10)):
        assert conv.alpha.shape == conv.beta.shape == (conv.out_channels,)
        assert bool((conv.alpha == 1.0).all())
        assert torch.allclose(conv.beta, torch.full_like(conv.beta, 0.1))
    for conv in dirac_convs(models.diracnet_cifar(10, per_channel=True)):
        assert conv.alpha.shape == (conv.out_channels,) and bool((conv.alpha == 5.0).all())


def test_custom_initial_scales():
    model = models.build(nets.diracnet_cifar(10), alpha_init=2.0, beta_init=0.5)
    assert all(c.alpha.item() == 2.0 and c.beta.item() == 0.5 for c in dirac_convs(model))


@pytest.mark.parametrize("builder", [models.resnet_eq14_cifar, models.resnet_eq14_imagenet])
def test_resnet_convs_use_the_policy_the_spec_records(builder):
    torch.manual_seed(0)
    model = builder(18 if builder is models.resnet_eq14_imagenet else 10, 0.25, policy="min")
    widening = [(name, layer) for name, layer in model.spec.layers()
                if isinstance(layer, nets.Conv) and layer.parameterization == "resnet"
                and layer.in_channels != layer.out_channels]
    assert widening  # where "min" and "tile" differ
    for name, layer in widening:
        assert layer.policy == "min"
        conv = model.get_submodule(name)
        w = conv.parametrizations.weight.original.detach().numpy()
        delta = dc.dirac_tensor(w.shape, policy="min")
        assert not np.array_equal(delta, dc.dirac_tensor(w.shape))
        np.testing.assert_allclose(conv.weight.detach().numpy(), delta + w, rtol=0, atol=1e-6)


def test_resnet_is_delta_plus_w_with_fixed_scales():
    torch.manual_seed(0)
    model = models.resnet_eq14_cifar(10)
    convs = dirac_convs(model)
    assert convs
    for conv in convs:
        assert not isinstance(conv.alpha, nn.Parameter) and not conv.dirac.normalize
        w = conv.parametrizations.weight.original.detach()
        delta = dc.dirac_tensor(tuple(w.shape))
        np.testing.assert_allclose(conv.weight.detach().numpy(), delta + w.detach().numpy(),
                                   rtol=0, atol=1e-6)
        fan_in = w[0].numel()
        assert abs(float(w.std()) - (2 / fan_in) ** 0.5) < 0.2 * (2 / fan_in) ** 0.5  # He init
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.endswith(("alpha", "beta")) for n in names)


def test_plain_control_has_no_parametrization():
    model = models.plain_cifar(10)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert not dirac_convs(model)


def test_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    model = models.diracnet_v2_cifar(10)
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, name


def test_even_kernel_same_padding_in_a_hand_written_spec():
    """A plain conv with the spec's "same" and an even kernel pads left d*floor(K/2)."""
    torch.manual_seed(0)
    conv = nets.Conv(2, 3, 4, padding="same", bias=True, parameterization="plain")
    spec = nets.NetSpec("even", 2, 9, 3, (nets.Stage("body", (conv,)),))
    model = models.build(spec).double()
    assert n_params(model) == nets.count_parameters(spec)
    x = torch.randn(2, 2, 9, 9, dtype=torch.float64)
    inner = model.get_submodule("body.0.conv")
    expected = dc.conv(x.numpy(), inner.weight.detach().numpy(), inner.bias.detach().numpy(),
                       padding="same")
    np.testing.assert_allclose(model(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: models.diracnet_cifar(11), ValueError, "depth=11 is not accepted"),
        (lambda: models.diracnet_cifar(4), ValueError, "depth=4 is not accepted"),
        (lambda: models.diracnet_cifar("34"), TypeError, "depth must be a positive int, got str"),
        (lambda: models.diracnet_cifar(10, 0), ValueError, "width must be a finite number > 0"),
        (lambda: models.diracnet_cifar(10, "2"), TypeError, "width must be a real number"),
        (lambda: models.diracnet_cifar(10, 0.05), ValueError, "leaves a group with no channels"),
        (lambda: models.diracnet_cifar(10, num_classes=0), ValueError, "num_classes"),
        (lambda: models.diracnet_imagenet(50), ValueError, "depth=50 is not accepted"),
        (lambda: models.diracnet_cifar(10, activation="gelu"), ValueError, "activation='gelu'"),
        (lambda: models.diracnet_cifar(10, parameterization="x"), ValueError,
         "parameterization='x'"),
        (lambda: models.diracnet_cifar(10, per_channel="yes"), ValueError,
         "per_channel='yes' is not accepted"),
        (lambda: models.diracnet_cifar(10, per_channel=1), TypeError,
         "per_channel must be a bool or 'beta'"),
        (lambda: models.diracnet_cifar(10, colour=True), TypeError, "colour"),
        (lambda: models.plain_cifar(10, parameterization="dirac"), TypeError,
         r"plain_cifar\(\) fixes \['parameterization'\]"),
        (lambda: models.build("diracnet34"), TypeError, "spec must be a dirac_core.nets.NetSpec"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bad_layers_in_a_spec():
    conv = nets.Conv(2, 2, 3, padding=1, parameterization="magic")
    with pytest.raises(ValueError, match="conv parameterization='magic' is not accepted"):
        models.build(nets.NetSpec("x", 2, 8, 2, (nets.Stage("s", (conv,)),)))
    with pytest.raises(TypeError, match="cannot build a layer from 'conv'"):
        models.build(nets.NetSpec("x", 2, 8, 2, (nets.Stage("s", ("conv",)),)))


def test_package_exposes_the_builders_lazily():
    assert dirac_torch.diracnet_cifar is models.diracnet_cifar
    assert dirac_torch.diracnet_imagenet is models.diracnet_imagenet


def test_docstring_examples():
    result = doctest.testmod(models, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0


BAD_INPUTS = [  # (shape, dtype, error): each once refused by torch as a bare RuntimeError
    ((2, 2, 8, 8), torch.float32, ValueError),   # channels, at the plain stem conv
    ((3, 8, 8), torch.float32, ValueError),      # unbatched: torch read 3 as the batch
    ((2, 3, 3, 3), torch.float32, ValueError),   # too small for the poolings
    ((2, 3, 8, 8), torch.float16, TypeError),
    ((2, 3, 8, 8), torch.float64, TypeError),
    ((2, 3, 8, 8), torch.int32, TypeError),
]


@pytest.mark.parametrize("kind", ["diracnet", "plain"])
@pytest.mark.parametrize("shape, dtype, error", BAD_INPUTS)
def test_the_network_door_refuses_a_bad_input_as_the_shared_rule_does(kind, shape, dtype,
                                                                      error):
    model = dirac_torch.create_model(f"{kind}10_025_cifar", num_classes=5)
    x = torch.ones(shape, dtype=dtype)
    with pytest.raises(error) as expected:
        nets.check_input(model.spec, shape, dtype, torch.float32)
    for door in (model, model.forward_features):
        with pytest.raises(error) as caught:
            door(x)
        assert str(caught.value) == str(expected.value)
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got ndarray"):
        model(np.ones((2, 3, 8, 8), np.float32))


@pytest.mark.parametrize("name", ["diracnet10_025_cifar", "diracnet18_010_imagenet",
                                  "plain18_010_imagenet"])
def test_the_smallest_image_the_door_takes_is_the_smallest_torch_can_run(name):
    model = dirac_torch.create_model(name, num_classes=3).eval()
    smallest = model.spec.smallest_image
    assert smallest == (4 if "cifar" in name else 29)
    with torch.no_grad():
        assert model(torch.ones(1, 3, smallest, smallest + 5)).shape == (1, 3)
        with pytest.raises((RuntimeError, ValueError)):  # the layers, unchecked
            nn.Sequential.forward(model, torch.ones(1, 3, smallest - 1, smallest))
        with pytest.raises(ValueError, match=f"which takes H and W >= {smallest}"):
            model(torch.ones(1, 3, smallest - 1, smallest))


def test_autocast_mixes_dtypes_through_the_door_and_other_errors_pass_unchanged():
    model = dirac_torch.create_model("diracnet10_025_cifar", num_classes=5).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.ones(2, 3, 8, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16

    def fail(*_):
        raise RuntimeError("not about the input")

    model.group1.register_forward_hook(fail)
    with pytest.raises(RuntimeError, match=r"^not about the input$"):
        model(torch.ones(2, 3, 8, 8))


@pytest.mark.parametrize("shape, message", [
    ((1, 4, 0, 3), r"x has shape \(1, 4, 0, 3\), an empty map; GlobalAvgPool needs at least "
                   r"one position"),
    ((2, 4), r"x must have at least 3 dims \(GlobalAvgPool takes \(N, C, \*spatial\)\)"),
])
def test_global_pooling_refuses_what_has_no_mean_as_the_flax_pooling_does(shape, message):
    # It returned NaN for an empty map and, for (N, C), the mean over every dim.
    with pytest.raises(ValueError, match=message):
        models.GlobalAvgPool()(torch.ones(shape))
    pooled = models.GlobalAvgPool()(torch.arange(24.0).reshape(2, 3, 2, 2))
    torch.testing.assert_close(pooled, torch.arange(24.0).reshape(2, 3, 4).mean(-1), rtol=0, atol=0)
    assert models.GlobalAvgPool()(torch.ones(0, 4, 2, 2)).shape == (0, 4)
