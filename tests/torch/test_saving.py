"""save_model / load_model: any DiracNet, trained or folded, rebuilt from one safetensors file."""

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dirac_torch import load_model, models, save_model
from dirac_torch.fold import fold_model
from dirac_torch.saving import METADATA_KEY, architecture, read_architecture

BUILDERS = [
    ("diracnet_cifar", {}),
    ("diracnet_v2_cifar", {"in_channels": 1, "num_classes": 3}),
    ("plain_cifar", {}),
    ("resnet_eq14_cifar", {"width": 2}),
]


def _trained(builder, kw):
    """A model whose batch norms and scales are no longer at their initial values."""
    torch.manual_seed(0)
    model = getattr(models, builder)(10, **kw)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_()
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("builder, kw", BUILDERS)
@pytest.mark.parametrize("fold", [False, True])
def test_a_saved_model_comes_back_equal(builder, kw, fold, tmp_path):
    model = _trained(builder, kw)
    if fold:
        model = fold_model(model)
    path = save_model(model, tmp_path / "sub" / "net.safetensors")
    assert read_architecture(path)["folded"] is fold
    again = load_model(path)
    assert not again.training and type(again) is type(model)
    assert again.spec == model.spec
    x = torch.randn(3, model.spec.in_channels, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert [n for n, _ in again.named_modules()] == [n for n, _ in model.named_modules()]


def test_float64_models_load_as_float64(tmp_path):
    model = models.diracnet_cifar(10).double().eval()
    again = load_model(save_model(model, tmp_path / "net.safetensors"))
    assert next(again.parameters()).dtype == torch.float64


def test_what_cannot_be_saved_or_loaded_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got str"):
        save_model("net", tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    save_file({"w": torch.ones(2)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ValueError, match="without an architecture description"):
        load_model(tmp_path / "bare.safetensors")
    description = architecture(models.diracnet_cifar(10))
    save_file({"w": torch.ones(2)}, str(tmp_path / "wrong.safetensors"),
              metadata={METADATA_KEY: json.dumps(description)})
    with pytest.raises(ValueError, match="do not fit the described network"):
        load_model(tmp_path / "wrong.safetensors")
    save_file({"w": torch.ones(2)}, str(tmp_path / "future.safetensors"),
              metadata={METADATA_KEY: json.dumps({**description, "format_version": 9})})
    with pytest.raises(ValueError, match="format_version 9"):
        load_model(tmp_path / "future.safetensors")
