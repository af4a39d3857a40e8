"""The doors that make a run's settings (``TrainConfig``, ``preset_config``, ``diracnets train``,
``config.json``, ``experiment depth``) treat the same settings the same way."""

from __future__ import annotations

import numpy as np
import pytest

from dirac_core.untrusted import UntrustedInputError
from diracnets.config import TrainConfig

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
    with pytest.raises(TypeError, match=rf"^{name}\b"):
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
