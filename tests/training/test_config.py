"""Paper defaults, presets, the lr schedule, and the weight-decay switch for alpha and beta."""

from __future__ import annotations

import pytest
import torch

from dirac_core import catalog
from dirac_torch.models import diracnet_cifar
from diracnets.config import TrainConfig, preset_config
from diracnets.datasets import Dataset
from diracnets.resume import resumed_config
from diracnets.scales import dirac_parametrizations, parameter_groups, scale_snapshot
from diracnets.trainer import build_model, lr_at


def test_paper_defaults():
    c = TrainConfig()
    assert (c.lr, c.momentum, c.batch_size, c.epochs, c.lr_gamma) == (0.1, 0.9, 128, 200, 0.2)
    assert (c.weight_decay, c.decay_scales, c.arch) == (5e-4, True, "cifar")
    # initial values are the family's: the paper's v1 (alpha 5, beta 1e-3, W ~ N(0, 0.1^2))
    assert (c.alpha_init, c.beta_init, c.init_std) == (None, None, None)
    model = build_model(c, Dataset("stub", None, None, 10, 3, 32))
    assert model.init == catalog.family("cifar").init
    assert (model.init.alpha, model.init.beta, model.init.init_std) == (5.0, 1e-3, 0.1)
    assert c.resolved_milestones() == (60, 120, 160)
    assert [lr_at(c, e) for e in (0, 59, 60, 120, 160, 199)] == pytest.approx(
        [0.1, 0.1, 0.02, 0.004, 0.0008, 0.0008])


def test_presets_and_overrides():
    v1, v2 = preset_config("v1"), preset_config("v2", epochs=3)
    assert (v1.arch, v2.arch, v2.epochs) == ("cifar", "v2_cifar", 3)
    assert v2.resolved_milestones() == (1, 2)
    with pytest.raises(ValueError, match="preset='v3'"):
        preset_config("v3")


@pytest.mark.parametrize("preset, arch", [("v1", "v2_cifar"), ("v1", "v2_imagenet"),
                                          ("v2", "relu_cifar")])
def test_an_arch_the_preset_does_not_pick_is_refused(preset, arch):
    with pytest.raises(ValueError,
                       match=f"preset='{preset}' cannot be combined with arch='{arch}'"):
        preset_config(preset, arch=arch)
    assert preset_config(None, arch=arch).arch == arch
    assert preset_config(preset, arch="imagenet").arch == f"{preset}_imagenet".removeprefix("v1_")


@pytest.mark.parametrize("bad, match", [
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"data": "svhn"}, "data='svhn' is not accepted"),
    ({"milestones": (0,)}, "milestones must be epochs"),
    ({"milestones": (5, 3)}, r"milestones must increase, got \(5, 3\)"),
    ({"milestones": (3, 3)}, "milestones must increase"),
    ({"momentum": 5.0}, r"momentum must be at most 1 .* got 5.0"),
])
def test_bad_settings_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_config_round_trips_and_rejects_unknown_keys():
    c = TrainConfig(milestones=(3, 5), epochs=7)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        TrainConfig.from_dict({"colour": 1})


def test_resume_may_only_change_resumable_settings():
    saved = TrainConfig(epochs=2).to_dict()
    assert resumed_config(saved, {"epochs": 4, "lr": 0.1}).epochs == 4  # same lr is fine
    with pytest.raises(ValueError, match="cannot change lr when resuming"):
        resumed_config(saved, {"lr": 0.5})


@pytest.mark.parametrize("decay_scales", [True, False])
def test_weight_decay_switch_for_alpha_and_beta(decay_scales):
    model = diracnet_cifar(10, in_channels=1, image_size=8)
    groups = parameter_groups(model, 5e-4, decay_scales)
    weights, scales = groups
    assert weights["weight_decay"] == 5e-4
    assert scales["weight_decay"] == (5e-4 if decay_scales else 0.0)
    layers = dirac_parametrizations(model)
    assert len(layers) == 6 and len(scales["params"]) == 12
    expected = {id(p) for _, m in layers for p in (m.alpha, m.beta)}
    assert {id(p) for p in scales["params"]} == expected
    assert len(weights["params"]) + 12 == len(list(model.parameters()))


def test_weight_decay_shrinks_alpha_only_when_switched_on():
    finals = {}
    for decay in (True, False):
        model = diracnet_cifar(10, in_channels=1, image_size=8)
        opt = torch.optim.SGD(parameter_groups(model, 0.1, decay), lr=0.5)
        opt.zero_grad()
        sum(m.alpha.sum() * 0 for _, m in dirac_parametrizations(model)).backward()
        opt.step()  # zero gradient: only weight decay moves alpha
        finals[decay] = scale_snapshot(model)["alpha"]
    assert all(v == pytest.approx(5 * (1 - 0.05)) for v in finals[True].values())
    assert all(v == pytest.approx(5.0) for v in finals[False].values())
    assert list(finals[True]) == ["group0.1", "group0.4", "group1.2", "group1.5", "group2.2",
                                  "group2.5"]


def test_plain_network_has_no_scale_group():
    model = diracnet_cifar(10, in_channels=1, image_size=8, parameterization="plain")
    assert len(parameter_groups(model, 5e-4)) == 1
    assert scale_snapshot(model) == {"alpha": {}, "beta": {}}


@pytest.mark.parametrize("per_channel", [True, False, "beta"])
def test_per_channel_round_trips_through_config_json_as_the_model_doors_take_it(per_channel):
    """The model doors take True, False and "beta"; config.json read back the same (it refused
    "beta" after training with it)."""
    import json

    config = TrainConfig(arch="cifar", depth=10, per_channel=per_channel)
    back = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())), "config.json")
    assert back == config and type(back.per_channel) is type(per_channel)
    assert config.spec(10, 3, 32).options["per_channel"] == per_channel


@pytest.mark.parametrize("value, error", [("yes", ValueError), (1, TypeError),
                                          ("True", ValueError)])
def test_a_per_channel_the_model_doors_refuse_is_refused_at_construction_and_in_a_file(
        value, error):
    with pytest.raises(error, match=r"per_channel.*'beta'") as refused:
        TrainConfig(arch="cifar", depth=10, per_channel=value)
    assert repr(value) in str(refused.value)
    with pytest.raises(ValueError, match=rf"config.json: per_channel.*{value!r}"):
        TrainConfig.from_dict({"arch": "cifar", "depth": 10, "per_channel": value},
                              "config.json")


def test_an_earlier_releases_unused_initial_value_reads_as_none_with_a_warning():
    """Earlier releases recorded init_std for the depth experiment's plain cells, where it set
    nothing; their config.json and checkpoints still read, as the run they describe."""
    from diracnets.config import EarlierReleaseWarning

    record = TrainConfig(arch="cifar", depth=10, parameterization="plain").to_dict()
    with pytest.warns(EarlierReleaseWarning, match=r"config.json was saved by an earlier release: "
                                                   r"init_std=1.0 for a 'plain' "
                                                   r"network, which has no Dirac convolution"):
        config = TrainConfig.from_dict({**record, "init_std": 1.0}, "config.json")
    assert config == TrainConfig.from_dict(record) and config.init_std is None
    dirac = TrainConfig.from_dict({**record, "parameterization": "dirac", "init_std": 1.0})
    assert dirac.init_std == 1.0
