"""param_groups: every learnable tensor of a model in exactly one optimizer group, by kind."""

import pytest
import torch
from torch import nn

import dirac_torch as dt
from dirac_torch.convert import convert_model
from dirac_torch.optimizer_groups import param_groups


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return x + torch.relu(self.bn(self.conv(x)))


def model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Block(), dt.DiracConv2d(8, 8, 3),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 2))


def test_groups_partition_the_parameters_by_kind():
    net = convert_model(model()).model
    groups = {g["name"]: g for g in param_groups(net, 5e-4, scale_decay=0.0, norm_decay=1e-5)}
    names = {id(p): n for n, p in net.named_parameters()}
    members = {k: sorted(names[id(p)] for p in g["params"]) for k, g in groups.items()}
    dirac = ("1.conv.parametrizations.weight", "2.parametrizations.weight")
    assert members["dirac_scales"] == sorted(f"{c}.0.{s}" for c in dirac for s in ("alpha", "beta"))
    assert members["weights"] == sorted(["0.weight", *(f"{c}.original" for c in dirac), "4.weight"])
    assert members["norms_biases"] == sorted(["0.bias", "1.conv.bias", "1.bn.weight", "1.bn.bias",
                                              "4.bias"])
    assert sum(len(v) for v in members.values()) == len(names)
    assert [g["weight_decay"] for g in groups.values()] == [0.0, 5e-4, 1e-5]


def test_decays_default_to_weight_decay_as_in_the_paper():
    groups = param_groups(model(), 5e-4)
    assert [g["weight_decay"] for g in groups] == [5e-4] * 3


def test_frozen_parameters_and_empty_groups_are_left_out():
    net = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.Linear(2, 2))
    net[1].requires_grad_(False)
    assert [(g["name"], len(g["params"])) for g in param_groups(net, 0.0)] == [("weights", 1)]


def test_an_optimizer_with_the_groups_decays_only_what_is_asked():
    net = convert_model(model()).model
    optimizer = torch.optim.SGD(param_groups(net, 0.5, scale_decay=0.0, norm_decay=0.0), lr=1.0)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizer.step()  # no gradients: only decay could move anything, and SGD skips p.grad None
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in net.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (p.dim() >= 2), name


@pytest.mark.parametrize("kwargs, error, match", [
    ({"weight_decay": -1.0}, ValueError, "weight_decay must be a finite number >= 0, got -1.0"),
    ({"weight_decay": 0.1, "scale_decay": float("nan")}, ValueError, "scale_decay must be"),
    ({"weight_decay": "0.1"}, TypeError, "weight_decay must be a real number, got str"),
])
def test_bad_decays_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        param_groups(model(), **kwargs)


def test_not_a_module_is_a_type_error():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got list"):
        param_groups([], 0.1)
