"""The timm door: registry names as timm models, timm's model API, reparameterize_model, validation.

Exactness is asserted in float64 (relative 2-norm error <= 1e-12) and float32 (<= 1e-6) on
small widths of every registry architecture; weights are compared bit for bit.
"""

import doctest
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

timm_models = pytest.importorskip("dirac_torch.timm_models", reason="needs the [timm] extra")
import timm  # noqa: E402  (importable once dirac_torch.timm_models is)
from timm.utils import reparameterize_model  # noqa: E402

from dirac_core import nets  # noqa: E402
from dirac_torch import DiracConv2d, registry  # noqa: E402
from dirac_torch.convert import convert_model  # noqa: E402
from dirac_torch.fold import fold_model  # noqa: E402
from dirac_torch.pretrained import (  # noqa: E402
    RELEASED,
    AuthorsCheckpointError,
    authors_state_dict,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_fold import randomize  # noqa: E402

NAMES = registry.list_models()
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


def relative(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------- registration


def test_docstring_examples():
    result = doctest.testmod(timm_models, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_every_registry_name_is_a_timm_model_with_its_config():
    assert set(NAMES) <= set(timm.list_models())
    for name in NAMES:
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        spec = registry.create_spec(name)
        assert cfg["input_size"] == (spec.in_channels, spec.image_size, spec.image_size)
        assert cfg["num_classes"] == spec.num_classes
        layers = dict(spec.layers())
        assert isinstance(layers[cfg["first_conv"]], nets.Conv)
        assert isinstance(layers[cfg["classifier"]], nets.Linear)
        assert f"parameters: {nets.count_parameters(spec):,}" in cfg["notes"][0]


def test_the_released_networks_name_the_authors_files():
    for name, files in RELEASED.items():
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.url.endswith(files[0]) and files[1] in " ".join(cfg.notes)
    assert timm.list_pretrained("diracnet*") == sorted(RELEASED)
    notes = timm.models.get_pretrained_cfg("diracnet18_v2_imagenet").notes
    assert ("published parameter count: 11.7M (the authors' v2 notebook "
            "(diracnet-export.ipynb))") in notes


@pytest.mark.parametrize("name", NAMES)
def test_timm_create_model_is_the_registry_call(name, monkeypatch):
    calls, create = [], registry.create_model

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return create("plain10_1_cifar")  # small: the call is what is checked

    monkeypatch.setattr(registry, "create_model", spy)
    timm.create_model(name)
    (args, kwargs), = calls
    assert args[0] == name and set(kwargs) <= {"in_channels"}
    # The defaults timm fills in from the config are the registry's own: the same network.
    assert registry.create_spec(*args, **kwargs) == registry.create_spec(name)


@pytest.mark.parametrize("name", ["plain34_2_cifar", "diracnet34_2_v2_cifar"])
def test_timm_and_the_registry_draw_the_same_weights(name):
    # Bit for bit from one seed: the same parameters and the same initial distributions.
    torch.manual_seed(3)
    ours = registry.create_model(name, num_classes=7)
    torch.manual_seed(3)
    theirs = timm.create_model(name, num_classes=7)
    assert type(theirs) is type(ours) and theirs.spec == ours.spec
    assert same_state(theirs, ours)
    assert theirs.pretrained_cfg["architecture"] == name and theirs.default_cfg is not None


def test_unsupported_timm_keywords_are_refused():
    with pytest.raises(ValueError, match="global_pool='max'"):
        timm.create_model("plain34_2_cifar", global_pool="max")
    with pytest.raises(ValueError, match=r"drop_rate=0\.2"):
        timm.create_model("plain34_2_cifar", drop_rate=0.2)


def test_in_chans_reaches_the_stem():
    model = timm.create_model("plain34_2_cifar", in_chans=1)
    assert model.spec.in_channels == 1 and model.stem[0].in_channels == 1


@pytest.mark.parametrize("kwargs", [{"in_channels": 1}, {"in_chans": 1, "in_channels": 3}])
def test_in_channels_is_refused_for_in_chans(kwargs):
    """timm always passes in_chans (3 unless given), which silently replaced in_channels."""
    with pytest.raises(TypeError, match=rf"takes no keyword in_channels .* pass "
                                        rf"in_chans={kwargs['in_channels']}, timm's name"):
        timm.create_model("plain34_2_cifar", **kwargs)


def test_the_pretrained_config_follows_image_size():
    model = timm.create_model("plain34_2_cifar", image_size=8)
    assert model.spec.image_size == 8
    assert model.pretrained_cfg["input_size"] == (3, 8, 8)
    assert model.pretrained_cfg["pool_size"] == (2, 2)
    assert timm.data.resolve_data_config(model=model)["input_size"] == (3, 8, 8)
    overlaid = timm.create_model("plain34_2_cifar", image_size=8,
                                 pretrained_cfg_overlay={"input_size": (3, 16, 16)})
    assert overlaid.pretrained_cfg["input_size"] == (3, 16, 16)  # the caller's overlay wins
    assert timm.create_model("plain34_2_cifar").pretrained_cfg["input_size"] == (3, 32, 32)


# ---------------------------------------------------------------------------- pretrained

V2 = "diracnet34_2_v2_cifar"  # the smallest registered Dirac network


@pytest.fixture(scope="module")
def v2_source():
    """Trained-looking weights of ``V2``: random Dirac scales and batch-norm statistics."""
    torch.manual_seed(1)
    return randomize(registry.create_model(V2), 1)


@pytest.fixture(scope="module")
def v2_file(v2_source, tmp_path_factory):
    """``v2_source`` saved in the authors' v2 layout (their ``diracnet18-v2_checkpoint.pth``)."""
    path = tmp_path_factory.mktemp("weights") / "v2.pth"
    torch.save(authors_state_dict(v2_source), path)
    return str(path)


def test_pretrained_overlay_loads_an_authors_file_offline(v2_source, v2_file):
    model = timm.create_model(V2, pretrained=True, pretrained_cfg_overlay={"file": v2_file})
    assert same_state(model, v2_source)


def test_pretrained_overlay_loads_our_own_state_dict(tmp_path):
    torch.manual_seed(1)
    source = randomize(registry.create_model("plain34_2_cifar"))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "ours.pth")  # as timm saves
    model = timm.create_model("plain34_2_cifar", pretrained=True,
                              pretrained_cfg_overlay={"file": str(tmp_path / "ours.pth")})
    assert same_state(model, source)


def test_timm_adapts_our_pretrained_stem_to_in_chans(tmp_path):
    source = registry.create_model("plain34_2_cifar")
    torch.save(source.state_dict(), tmp_path / "ours.pth")
    model = timm.create_model("plain34_2_cifar", pretrained=True, in_chans=1,
                              pretrained_cfg_overlay={"file": str(tmp_path / "ours.pth")})
    stem = model.get_submodule(timm.models.get_pretrained_cfg("plain34_2_cifar").first_conv)
    assert stem.weight.shape[1] == 1  # timm sums the pretrained RGB filters for one channel
    assert torch.allclose(stem.weight[:, 0], source.stem[0].weight.sum(1))


def test_pretrained_with_other_classes_keeps_all_but_the_classifier(v2_source, v2_file):
    model = timm.create_model(V2, pretrained=True, num_classes=3,
                              pretrained_cfg_overlay={"file": v2_file})
    ours, theirs = model.state_dict(), v2_source.state_dict()
    classifier = timm.models.get_pretrained_cfg(V2).classifier
    kept = [k for k in ours if not k.startswith(classifier)]
    assert len(kept) == len(ours) - 2 and all(torch.equal(ours[k], theirs[k]) for k in kept)
    assert ours[f"{classifier}.weight"].shape == (3, model.num_features)


def test_a_file_that_does_not_fit_names_the_mismatch(tmp_path):
    torch.save(authors_state_dict(registry.create_model("diracnet10_1_v2_cifar")),
               tmp_path / "w.pth")
    with pytest.raises(AuthorsCheckpointError, match=r"'conv' has shape \(16, 3, 3, 3\)"):
        timm.create_model(V2, pretrained=True,
                          pretrained_cfg_overlay={"file": str(tmp_path / "w.pth")})


def test_a_file_of_our_layout_with_other_shapes_names_the_first_mismatch(tmp_path):
    torch.save(registry.create_model("diracnet34_1_cifar").state_dict(), tmp_path / "w.pth")
    with pytest.raises(AuthorsCheckpointError,
                       match=r"'stem.0.weight' has shape \(16, 3, 3, 3\); 'stem.0.weight' needs "
                             r"\(32, 3, 3, 3\)"):
        timm.create_model("diracnet34_2_cifar", pretrained=True,
                          pretrained_cfg_overlay={"file": str(tmp_path / "w.pth")})


def test_a_pretrained_file_with_nan_weights_is_refused(tmp_path):
    from dirac_core.untrusted import UntrustedInputError

    source = registry.create_model("plain34_2_cifar")
    with torch.no_grad():
        source.stem[0].weight[0, 0, 0, 0] = float("nan")
    torch.save(source.state_dict(), tmp_path / "nan.pth")
    with pytest.raises(UntrustedInputError,
                       match=r"nan.pth'.*NaN or infinite values in \['stem.0.weight'\]"):
        timm.create_model("plain34_2_cifar", pretrained=True,
                          pretrained_cfg_overlay={"file": str(tmp_path / "nan.pth")})
    theirs = authors_state_dict(registry.create_model(V2))
    theirs["conv"][0, 0, 0, 0] = float("inf")
    torch.save(theirs, tmp_path / "theirs.pth")
    with pytest.raises(AuthorsCheckpointError, match=r"NaN or infinite values in \['conv'\]"):
        timm.create_model(V2, pretrained=True,
                          pretrained_cfg_overlay={"file": str(tmp_path / "theirs.pth")})


# ---------------------------------------------------------------------------- model API


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return randomize(registry.create_model("diracnet10_050_cifar", num_classes=5)).eval()


def test_forward_features_and_head_compose_to_forward(small):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = small.forward_features(x)
        assert features.shape == (2, small.num_features, 8, 8)
        assert torch.equal(small.forward_head(features), small(x))
        pooled = small.forward_head(features, pre_logits=True)
    assert pooled.shape == (2, small.num_features) == (2, small.head_hidden_size)
    assert torch.allclose(small.get_classifier()(pooled), small(x))


def test_reset_classifier_rebuilds_the_head_and_the_spec(small):
    model = registry.create_model("diracnet10_050_cifar", num_classes=5)
    model.reset_classifier(3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3) and model.num_classes == 3
    assert sum(p.numel() for p in model.parameters()) == nets.count_parameters(model.spec)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity) and model.spec.num_classes == 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x), True))
    for bad, match in ((-1, "num_classes"), (2.0, "num_classes")):
        with pytest.raises(ValueError, match=match):
            model.reset_classifier(bad)
    with pytest.raises(ValueError, match="global_pool='max'"):
        model.reset_classifier(3, "max")


@pytest.mark.parametrize(("name", "size", "reductions"), [
    ("plain34_2_cifar", 32, [1, 1, 2, 4]),
    ("plain18_imagenet", 64, [4, 4, 8, 16, 32]),
])
def test_features_only_returns_every_stage(name, size, reductions):
    torch.manual_seed(0)
    full = timm.create_model(name).eval()
    torch.manual_seed(0)
    features = timm.create_model(name, features_only=True).eval()
    assert features.feature_info.reduction() == reductions
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        maps = features(x)
        expected, y = [], x
        for stage in list(full.children())[:-1]:
            y = stage(y)
            expected.append(y)
    assert [tuple(m.shape) for m in maps] == [
        (2, c, size // r, size // r)
        for c, r in zip(features.feature_info.channels(), reductions, strict=True)]
    assert all(torch.equal(a, b) for a, b in zip(maps, expected, strict=True))


# ---------------------------------------------------------------------------- fusing


def small_width(family):
    return 0.0625 if "imagenet" in family else 0.25


@pytest.mark.parametrize(("name", "dtype"), [
    *((name, torch.float64) for name in NAMES),
    ("diracnet34_2_cifar", torch.float32), ("diracnet18_v2_imagenet", torch.float32),
])
def test_reparameterize_model_is_fold_model_on_every_registry_architecture(name, dtype):
    kind, depth, _, family = registry.parse_name(name)
    small = registry.model_name(kind, depth, small_width(family), family)  # the same layers
    torch.manual_seed(0)
    model = randomize(registry.create_model(small).to(dtype)).eval()
    fused, folded = reparameterize_model(model), fold_model(model)
    assert [type(m) for m in fused.modules()] == [type(m) for m in folded.modules()]
    x = torch.randn(1, 3, 32, 32, dtype=dtype)
    with torch.no_grad():  # fold_model's own tests compare folded with unfolded networks
        assert relative(fused(x), folded(x)) <= TOLERANCE[dtype]
    assert not any(parametrize.is_parametrized(m) for m in fused.modules())


class ConvBNReLU(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a = ConvBNReLU(c, c)
        self.b = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(x + self.b(self.a(x)))


class UserNet(nn.Module):
    """A user's network: custom blocks, a skip connection, a strided conv, a Dirac layer."""

    def __init__(self):
        super().__init__()
        self.stem = ConvBNReLU(3, 8)
        self.body = nn.Sequential(Residual(8), ConvBNReLU(8, 8, stride=2), Residual(8))
        self.dirac = DiracConv2d(8, 8, 2)  # even kernel: the spec's asymmetric "same"
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.dirac(self.body(self.stem(x))).mean(dim=(2, 3)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reparameterize_model_is_fold_model_on_a_converted_user_model(dtype):
    torch.manual_seed(0)
    conversion = convert_model(UserNet())
    assert len(conversion.converted) == 4  # not the 3 -> 8 stem nor the stride-2 conv
    model = randomize(conversion.model.to(dtype)).eval()
    x = torch.randn(2, 3, 12, 12, dtype=dtype)
    fused = reparameterize_model(model)
    folded = fold_model(model, example_input=x)
    with torch.no_grad():
        assert relative(fused(x), folded(x)) <= TOLERANCE[dtype]
    assert not any(parametrize.is_parametrized(m) for m in fused.modules())
    assert not any(isinstance(m, DiracConv2d) for m in fused.modules())
    # The original is untouched (reparameterize_model works on a copy).
    assert parametrize.is_parametrized(model.body[0].a.conv)


def test_fuse_refuses_what_a_plain_conv_would_not_compute():
    layer = DiracConv2d(4, 4, 3)
    layer.register_forward_hook(lambda m, args, out: out * 2)
    with pytest.raises(ValueError, match="forward hooks"):
        layer.fuse()

    class Halved(DiracConv2d):
        def forward(self, x):
            return super().forward(x) / 2

    with pytest.raises(TypeError, match="overrides forward"):
        Halved(4, 4, 3).fuse()


# ---------------------------------------------------------------------------- validation


def image_folder(root, classes=2, per_class=3, size=40):
    rng = np.random.default_rng(0)
    from PIL import Image

    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def reference_logits(model, root, cfg):
    """The images through the config's eval pipeline written out: resize, crop, normalize."""
    from PIL import Image

    size = cfg["input_size"][-1]
    scaled = int(size / cfg["crop_pct"])
    batch, targets = [], []
    for target, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for path in sorted(folder.iterdir()):
            image = Image.open(path).convert("RGB").resize((scaled, scaled), Image.BILINEAR)
            left = (scaled - size) // 2
            image = image.crop((left, left, left + size, left + size))
            array = np.asarray(image, dtype=np.float32) / 255
            array = (array - np.array(cfg["mean"])) / np.array(cfg["std"])
            batch.append(torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32)))
            targets.append(target)
    with torch.no_grad():
        return model(torch.stack(batch)), torch.tensor(targets)


def test_timm_validation_runs_on_a_diracnet(v2_file, tmp_path):
    """What timm's validate.py does, through its library: dataset, data config, loader, top-1."""
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.utils import AverageMeter, accuracy

    root = image_folder(tmp_path / "val")
    model = timm.create_model(V2, pretrained=True, pretrained_cfg_overlay={"file": v2_file})
    model.eval()
    cfg = resolve_data_config(model=model)
    assert cfg["mean"] == timm_models.CIFAR_MEAN and cfg["input_size"] == (3, 32, 32)
    loader = create_loader(
        create_dataset("", root=str(root), split="validation"), input_size=cfg["input_size"],
        batch_size=4, is_training=False, use_prefetcher=False, interpolation=cfg["interpolation"],
        mean=cfg["mean"], std=cfg["std"], crop_pct=cfg["crop_pct"], num_workers=0,
    )
    top1, outputs = AverageMeter(), []
    with torch.no_grad():
        for images, target in loader:
            output = model(images)
            outputs.append(output)
            top1.update(accuracy(output, target, topk=(1,))[0].item(), images.size(0))
    expected, targets = reference_logits(model, root, cfg)
    assert torch.allclose(torch.cat(outputs), expected, rtol=1e-4, atol=1e-5)
    right = float((expected.argmax(1) == targets).float().mean() * 100)
    assert top1.count == 6 and top1.avg == pytest.approx(right)


def test_num_classes_zero_gives_the_pooled_features_as_timm_models_do():
    """timm's headless model: it was a ValueError here, while reset_classifier(0) (which
    docs/timm.md lists) took the classifier off."""
    model = timm.create_model("diracnet34_2_cifar", num_classes=0, image_size=8).eval()
    with torch.no_grad():
        features = model(torch.randn(2, 3, 8, 8))
    assert model.num_classes == 0 and features.shape == (2, model.num_features)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
