"""The model registry: names, families, fractional widths, the counts table in docs/results.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dirac_core import catalog, nets
from dirac_core.nets import count_parameters
from dirac_torch import models
from dirac_torch.registry import (
    create_model,
    create_spec,
    families,
    family_spec,
    list_models,
    model_name,
    parse_name,
)

RESULTS = Path(__file__).parents[2] / "docs" / "results.md"

# The counts of docs/results.md, written out again: editing the table alone fails this test.
COUNTS = {
    "diracnet34_2_cifar": 3_693_158,
    "diracnet34_8_cifar": 59_009_222,
    "diracnet34_2_v2_cifar": 1_854_378,
    "diracnet28_10_cifar": 72_835_418,
    "diracnet28_10_v2_cifar": 36_450_090,
    "diracnet18_075_paper_imagenet": 12_759_464,
    "diracnet34_050_paper_imagenet": 15_537_900,
    "diracnet34_075_paper_imagenet": 34_752_604,
    "diracnet34_075_jun2017_imagenet": 34_745_440,
    "diracnet34_050_jun2017_imagenet": 15_533_136,
    "diracnet18_075_imagenet": 12_756_600,
    "diracnet34_075_imagenet": 24_125_528,
    "diracnet34_050_imagenet": 10_812_488,
    "diracnet18_imagenet": 22_501_192,
    "diracnet34_imagenet": 42_710_120,
    "diracnet18_v2_imagenet": 11_523_368,
    "diracnet34_v2_imagenet": 21_638_952,
}
# The parameter counts the paper prints (Table 2: CIFAR, Table 3: ImageNet), in millions.
PAPER = {
    "diracnet34_2_cifar": ("Table 2", 3.7),
    "diracnet34_8_cifar": ("Table 2", 59),
    "diracnet18_075_paper_imagenet": ("Table 3", 12.8),
    "diracnet34_050_paper_imagenet": ("Table 3", 15.5),
    "diracnet34_075_paper_imagenet": ("Table 3", 34.8),
}


def table_rows():
    text = RESULTS.read_text()
    table = text.split("<!-- counts-table -->")[1].split("<!-- /counts-table -->")[0]
    rows = re.findall(r"^\| [^|]+ \| `([a-z0-9_]+)` \| [^|]+ \| ([\d,]+) \|", table, flags=re.M)
    return [(name, int(count.replace(",", ""))) for name, count in rows]


def test_the_results_table_lists_every_count_and_each_is_ours():
    rows = table_rows()
    assert dict(rows) == COUNTS
    for name, count in rows:
        assert count_parameters(create_spec(name)) == count, name


def test_the_paper_imagenet_34_differs_only_in_the_last_group():
    true34, june34 = create_spec("diracnet34_075_imagenet"), create_spec(
        "diracnet34_075_jun2017_imagenet")
    # two more blocks (four Dirac layers of 384 channels, NCReLU inputs 768) in group3
    extra = 4 * (384 * 768 * 9 + 2 + 2 * 384)
    assert count_parameters(june34) - count_parameters(true34) == extra
    assert [s.name for s in june34.stages] == [s.name for s in true34.stages]


def test_each_paper_row_rounds_to_the_published_count_and_the_listing_says_so():
    listed = {name: row for name, _, row in catalog.listed_networks()}
    for name, (table, millions) in PAPER.items():
        count = count_parameters(create_spec(name))
        digits = 0 if millions >= 10 and float(millions).is_integer() else 1
        assert round(count / 1e6, digits) == millions, name
        assert listed[name].table == table
    marked = {name for name, row in listed.items() if row.table.startswith("Table")}
    assert marked == set(PAPER)
    # the scalar-beta 34-0.75 would not round to the paper's 34.8M: the paper counts the
    # per-filter-beta layout
    assert round(count_parameters(create_spec("diracnet34_075_jun2017_imagenet")) / 1e6, 1) \
        == 34.7


def test_fractional_widths_truncate_as_the_authors_code():
    spec = create_spec("diracnet18_075_imagenet")
    convs = [layer for _, layer in spec.layers() if isinstance(layer, nets.Conv)]
    assert {c.out_channels for c in convs} == {48, 96, 192, 384}
    assert nets.scaled_widths((16, 32, 64), 0.3) == (4, 9, 19)  # int(4.8), int(9.6), int(19.2)
    assert spec.name == "DiracNet-18-0.75"
    assert create_spec("diracnet34_2_cifar").name == "DiracNet-34-2"
    assert create_spec("diracnet18_imagenet").name == "DiracNet-18"


def test_a_network_is_named_for_what_it_is():
    # the registry's kinds: diracnet34_2_cifar is a DiracNet, plain34_2_cifar the plain control
    assert create_spec("plain34_2_cifar").name == "Plain-34-2"
    assert create_spec("plain18_imagenet").name == "Plain-18"
    assert models.plain_cifar(10).spec.name == "Plain-10-1"
    assert nets.diracnet_cifar(10, parameterization="resnet").name == "ResNet-10-1"
    assert nets.diracnet_imagenet(34, 0.5, parameterization="plain",
                                  blocks=nets.PAPER_IMAGENET_34).name == \
        "Plain-34-0.5 (blocks 3-4-6-5)"
    with pytest.raises(ValueError, match="'Plain-10-1' has no Dirac convolution"):
        models.build(nets.diracnet_cifar(10, parameterization="plain"), init_std=1.0)


def test_list_models_builds_every_listed_model_and_the_counts_agree():
    names = list_models()
    assert set(COUNTS) - {"diracnet28_10_v2_cifar"} <= set(names)
    assert names == sorted(names) and list_models("*v2*") == [n for n in names if "v2" in n]
    small = create_model("diracnet10_1_v2_cifar", num_classes=3)
    assert sum(p.numel() for p in small.parameters()) == count_parameters(small.spec)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    conv = small.get_submodule("group0.1")
    assert conv.alpha.shape == (16,) and conv.dirac.policy == "min"
    assert float(conv.alpha[0].detach()) == 1.0
    assert float(conv.beta[0].detach()) == pytest.approx(0.1)


def test_every_family_has_a_one_line_description():
    described = families()
    assert set(described) == {"cifar", "relu_cifar", "imagenet", "jun2017_imagenet",
                              "paper_imagenet", "v2_cifar", "v2_imagenet"}
    assert all(doc and "\n" not in doc for doc in described.values())


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["diracnet", "plain"]),
       family=st.sampled_from(["cifar", "imagenet", "v2_cifar", "v2_imagenet", "relu_cifar"]),
       width=st.sampled_from([1, 2, 10, 0.75, 0.5, 0.25, 1.5, 0.125]),
       n=st.integers(1, 30))
def test_names_round_trip(kind, family, width, n):
    depth = 6 * n + 4 if "cifar" in family else (18, 34)[n % 2]
    name = model_name(kind, depth, width, family)
    assert parse_name(name) == (kind, depth, width, family)


@pytest.mark.parametrize("call, error, message", [
    (lambda: create_spec("resnet50"), ValueError, "unknown model 'resnet50'"),
    (lambda: create_spec("diracnet34_cifar"), ValueError, "needs a width"),
    (lambda: create_spec("diracnet12_1_cifar"), ValueError, "depth=12 is not accepted"),
    (lambda: create_spec("diracnet50_075_paper_imagenet"), ValueError, r"use one of \[18, 34\]"),
    (lambda: create_spec("diracnet34_05_imagenet"), ValueError, "did you mean '050'"),
    (lambda: create_spec("diracnet34_0p5_imagenet"), ValueError, "spelled '050'"),
    (lambda: create_spec("diracnet34_0500_imagenet"), ValueError, "three digits"),
    (lambda: create_spec("diracnet18_1_imagenet"), ValueError,
     "is spelled 'diracnet18_imagenet'"),
    (lambda: create_spec("diracnet34_2p0_cifar"), ValueError, "spelled '2'"),
    (lambda: create_spec("diracnet34_2_cifr"), ValueError, "did you mean 'diracnet34_2_cifar'"),
    (lambda: create_spec("diracnet18_v2_imagenet", activation="ncrelu"), ValueError,
     "fixes activation='relu'"),
    (lambda: create_spec("plain10_1_cifar", parameterization="dirac"), ValueError,
     "fixes parameterization='plain'"),
    (lambda: family_spec("mnist", 10, 1), ValueError, "model family 'mnist' is not accepted"),
    (lambda: create_spec(34), TypeError, "model name must be a str"),
    (lambda: create_model("diracnet18_imagenet", blocks=(1, 1, 1, 1)), ValueError,
     r"model 'diracnet18_imagenet' has blocks=\(2, 2, 2, 2\); got blocks=\(1, 1, 1, 1\)"),
    (lambda: create_spec("diracnet34_050_paper_imagenet", blocks=(3, 4, 6, 3)), ValueError,
     r"'diracnet34_050_paper_imagenet' has blocks=\(3, 4, 6, 5\)"),
    (lambda: models.diracnet_imagenet(34, blocks=(3, 4, 6, 5)), ValueError,
     r"'diracnet34_imagenet' has blocks=\(3, 4, 6, 3\)"),
    (lambda: create_model("diracnet10_1_cifar", foo=1), TypeError,
     r"model 'diracnet10_1_cifar' takes no keyword foo; accepted: num_classes, activation, "
     r"parameterization, .*image_size \(and alpha_init, beta_init, init_std"),
    (lambda: create_spec("plain10_1_cifar", blocks=(1, 1, 1)), TypeError,
     "model 'plain10_1_cifar' takes no keyword blocks"),
    (lambda: models.resnet_eq14_cifar(10, colour=1), TypeError,
     "model family 'cifar' at depth=10, width=1, parameterization='resnet' takes no keyword "
     "colour"),
])
def test_bad_names_and_variants(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_the_command_lists_the_models_with_their_counts(capsys):
    from diracnets.cli import main

    assert main(["models", "*imagenet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"diracnet18_075_imagenet +DiracNet-18-0\.75 +v1 +dirac +- +12,756,600",
                     out)
    assert re.search(r"diracnet34_075_paper_imagenet +DiracNet-34-0\.75 \(blocks 3-4-6-5\) +v1 "
                     r"+dirac +Table 3 +34,752,604 +34\.8M", out)
    assert re.search(r"plain18_imagenet .* plain ", out)
    # no paper table has the v2 network: its published count is marked and its source named
    assert re.search(r"diracnet18_v2_imagenet +DiracNet-18 +v2 +dirac +- +11,523,368 +11\.7M\*",
                     out)
    assert re.search(r"published: its count in that table, or \(marked \*\) in the authors' v2 "
                     r"notebook \(diracnet-export\.ipynb\)\.", out)
    assert "diracnet34_2_cifar" not in out
    assert main(["models", "*cifar"]) == 0
    assert "marked *" not in capsys.readouterr().out


def test_every_published_count_says_where_it_is_printed():
    rows = [row for _, _, row in catalog.listed_networks() if row.published]
    assert {row.published_source for row in rows} == {
        "the paper's Table 2", "the paper's Table 3",
        "the authors' v2 notebook (diracnet-export.ipynb)"}
    with pytest.raises(ValueError, match=r"'11\.7M' of diracnet18 needs a table or published_in"):
        catalog.Listed("diracnet", 18, 1, "", "11.7M")


@pytest.mark.parametrize(
    ("name", "unfolded", "folded"),
    [
        # diracnet-export.ipynb (v1): "Total parameters: 12753640" for the folded export
        ("diracnet18_075_paper_imagenet", 12_759_464, 12_753_640),
        # diracnet-export.ipynb (v2): "Total parameters: 11523368" for the checkpoint
        ("diracnet18_v2_imagenet", 11_523_368, 11_511_784),
        ("diracnet34_v2_imagenet", None, 21_616_232),
    ],
)
def test_the_authors_published_totals(name, unfolded, folded):
    from dirac_torch.fold import fold_model

    model = create_model(name).eval()
    if unfolded is not None:
        assert sum(p.numel() for p in model.parameters()) == unfolded
    assert sum(p.numel() for p in fold_model(model).parameters()) == folded


def test_the_authors_trained_18_075_differs_by_its_per_filter_betas():
    # Their training checkpoint (12,759,464) has beta of shape (O,) where the later code's
    # is a scalar; the paper_imagenet family is that layout.
    spec = create_spec("diracnet18_075_imagenet")
    convs = [c for _, c in spec.layers() if isinstance(c, nets.Conv)]
    extra = sum(c.out_channels - 1 for c in convs if c.parameterization == "dirac")
    assert extra == 2_864
    assert count_parameters(spec) + extra == 12_759_464
    model = create_model("diracnet18_075_paper_imagenet")
    assert sum(p.numel() for p in model.parameters()) == 12_759_464
    conv = model.get_submodule("group1.5")  # max-pool, then NCReLU, conv, BN twice
    assert conv.alpha.shape == () and conv.beta.shape == (96,)


def test_a_named_networks_own_blocks_are_accepted():
    spec = create_spec("diracnet18_imagenet")
    assert create_spec("diracnet18_imagenet", blocks=[2, 2, 2, 2]) == spec
