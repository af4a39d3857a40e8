"""save_model / load_model(model=) for models of your own: converted, trained, folded, rebuilt
from a fresh instance of the class and the file's recipe. Reloaded models must compute exactly
what the saved ones did (torch.equal); every refused file or model is a named error."""

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import dirac_torch as dt
from dirac_torch.convert import convert_model
from dirac_torch.fold import fold_model
from dirac_torch.optimizer_groups import param_groups
from dirac_torch.recipe import METADATA_KEY, read_recipe, recipe

X = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(0))


class Residual(nn.Module):
    """A user's block: conv-BN-ReLU twice around a skip connection."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class MyNet(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Residual(8)
        self.down = nn.Conv2d(8, 16, 1, stride=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x):
        return self.head(self.down(self.block(self.stem(x))))


def trained(per_channel=False):
    torch.manual_seed(1)
    model = convert_model(MyNet(), per_channel=per_channel).model
    optimizer = torch.optim.SGD(param_groups(model, 5e-4), lr=0.05, momentum=0.9)
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(X), torch.arange(4))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def assert_same(again, model):
    assert not again.training
    with torch.no_grad():
        assert torch.equal(again(X), model(X))


@pytest.mark.parametrize("per_channel", [False, True])
def test_a_converted_model_comes_back_trainable(per_channel, tmp_path):
    model = trained(per_channel)
    path = dt.save_model(model, tmp_path / "converted.safetensors")
    assert set(read_recipe(path)["dirac"]) == {"block.conv1", "block.conv2"}
    again = dt.load_model(path, model=MyNet())
    assert_same(again, model)
    assert again.state_dict().keys() == model.state_dict().keys()
    assert again.block.conv1.parametrizations.weight[0].per_channel is per_channel


def test_a_folded_model_keeps_its_structure_and_comes_back(tmp_path):
    model = trained()
    folded = fold_model(model, X)
    assert isinstance(folded.stem[1], nn.Identity) and isinstance(folded.stem[2], nn.ReLU)
    assert isinstance(folded.block.bn1, nn.Identity)
    path = dt.save_model(folded, tmp_path / "folded.safetensors")
    assert set(recipe(folded)["identities"]) == {"stem.1", "block.bn1", "block.bn2"}
    again = dt.load_model(path, model=MyNet())
    assert_same(again, folded)
    assert [n for n, _ in again.named_modules()] == [n for n, _ in folded.named_modules()]


def test_a_plain_model_of_your_own_round_trips(tmp_path):
    model = MyNet().eval()
    assert_same(dt.load_model(dt.save_model(model, tmp_path / "m.safetensors"), model=MyNet()),
                model)


def test_float64_and_strict_false_folds_come_back(tmp_path):
    model = trained().double()
    model.block = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(8).double().eval())  # cannot fold
    folded = fold_model(model, strict=False)
    fresh = MyNet()
    fresh.block = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(8))
    again = dt.load_model(dt.save_model(folded, tmp_path / "m.safetensors"), model=fresh)
    assert next(again.parameters()).dtype == torch.float64
    assert isinstance(again.block[1], nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.equal(again(X.double()), folded(X.double()))


def test_a_file_of_your_own_model_needs_model(tmp_path):
    path = dt.save_model(trained(), tmp_path / "m.safetensors")
    with pytest.raises(TypeError, match=r"holds a .*MyNet saved with its recipe: pass .*model="):
        dt.load_model(path)


def test_a_diracnet_file_refuses_model(tmp_path):
    path = dt.save_model(dt.diracnet_cifar(10), tmp_path / "d.safetensors")
    with pytest.raises(ValueError, match="load it with load_model\\(path\\), without model="):
        dt.load_model(path, model=MyNet())


def test_another_architecture_is_named(tmp_path):
    path = dt.save_model(fold_model(trained(), X), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"saved from .*MyNet\) do not fit .*MyNet.*shapes"):
        dt.load_model(path, model=MyNet(classes=7))


def write(tmp_path, description):
    path = tmp_path / "crafted.safetensors"
    save_file({"w": torch.ones(2)}, str(path), metadata={METADATA_KEY: description})
    return path


GOOD = recipe(trained())
OPTIONS = GOOD["dirac"]["block.conv1"]
BAD_RECIPES = {
    "not json": ("{", "not valid JSON"),
    "a list": (json.dumps([]), "fields are list"),
    "extra field": (json.dumps({**GOOD, "code": "x"}), "fields are"),
    "future version": (json.dumps({**GOOD, "format_version": 2}), "format_version is 2"),
    "bool version": (json.dumps({**GOOD, "format_version": True}), "format_version is True"),
    "identities not names": (json.dumps({**GOOD, "identities": [1]}), "list of module names"),
    "identity twice": (json.dumps({**GOOD, "identities": ["a", "a"]}), "a module twice"),
    "missing option": (json.dumps({**GOOD, "dirac": {"x": {"per_channel": True}}}),
                       "must have exactly the options"),
    "bad policy": (json.dumps({**GOOD, "dirac": {"x": {**OPTIONS, "policy": "eye"}}}),
                   "policy='eye' is not accepted"),
    "negative eps": (json.dumps({**GOOD, "dirac": {"x": {**OPTIONS, "eps": -1}}}),
                     "eps must be a finite number > 0"),
    "string flag": (json.dumps({**GOOD, "dirac": {"x": {**OPTIONS, "normalize": "yes"}}}),
                    "normalize must be a bool"),
}


@pytest.mark.parametrize("case", BAD_RECIPES, ids=list(BAD_RECIPES))
def test_a_bad_recipe_is_refused_before_anything_is_built(case, tmp_path):
    text, match = BAD_RECIPES[case]
    fresh = MyNet()
    before = [n for n, _ in fresh.named_modules()]
    with pytest.raises(ValueError, match=match):
        dt.load_model(write(tmp_path, text), model=fresh)
    assert [n for n, _ in fresh.named_modules()] == before


@pytest.mark.parametrize("field, value, match", [
    ("dirac", {"head.2": OPTIONS}, r"Dirac conv 'head\.2' is Linear in the model"),
    ("dirac", {"nowhere": OPTIONS}, "Dirac conv 'nowhere' is NoneType"),
    ("identities", ["stem.0"], r"folded batch norm 'stem\.0' is Conv2d"),
    ("identities", [""], "folded batch norm '' is MyNet"),
])
def test_a_recipe_that_does_not_fit_the_model_is_named(field, value, match, tmp_path):
    path = write(tmp_path, json.dumps({**GOOD, field: value}))
    with pytest.raises(ValueError, match=match):
        dt.load_model(path, model=MyNet())


def test_options_that_differ_from_the_models_own_dirac_conv_are_named(tmp_path):
    net = nn.Sequential(dt.DiracConv2d(3, 3, 3))
    path = dt.save_model(net, tmp_path / "n.safetensors")
    with pytest.raises(ValueError, match=r"was saved with .*'policy': 'tile'.* but the model's"):
        dt.load_model(path, model=nn.Sequential(dt.DiracConv2d(3, 3, 3, policy="min")))
    assert_same(dt.load_model(path, model=nn.Sequential(dt.DiracConv2d(3, 3, 3))), net.eval())


class Shared(nn.Module):
    """An even-kernel Dirac conv (pad + conv once folded) and a conv used twice."""

    def __init__(self):
        super().__init__()
        self.even = dt.DiracConv2d(3, 4, 2)
        self.bn = nn.BatchNorm2d(4)
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.tail = nn.Sequential(self.shared, nn.BatchNorm2d(4), nn.ReLU(), self.shared)

    def forward(self, x):
        return self.tail(torch.relu(self.bn(self.even(x))))


def test_shared_modules_and_padded_folds_round_trip(tmp_path):
    torch.manual_seed(3)
    model = convert_model(Shared()).model.eval()
    folded = fold_model(model, X)
    assert isinstance(folded.even, nn.Sequential)  # pad + conv
    for saved in (model, folded):
        again = dt.load_model(dt.save_model(saved, tmp_path / "s.safetensors"), model=Shared())
        assert_same(again, saved)


def test_a_file_of_your_own_model_with_nan_weights_is_refused(tmp_path):
    """The recipe door reads weights through the same checks as every loader."""
    model = MyNet()
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    path = dt.save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"m.safetensors'.*NaN or infinite values in \['"):
        dt.load_model(path, model=MyNet())


def test_a_model_with_per_channel_beta_saves_and_loads_back(tmp_path):
    """The recipe checked per_channel as a bool, so the file save_model wrote for
    per_channel="beta" (which every other door accepts) was refused as untrusted."""
    def make():
        return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False))

    model = make()
    dt.register_dirac(model[0], per_channel="beta")
    path = tmp_path / "m.safetensors"
    dt.save_model(model, path)
    back = dt.load_model(path, model=make())
    assert back[0].parametrizations.weight[0].per_channel == "beta"
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(back(x), model.eval()(x))
