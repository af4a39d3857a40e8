"""Loading the authors' weight layouts (szagoruyko/diracnets) without their code.

The state dicts are built here key by key in the authors' layouts (v1 ``define_diracnet``
params + stats, v2 functional params, v2 folded ``DiracNet`` module), with random weights and
batch-norm statistics, and the loaded models are compared with a re-implementation of the
authors' forward written in this file (float64, relative error <= 1e-10).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dirac_torch import models
from dirac_torch.fold import fold_model
from dirac_torch.pretrained import (
    AuthorsCheckpointError,
    authors_model,
    authors_state_dict,
    load_authors,
)
from dirac_torch.registry import create_model

TOL = 1e-10
CIFAR_BASE, IMAGENET_BASE = (16, 32, 64), (64, 128, 256, 512)
IMAGENET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), "paper34": (3, 4, 6, 5)}


# ---- the authors' layouts, written out -------------------------------------------------------

def their_eye(shape, version):
    """v1: ``dirac(n, n).repeat(...)`` of their ``dirac_delta``; v2: ``torch.nn.init.dirac_``."""
    no, ni, k, _ = shape
    if version == "v2":
        return torch.nn.init.dirac_(torch.empty(shape, dtype=torch.float64))
    n = min(ni, no)
    eye = torch.zeros(n, n, k, k, dtype=torch.float64)
    eye[range(n), range(n), k // 2, k // 2] = 1
    return eye.repeat(max(no // ni, 1), max(ni // no, 1), 1, 1)


def bn(gen, n):
    return {"weight": torch.rand(n, generator=gen, dtype=torch.float64) + 0.5,
            "bias": torch.randn(n, generator=gen, dtype=torch.float64) * 0.1,
            "running_mean": torch.randn(n, generator=gen, dtype=torch.float64) * 0.1,
            "running_var": torch.rand(n, generator=gen, dtype=torch.float64) + 0.5}


def functional_checkpoint(dataset, depth, width, version, *, num_classes=7, seed=0):
    """``(params, stats)`` as their ``define_diracnet`` lays them out (v2: stats empty)."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    if dataset == "cifar":
        widths = [int(v * width) for v in CIFAR_BASE]
        blocks, stem_k = [2 * ((depth - 4) // 6)] * 3, 3
    else:
        widths = [int(v * width) for v in IMAGENET_BASE]
        blocks, stem_k = [2 * b for b in IMAGENET_BLOCKS[depth]], 7
    params = {"conv": randn(widths[0], 3, stem_k, stem_k) * 0.3}
    stats = {}
    running = stats if version == "v1" else params
    for name, value in bn(gen, widths[0]).items():
        (running if name.startswith("running") else params)[f"bn.{name}"] = value
    for g, (no, count) in enumerate(zip(widths, blocks, strict=True)):
        ni = widths[0] if g == 0 else widths[g - 1]
        for i in range(count):
            base = f"group{g}.block{i}"
            cin = ni if i == 0 else no
            shape = (no, 2 * cin if version == "v1" else cin, 3, 3)
            params[f"{base}.conv"] = randn(*shape)
            scales = 1 if version == "v1" else no
            params[f"{base}.alpha"] = 1 + 0.5 * torch.rand(scales, generator=gen,
                                                           dtype=torch.float64)
            params[f"{base}.beta"] = 0.5 * torch.rand(scales, generator=gen, dtype=torch.float64)
            for name, value in bn(gen, no).items():
                (running if name.startswith("running") else params)[f"{base}.bn.{name}"] = value
            running["eye" + "_".join(map(str, shape))] = their_eye(shape, version)
    params["fc.weight"] = randn(num_classes, widths[-1]) * 0.1
    params["fc.bias"] = randn(num_classes) * 0.1
    return params, stats


def fold_their_functional(params, dataset):
    """Their folded ``DiracNet`` state dict from v2 functional params (their export, here)."""
    def fold(weight, base):
        scale = params[f"{base}.weight"] / torch.sqrt(params[f"{base}.running_var"] + 1e-5)
        bias = params[f"{base}.bias"] - params[f"{base}.running_mean"] * scale
        return weight * scale.view(-1, 1, 1, 1), bias

    out = {}
    out["features.conv.weight"], out["features.conv.bias"] = fold(params["conv"], "bn")
    for g, i in their_blocks(params, "group{g}.block{i}.conv"):
        base = f"group{g}.block{i}"
        key = f"features.{base}.conv"
        out[f"{key}.weight"], out[f"{key}.bias"] = fold(their_weight(params, params, base),
                                                         f"{base}.bn")
    out["fc.weight"], out["fc.bias"] = params["fc.weight"], params["fc.bias"]
    return out


# ---- the authors' forward, written out ---------------------------------------------------------

def their_blocks(state, pattern):
    """``(group, block)`` of every block whose ``pattern.format(g=, i=)`` key is present."""
    g = 0
    while pattern.format(g=g, i=0) in state:
        i = 0
        while pattern.format(g=g, i=i) in state:
            yield g, i
            i += 1
        g += 1


def their_weight(params, stats, base):
    w = params[f"{base}.conv"]
    alpha = params[f"{base}.alpha"].view(-1, 1, 1, 1)
    beta = params[f"{base}.beta"].view(-1, 1, 1, 1)
    delta = stats["eye" + "_".join(map(str, w.shape))]
    return beta * F.normalize(w.view(w.shape[0], -1)).view_as(w) + alpha * delta


def their_forward(params, stats, x, dataset, version):
    def batch_norm(o, base):
        return F.batch_norm(o, stats[f"{base}.running_mean"], stats[f"{base}.running_var"],
                            params[f"{base}.weight"], params[f"{base}.bias"], training=False)

    def act(o):
        return torch.cat([o.clamp(min=0), o.clamp(max=0)], 1) if version == "v1" else F.relu(o)

    if dataset == "cifar":
        o = F.relu(batch_norm(F.conv2d(x, params["conv"], padding=1), "bn"))
    else:
        o = batch_norm(F.conv2d(x, params["conv"], padding=3, stride=2), "bn")
        o = F.max_pool2d(o, 3, 2, 1)
    for g, i in their_blocks(params, "group{g}.block{i}.conv"):
        if g and not i:
            o = F.max_pool2d(o, 2)
        base = f"group{g}.block{i}"
        o = batch_norm(F.conv2d(act(o), their_weight(params, stats, base), padding=1),
                       f"{base}.bn")
    o = F.avg_pool2d(o if version == "v1" else F.relu(o), o.shape[-1])
    return F.linear(o.flatten(1), params["fc.weight"], params["fc.bias"])


def their_folded_forward(state, x):
    o = F.conv2d(x, state["features.conv.weight"], state["features.conv.bias"], 2, 3)
    o = F.max_pool2d(o, 3, 2, 1)
    for g, i in their_blocks(state, "features.group{g}.block{i}.conv.weight"):
        if g and not i:
            o = F.max_pool2d(o, 2)
        key = f"features.group{g}.block{i}.conv"
        o = F.conv2d(F.relu(o), state[f"{key}.weight"], state[f"{key}.bias"], padding=1)
    o = F.avg_pool2d(F.relu(o), o.shape[-1])
    return F.linear(o.flatten(1), state["fc.weight"], state["fc.bias"])


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def images(size, n=2, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


# ---- the tests -----------------------------------------------------------------------------------

FUNCTIONAL = [
    # (dataset, depth, width, version, input size, expected name)
    ("cifar", 10, 1, "v1", 32, "DiracNet-10-1"),
    ("cifar", 16, 0.5, "v1", 32, "DiracNet-16-0.5"),
    ("imagenet", 18, 0.25, "v1", 64, "DiracNet-18-0.25"),
    ("imagenet", "paper34", 0.125, "v1", 64, "DiracNet-34-0.125 (blocks 3-4-6-5)"),
    ("imagenet", 18, 0.25, "v2", 64, "DiracNet-18-0.25"),
    ("imagenet", 34, 0.125, "v2", 64, "DiracNet-34-0.125"),
    ("cifar", 10, 1, "v2", 32, "DiracNet-10-1"),
]


@pytest.mark.parametrize("dataset, depth, width, version, size, name", FUNCTIONAL)
def test_functional_checkpoints_load_and_match_their_forward(
    dataset, depth, width, version, size, name
):
    params, stats = functional_checkpoint(dataset, depth, width, version)
    # v1 as their train.py saves it; v2 as one flat dict
    checkpoint = {"params": params, "stats": stats, "epoch": 3} if version == "v1" else params
    model = authors_model(checkpoint).eval()
    assert model.spec.name == name and model.spec.num_classes == 7
    expected = {"v1": ("ncrelu", False, "tile", False), "v2": ("relu", True, "min", True)}
    options = model.spec.options
    assert (options["activation"], options["per_channel"], options["policy"],
            options["head_relu"]) == expected[version]
    x = images(size)
    with torch.no_grad():
        assert rel_err(model(x), their_forward(params, {**params, **stats}, x, dataset,
                                               version)) <= TOL


def test_v2_folding_a_loaded_functional_model_gives_their_folded_model():
    params, _ = functional_checkpoint("imagenet", 18, 0.25, "v2")
    folded_theirs = fold_their_functional(params, "imagenet")
    ours_folded = fold_model(authors_model(params).eval())
    loaded_folded = authors_model(folded_theirs)
    x = images(64)
    with torch.no_grad():
        expected = their_folded_forward(folded_theirs, x)
        assert rel_err(loaded_folded(x), expected) <= TOL
        assert rel_err(ours_folded(x), expected) <= TOL
        assert rel_err(expected, their_forward(params, params, x, "imagenet", "v2")) <= TOL
    theirs_again = authors_state_dict(ours_folded)
    assert theirs_again.keys() == folded_theirs.keys()
    for key, value in folded_theirs.items():
        assert rel_err(theirs_again[key], value) <= TOL, key


@pytest.mark.parametrize("depth, convs", [(18, 16), (34, 32)])
def test_their_released_v2_networks_have_their_shapes(depth, convs):
    """DiracNet-18/34 at full width: their folded module's keys and shapes, and the forward."""
    name = f"diracnet{depth}_v2_imagenet"
    theirs = authors_state_dict(fold_model(create_model(name).eval()))
    assert sum(".block" in k and k.endswith(".conv.weight") for k in theirs) == convs
    assert theirs["features.conv.weight"].shape == (64, 3, 7, 7)
    assert theirs[f"features.group3.block{convs // 4 - 1 if depth == 18 else 5}.conv.weight"
                  ].shape == (512, 512, 3, 3)
    assert theirs["fc.weight"].shape == (1000, 512)
    model = authors_model(theirs)
    assert model.spec.name == f"DiracNet-{depth}" and model.spec.options["per_channel"]
    if depth == 18:  # one 224x224 image through the full network, float32
        x = images(224, n=1).float()
        with torch.no_grad():
            assert rel_err(model(x), their_folded_forward(theirs, x)) < 1e-4


def test_the_first_mismatching_key_or_shape_is_named():
    params, stats = functional_checkpoint("cifar", 10, 1, "v1")
    model = create_model("diracnet10_1_cifar", num_classes=7, head_relu=False).double()
    missing = dict(params)
    del missing["group1.block1.bn.bias"]
    with pytest.raises(AuthorsCheckpointError, match=r"no 'group1.block1.bn.bias'"):
        load_authors(model, {"params": missing, "stats": stats})
    shape = {**params, "group2.block0.conv": params["group2.block0.conv"][:, :3]}
    with pytest.raises(AuthorsCheckpointError, match=r"'group2.block0.conv' has shape "
                       r"\(64, 3, 3, 3\); 'group2.2.parametrizations.weight.original' needs"):
        load_authors(model, {"params": shape, "stats": stats})
    extra = {**params, "group0.block9.alpha": torch.ones(1)}
    with pytest.raises(AuthorsCheckpointError, match=r"'group0.block9.alpha' has no place"):
        load_authors(model, {"params": extra, "stats": stats})
    with pytest.raises(AuthorsCheckpointError, match="not an authors' DiracNet checkpoint"):
        authors_model({"weight": torch.ones(1)})


def test_a_v2_file_refuses_a_model_with_the_other_dirac_tensor():
    params, _ = functional_checkpoint("cifar", 10, 1, "v2")
    tiled = create_model("diracnet10_1_cifar", num_classes=7, activation="relu",
                         per_channel=True).double()
    with pytest.raises(AuthorsCheckpointError, match=r"eye32_16_3_3.*policy='min'"):
        load_authors(tiled, params)


def test_loaded_weights_continue_training():
    params, stats = functional_checkpoint("cifar", 10, 1, "v1")
    model = authors_model({"params": params, "stats": stats})
    conv = model.group0[1]
    assert conv.parametrizations.weight.original.requires_grad and conv.alpha.requires_grad
    model(images(32)).sum().backward()
    assert conv.parametrizations.weight.original.grad is not None


# ---- writing: authors_state_dict refuses what would read back as another network -----------

def _folded(name, **kw):
    return fold_model(create_model(name, **kw).eval())


@pytest.mark.parametrize("make, message", [
    # eq. 14 read back as the v1 cifar net (normalized W, learnable alpha = beta = 1)
    (lambda: models.resnet_eq14_cifar(10, 1),
     r"family 'cifar', parameterization='resnet'.*has 'resnet' convolutions"),
    # a raw KeyError 'group0.1.parametrizations.weight.original' before
    (lambda: create_model("plain10_1_cifar"), r"parameterization='plain'.* 'plain' convolutions"),
    # read back as v2_cifar: head_relu False -> True, 67 % off
    (lambda: _folded("plain10_1_relu_cifar"),
     r"'v2-folded' layout would read back as another network, DiracNet-10-1 of family "
     r"'v2_cifar' \(head_relu False -> True\)"),
    # folded v1 families were written as v2-folded, which authors_model failed to load
    (lambda: _folded("diracnet10_1_cifar"), r"family 'cifar'.*activation 'ncrelu' -> 'relu'"),
    (lambda: _folded("diracnet18_0p125_imagenet"), r"family 'imagenet'.*'v2-folded' layout"),
    (lambda: _folded("diracnet18_0p125_jun2017_imagenet"), r"family 'jun2017_imagenet'"),
    (lambda: create_model("diracnet10_1_relu_cifar"),
     r"'v1' layout would read back as .* of family 'cifar' \(activation 'relu' -> 'ncrelu'\)"),
    (lambda: create_model("diracnet10_1_cifar", per_channel="beta"),
     r"'v1-released' layout would not read back \(a 'v1-released' file holds an ImageNet"),
])
def test_authors_state_dict_refuses_a_model_the_file_would_read_back_as_another(make, message):
    with pytest.raises(ValueError, match=message) as refused:
        authors_state_dict(make())
    assert "The authors' layouts hold Dirac networks of v1: cifar, imagenet, jun2017_imagenet;" \
        in str(refused.value)


def test_authors_state_dict_refuses_a_layout_of_the_other_foldedness():
    with pytest.raises(ValueError, match=r"layout='v2-folded' is for folded models; "
                                         r"DiracNet-10-1 \(family 'v2_cifar'.* is unfolded"):
        authors_state_dict(create_model("diracnet10_1_v2_cifar"), layout="v2-folded")
    with pytest.raises(ValueError, match=r"layout='v3' is not accepted"):
        authors_state_dict(create_model("diracnet10_1_v2_cifar"), layout="v3")


@pytest.mark.parametrize("name, folded", [
    ("diracnet10_1_cifar", False), ("diracnet10_1_v2_cifar", False),
    ("diracnet10_1_v2_cifar", True), ("diracnet18_0p125_jun2017_imagenet", False),
    ("diracnet18_0p125_paper_imagenet", False), ("diracnet18_0p125_paper_imagenet", True),
    ("diracnet18_0p125_v2_imagenet", True),
])
def test_what_authors_state_dict_writes_reads_back_as_the_same_network(name, folded):
    model = create_model(name).double().eval()
    model = fold_model(model) if folded else model
    back = authors_model(authors_state_dict(model)).eval()
    assert back.spec.options | {"family": None} == model.spec.options | {"family": None}
    assert back.spec.stages == model.spec.stages
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("name, size", [("plain10_1_v2_cifar", 32),
                                        ("plain18_0p125_paper_imagenet", 64)])
def test_a_folded_plain_network_round_trips_as_the_same_plain_convolutions(name, size):
    """Folded, a plain network and a DiracNet are the same plain convolutions: such a file read
    back exactly, and was refused for the parameterization its folded convolutions no longer
    have."""
    model = fold_model(create_model(name).double().eval())
    back = authors_model(authors_state_dict(model)).double().eval()
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    assert torch.equal(back(x), model(x))
