"""One definition per name: every door (the catalog, the torch registry, the model functions,
the presets and ``diracnets train --model``, the authors' loaders, JAX) gives the same network
and the same initial distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dirac_core import catalog
from dirac_torch import models, pretrained
from dirac_torch.registry import create_model
from diracnets.cli import _given, build_parser
from diracnets.config import TrainConfig, preset_config
from diracnets.datasets import Dataset
from diracnets.trainer import build_model

# a small network of each family (built through every door below), and its model function
SMALL = {
    "cifar": ("diracnet10_1_cifar", models.diracnet_cifar, 10),
    "relu_cifar": ("diracnet10_1_relu_cifar", models.diracnet_relu_cifar, 10),
    "v2_cifar": ("diracnet10_1_v2_cifar", models.diracnet_v2_cifar, 10),
    "imagenet": ("diracnet18_025_imagenet", models.diracnet_imagenet, 18),
    "jun2017_imagenet": ("diracnet34_025_jun2017_imagenet", None, 34),
    "paper_imagenet": ("diracnet18_025_paper_imagenet", models.diracnet_paper_imagenet, 18),
    "v2_imagenet": ("diracnet18_025_v2_imagenet", models.diracnet_v2_imagenet, 18),
}


def test_every_family_has_a_small_network_here():
    assert set(SMALL) == set(catalog.FAMILIES)


def _trainer_model(name: str, spec, seed: int) -> nn.Module:
    args = build_parser().parse_args(["train", "--model", name])
    config = TrainConfig(**_given(args))
    dataset = Dataset("stub", None, None, spec.num_classes, spec.in_channels, spec.image_size)
    torch.manual_seed(seed)
    return build_model(config, dataset)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_every_torch_door_builds_the_same_network_with_the_same_initial_values(family):
    name, function, depth = SMALL[family]
    spec = catalog.create_spec(name)
    torch.manual_seed(0)
    registry = create_model(name)
    doors = {"trainer": _trainer_model(name, spec, 0)}
    if function is not None:
        torch.manual_seed(0)
        doors["function"] = function(depth, catalog.parse_name(name)[2])
    for door, model in doors.items():
        assert model.spec == registry.spec == spec, door
        assert model.spec.options == spec.options, door
        assert model.init == registry.init == catalog.family(family).init, door
        theirs, ours = model.state_dict(), registry.state_dict()
        assert theirs.keys() == ours.keys(), door
        for key in ours:  # same seed, same draws: the very same numbers
            assert torch.equal(theirs[key], ours[key]), (door, key)


def test_the_presets_are_the_catalogs_families():
    assert preset_config("v1").arch == "cifar" and preset_config("v2").arch == "v2_cifar"
    v2 = _trainer_model("diracnet10_1_v2_cifar", catalog.create_spec("diracnet10_1_v2_cifar"), 0)
    conv = v2.get_submodule("group0.1")
    assert conv.dirac.policy == "min" and bool((conv.alpha == 1.0).all())


@pytest.mark.parametrize("scale", ["alpha", "beta"])
@pytest.mark.parametrize("value, error, message", [
    (-1.0, ValueError, r"_init must be a finite number >= 0, got -1.0"),
    (float("inf"), ValueError, r"_init must be a finite number >= 0, got inf"),
    (True, TypeError, r"_init must be a real number, got bool: True"),
    ("1", TypeError, r"_init must be a real number, got str: '1'"),
])
def test_every_door_refuses_a_bad_initial_scale_alike(scale, value, error, message):
    nnx = pytest.importorskip("flax.nnx")
    from dirac_jax.nn import DiracConv as JaxDiracConv
    from dirac_jax.nn import create_model as jax_create_model
    from dirac_torch import DiracConv2d, convert_model, register_dirac

    name, kw = "diracnet10_1_cifar", {f"{scale}_init": value}
    doors = {
        "registry": lambda: create_model(name, **kw),
        "builder": lambda: models.diracnet_cifar(10, **kw),
        "catalog": lambda: catalog.model_init(name, **kw),
        "jax": lambda: jax_create_model(name, **kw, rngs=nnx.Rngs(0)),
        "config": lambda: TrainConfig(**kw).validate(),
    }
    if isinstance(value, float):  # the layers take arrays too, so their TypeErrors say more
        doors |= {
            "layer": lambda: DiracConv2d(4, 4, 3, **kw),
            "register_dirac": lambda: register_dirac(nn.Conv2d(4, 4, 3, padding=1), **kw),
            "convert_model": lambda: convert_model(
                nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)), **kw),
            "jax layer": lambda: JaxDiracConv(4, 4, (3, 3), **kw, rngs=nnx.Rngs(0)),
        }
        # the command line parses a float
        doors["command"] = lambda: TrainConfig(**_given(build_parser().parse_args(
            ["train", "--model", name, f"--{scale}-init", str(value)]))).validate()
    for call in doors.values():
        with pytest.raises(error, match=scale + message):
            call()


def _arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """Initial values by role, from a torch model."""
    out: dict[str, list[np.ndarray]] = {"alpha": [], "beta": [], "W": [], "gamma": [],
                                        "W_he": [], "fc": [], "fc_bias": []}
    for module in model.modules():
        if hasattr(module, "parametrizations"):
            weight = module.parametrizations.weight.original.detach().numpy()
            out["W"].append(weight.ravel())
            out["W_he"].append(weight.ravel() * np.sqrt(np.prod(weight.shape[1:])))
            out["alpha"].append(module.alpha.detach().numpy().ravel())
            out["beta"].append(module.beta.detach().numpy().ravel())
        elif isinstance(module, nn.BatchNorm2d):
            out["gamma"].append(module.weight.detach().numpy())
        elif isinstance(module, nn.Linear):
            out["fc"].append(module.weight.detach().numpy().ravel() * np.sqrt(module.in_features))
            out["fc_bias"].append(module.bias.detach().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _jax_arrays(net) -> dict[str, np.ndarray]:
    from flax import nnx

    from dirac_jax.nn import DiracConv

    out: dict[str, list[np.ndarray]] = {"alpha": [], "beta": [], "W": [], "gamma": [],
                                        "W_he": [], "fc": [], "fc_bias": []}
    for layer in net.layers:
        if isinstance(layer, DiracConv):
            weight = np.asarray(layer.weight[...])
            out["W"].append(weight.ravel())
            out["W_he"].append(weight.ravel() * np.sqrt(np.prod(weight.shape[1:])))
            out["alpha"].append(np.asarray(layer.alpha[...]).ravel())
            out["beta"].append(np.asarray(layer.beta[...]).ravel())
        elif isinstance(layer, nnx.BatchNorm):
            out["gamma"].append(np.asarray(layer.scale[...]))
        elif isinstance(layer, nnx.Linear):
            kernel = np.asarray(layer.kernel[...])
            out["fc"].append(kernel.ravel() * np.sqrt(kernel.shape[0]))
            out["fc_bias"].append(np.asarray(layer.bias[...]))
    return {k: np.concatenate(v) for k, v in out.items()}


def _expected(init: catalog.Init, arrays: dict[str, np.ndarray]) -> None:
    """The arrays follow ``init``. ``W_he`` and ``fc`` are scaled by sqrt(fan_in): He-normal
    draws then have variance 2 whatever the layer."""
    assert np.all(arrays["alpha"] == np.float32(init.alpha))
    assert np.allclose(arrays["beta"], init.beta)
    gamma = arrays["gamma"]
    if init.bn_weight == "uniform":
        assert gamma.min() >= 0 and gamma.max() < 1 and abs(gamma.mean() - 0.5) < 0.1
    else:
        assert np.all(gamma == 1)
    if init.classifier == "he":
        assert np.all(arrays["fc_bias"] == 0) and abs(arrays["fc"].var() / 2 - 1) < 0.15
    if init.weight == "he":
        assert abs(arrays["W_he"].var() / 2 - 1) < 0.1
    else:
        assert abs(arrays["W"].std() / init.init_std - 1) < 0.05


@pytest.mark.parametrize("family", sorted(SMALL))
def test_torch_and_jax_draw_from_the_same_initial_distributions(family):
    nnx = pytest.importorskip("flax.nnx")
    from dirac_jax.nn import create_model as jax_create_model

    name = SMALL[family][0]
    init = catalog.model_init(name)
    torch.manual_seed(0)
    ours = create_model(name)
    net = jax_create_model(name, rngs=nnx.Rngs(0))
    assert net.spec == ours.spec and net.spec.options == ours.spec.options
    assert net.init == ours.init == init
    for arrays in (_arrays(ours), _jax_arrays(net)):
        _expected(init, arrays)


@pytest.mark.parametrize("layout, name", [
    ("v1", "diracnet10_1_cifar"), ("v1", "diracnet34_025_jun2017_imagenet"),
    ("v1", "diracnet18_025_imagenet"), ("v1-released", "diracnet18_025_paper_imagenet"),
    ("v2", "diracnet10_1_v2_cifar"), ("v2", "diracnet18_025_v2_imagenet"),
])
def test_the_authors_loaders_read_each_layout_as_the_same_family(layout, name):
    model = create_model(name)
    theirs = pretrained.authors_state_dict(model)
    assert pretrained.detect_layout(theirs) == layout
    found, spec = pretrained.authors_spec(theirs)
    assert found == layout and spec == model.spec and spec.options == model.spec.options


@pytest.mark.parametrize("name", catalog.list_models())
def test_every_listed_name_has_one_spec_and_init_through_the_command(name):
    spec = catalog.create_spec(name)
    args = build_parser().parse_args(["train", "--model", name])
    config = TrainConfig(**_given(args))
    got = config.spec(spec.num_classes, spec.in_channels, spec.image_size)
    assert got == spec and got.options == spec.options
    family = catalog.family(catalog.parse_name(name)[3])
    assert catalog.model_init(name) == family.init
    assert (config.alpha_init, config.beta_init, config.init_std) == (None, None, None)


@pytest.mark.parametrize("override", [{"alpha_init": 3.0}, {"beta_init": 0.5},
                                      {"init_std": 9.0}])
def test_no_door_takes_an_initial_value_a_network_without_dirac_convs_would_ignore(override):
    """plain and eq. 14 networks have no Dirac scales and He-initialised W: an override there
    used to build the network unchanged and record the value in ``model.init``."""
    key, value = next(iter(override.items()))
    plain = "plain10_1_cifar"
    doors = {
        "registry": (lambda: create_model(plain, **override), f"model '{plain}'"),
        "function": (lambda: models.plain_cifar(10, **override), f"model '{plain}'"),
        "catalog": (lambda: catalog.model_init(plain, **override), f"model '{plain}'"),
        "build": (lambda: models.build(catalog.create_spec(plain), **override),
                  f"model '{plain}'"),
        "build with init": (lambda: models.build(catalog.create_spec(plain),
                                                 init=catalog.V1_INIT, **override),
                            f"model '{plain}'"),
        "resnet": (lambda: models.resnet_eq14_cifar(10, 1, **override),
                   "parameterization='resnet'"),
        "config": (lambda: TrainConfig(arch="cifar", depth=10, parameterization="plain",
                                       **override), f"model '{plain}'"),
        "command": (lambda: TrainConfig(**_given(build_parser().parse_args(
            ["train", "--model", plain, f"--{key.replace('_', '-')}", str(value)]))),
            f"model '{plain}'"),
    }
    for call, network in doors.values():
        with pytest.raises(ValueError, match=rf"{network}.* no Dirac convolution .*"
                                             rf"{key}={value!r} would set nothing"):
            call()
    # the same value is taken where a Dirac convolution uses it
    assert getattr(create_model("diracnet10_1_cifar", **override).init,
                   {"alpha_init": "alpha", "beta_init": "beta", "init_std": "init_std"}[key]) \
        == value


def test_an_override_of_none_is_no_override_on_any_network():
    assert create_model("plain10_1_cifar", alpha_init=None).init == catalog.V1_INIT
    assert models.resnet_eq14_cifar(10, 1, init_std=None).spec.options["parameterization"] \
        == "resnet"


def test_an_unknown_initial_value_keyword_is_a_type_error_listing_the_accepted_ones():
    for call in (lambda: catalog.model_init("diracnet10_1_cifar", bogus=1),
                 lambda: catalog.spec_init(catalog.create_spec("diracnet10_1_cifar"), bogus=1)):
        with pytest.raises(TypeError, match="bogus; accepted: alpha_init, beta_init, init_std"):
            call()


@pytest.mark.parametrize("name, kw, error, message", [
    # the architecture is checked before the overrides, by every door
    ("plain11_1_cifar", {"alpha_init": 2.0}, ValueError, r"^depth=11 is not accepted"),
    ("plain10_1_cifar", {"alpha_init": 2.0, "activation": "gelu"}, ValueError,
     r"^activation='gelu'"),
    ("plain10_1_cifar", {"init_std": 0.5, "parameterization": "dirac"}, ValueError,
     r"^model 'plain10_1_cifar' fixes parameterization='plain'"),
    ("diracnet10_0_cifar", {"beta_init": -1.0}, ValueError, r"width code '0'"),
    ("diracnet10_1_cifar", {"alpha_init": "1", "in_channels": 0}, ValueError,
     r"^in_channels must be"),
    # then the overrides, against the network the spec describes
    ("plain10_1_cifar", {"alpha_init": 2.0, "bogus": 1}, TypeError, r"bogus"),
    ("plain10_1_cifar", {"alpha_init": 2.0}, ValueError,
     r"^model 'plain10_1_cifar' has no Dirac convolution"),
])
def test_a_call_wrong_twice_gets_the_same_first_error_from_torch_and_jax(name, kw, error,
                                                                       message):
    """torch's create_model checked the overrides first and JAX's the architecture, so
    plain11_1_cifar with alpha_init named alpha_init in one and depth=11 in the other."""
    nnx = pytest.importorskip("flax.nnx")
    from dirac_jax.nn import create_model as jax_create_model

    messages = []
    for call in (lambda: create_model(name, **kw),
                 lambda: jax_create_model(name, **kw, rngs=nnx.Rngs(0)),
                 lambda: catalog.create_spec_and_init(name, **kw)):
        with pytest.raises(error, match=message) as caught:
            call()
        messages.append(str(caught.value))
    assert len(set(messages)) == 1, messages
