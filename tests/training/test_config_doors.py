"""The doors that make a run's settings (``TrainConfig``, ``preset_config``, ``diracnets train``,
``config.json``, ``experiment depth``) treat the same settings the same way."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dirac_core.untrusted import UntrustedInputError
from diracnets.config import TrainConfig, preset_config
from diracnets.recipes import RECIPES, recipe

# values of the wrong type that a truthiness test, a sort or a later conversion used to read
# as something else (nesterov="no" trained with Nesterov on)
WRONG_TYPES = [
    {"nesterov": "no"}, {"decay_scales": "false"}, {"amp": "no"}, {"onnx": 1},
    {"progress": None}, {"precise_bn": 0}, {"train_limit": True}, {"train_limit": "10"},
    {"train_limit": 64.5}, {"milestones": [1.5]}, {"milestones": "ab"}, {"milestones": 5},
    {"milestones": (True,)}, {"data_dir": 5}, {"activation": 5}, {"epochs": 2.0},
    {"lr": True}, {"alpha_init": True}, {"out": 5}, {"recipe": None}, {"per_channel": 1},
    {"seed": 3.0}, {"width": "1"},
]


@pytest.mark.parametrize("given", WRONG_TYPES, ids=lambda g: f"{g}")
def test_a_value_of_the_wrong_type_is_refused_at_every_door(given):
    (name, value), = given.items()
    # TypeError, or the ValueError of a name rule (one_of: recipe=None is no recipe)
    with pytest.raises(TypeError if name != "recipe" else ValueError, match=rf"^{name}\b"):
        TrainConfig(**given)
    # and config.json's reader refuses the same value, naming the same field
    with pytest.raises(UntrustedInputError, match=f"{name}="):
        TrainConfig.from_dict({**TrainConfig().to_dict(), name: value}, "config.json")


@pytest.mark.parametrize("given, stored", [
    ({"seed": np.int64(3)}, {"seed": 3}), ({"depth": np.int64(10)}, {"depth": 10}),
    ({"workers": np.int32(1)}, {"workers": 1}), ({"width": np.float32(0.5)}, {"width": 0.5}),
    ({"nesterov": np.bool_(True)}, {"nesterov": True}),
    ({"milestones": [np.int64(2), 5]}, {"milestones": (2, 5)}),
    ({"train_limit": np.int64(64)}, {"train_limit": 64}),
])
def test_numpy_scalars_are_stored_as_python_numbers_and_round_trip(given, stored):
    config = TrainConfig(**given)
    for name, value in stored.items():
        assert getattr(config, name) == value
        assert type(getattr(config, name)) is type(value)
    assert TrainConfig.from_dict(config.to_dict(), "config.json") == config


@pytest.mark.parametrize("given", [
    {"milestones": [1, 2]}, {"milestones": ()}, {"width": 1}, {"per_channel": "beta"},
    {"train_limit": 64}, {"data_dir": "x"}, {"nesterov": True, "amp": False},
])
def test_what_is_accepted_is_what_config_json_reads_back(given):
    config = TrainConfig(**given)
    assert TrainConfig.from_dict(config.to_dict(), "config.json") == config


def cli_config(monkeypatch, argv: list[str]) -> TrainConfig:
    """The config ``diracnets train ARGV`` would train (nothing is trained)."""
    from diracnets import run
    from diracnets.cli import main

    built = []
    monkeypatch.setattr(run, "run_training", lambda config, **kw: built.append(config) or {})
    assert main(["train", *argv]) == 0
    return built[0]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_recipe_from_python_is_the_recipe_on_the_command_line(name, monkeypatch):
    config = preset_config(recipe=name, out="x")
    assert config == cli_config(monkeypatch, ["--recipe", name, "--out", "x"])
    for field, value in recipe(name).settings.items():
        assert getattr(config, field) == value, field
    # an option given on top still wins, at both doors; an arch replaces the family and depth
    given = preset_config(recipe=name, epochs=3, arch="v2_cifar", out="x")
    assert (given.epochs, given.arch, given.depth) == (3, "v2_cifar", TrainConfig.depth)
    assert given == cli_config(monkeypatch, ["--recipe", name, "--epochs", "3", "--arch",
                                             "v2_cifar", "--out", "x"])


def test_an_authors_recipe_sets_its_numbers_and_family():
    config = preset_config(recipe="authors-v2-imagenet")
    assert (config.arch, config.depth, config.epochs, config.batch_size) == (
        "v2_imagenet", 18, 100, 256)
    assert (config.milestones, config.lr_gamma, config.amp) == ((29, 59, 89), 0.1, False)
    # TrainConfig on its own takes every field as given (documented; preset_config applies)
    bare = TrainConfig(recipe="authors-v2-imagenet")
    assert (bare.arch, bare.epochs, bare.amp) == ("cifar", 200, True)


def test_a_preset_with_an_authors_recipe_is_refused_at_both_doors(capsys):
    from diracnets.cli import main

    with pytest.raises(ValueError, match="preset='v2' cannot be combined with recipe="):
        preset_config("v2", recipe="authors-v1-cifar")
    assert main(["train", "--preset", "v2", "--recipe", "authors-v1-cifar"]) == 2
    assert "preset='v2' cannot be combined" in capsys.readouterr().err
    assert preset_config("v2", recipe="ours").arch == "v2_cifar"


@pytest.mark.parametrize("arch", ["v2_cifar", "cifar", "imagenet", "paper_imagenet"])
def test_no_preset_means_the_same_at_every_door(arch, monkeypatch):
    config = TrainConfig(arch=arch, out="x")
    assert preset_config(arch=arch, out="x") == config
    assert cli_config(monkeypatch, ["--arch", arch, "--out", "x"]) == config


def test_preset_v1_refuses_a_v2_family_at_every_door(capsys):
    from diracnets.cli import main

    with pytest.raises(ValueError, match="preset='v1' cannot be combined with arch='v2_cifar'"):
        preset_config("v1", arch="v2_cifar")
    assert main(["train", "--preset", "v1", "--arch", "v2_cifar"]) == 2
    assert "preset='v1' cannot be combined" in capsys.readouterr().err


@pytest.mark.parametrize("given, match", [
    ({"depth": 11}, "depth=11"), ({"activation": "gelu"}, "activation='gelu'"),
    ({"arch": "imagenet", "depth": 20}, "depth=20"), ({"width": 0.01}, "width=0.01"),
])
def test_a_network_the_family_cannot_build_is_refused_at_construction(given, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**given)
    with pytest.raises(UntrustedInputError, match=match):
        TrainConfig.from_dict({**TrainConfig().to_dict(), **given}, "config.json")


def test_a_family_fixed_variant_is_refused_alike_at_every_door(monkeypatch, tmp_path, capsys):
    """TrainConfig(arch="v2_cifar", per_channel=False) was accepted and refused only when the
    run built its network; every door now refuses it at once, in the catalog's words."""
    from dirac_torch.models import diracnet_v2_cifar
    from dirac_torch.registry import create_model
    from diracnets import run
    from diracnets.cli import main

    message = "model family 'v2_cifar' fixes per_channel=True; got per_channel=False"
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(arch="v2_cifar", depth=10, per_channel=False)
    config = TrainConfig(arch="v2_cifar", depth=10)
    config.per_channel = False
    with pytest.raises(ValueError, match=re.escape(message)):
        config.validate()
    with pytest.raises(UntrustedInputError, match=re.escape(f"config.json: {message}")):
        TrainConfig.from_dict(config.to_dict(), "config.json")
    with pytest.raises(ValueError, match=re.escape(message)):
        diracnet_v2_cifar(10, 1, per_channel=False)
    with pytest.raises(ValueError, match=re.escape(message)):
        create_model("diracnet10_1_v2_cifar", per_channel=False)
    monkeypatch.setattr(run, "run_training", lambda config, **kw: pytest.fail("trained"))
    assert main(["train", "--arch", "v2_cifar", "--depth", "10", "--no-per-channel",
                 "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="fixes activation='relu'; got activation='ncrelu'"):
        TrainConfig(arch="relu_cifar", depth=10, activation="ncrelu")
    assert TrainConfig(arch="v2_cifar", depth=10, per_channel=True).per_channel is True


@pytest.mark.parametrize("depths, settings, match", [
    ((10, 11), {}, "depth=11"),
    ((10,), {"arch": "relu_cifar", "activation": "ncrelu"}, "fixes activation='relu'"),
])
def test_the_depth_experiment_checks_every_cell_before_any_folder(tmp_path, depths, settings,
                                                                  match):
    from diracnets.experiment import depth_experiment

    out = tmp_path / "depth"
    with pytest.raises(ValueError, match=match):
        depth_experiment(depths, out=out, epochs=1, train_limit=64, progress=False, **settings)
    assert not out.exists()


def test_the_depth_command_refuses_a_depth_before_training(tmp_path, capsys):
    from diracnets.cli import main

    out = tmp_path / "depth"
    assert main(["experiment", "depth", "--depths", "10", "11", "--epochs", "1",
                 "--train-limit", "64", "--no-progress", "--out", str(out)]) == 2
    assert "depth=11" in capsys.readouterr().err
    assert not out.exists()
