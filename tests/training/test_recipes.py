"""The named recipes reproduce the authors' train.py item by item; ``ours`` stays the default."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dirac_torch.registry import create_model
from diracnets.cli import _given, build_parser
from diracnets.config import TrainConfig, preset_config
from diracnets.datasets import Augment, Dataset, TensorSplit
from diracnets.loaders import augment_batch, pad_images
from diracnets.recipes import RECIPES, adapt_dataset, recipe, recipe_settings
from diracnets.scales import parameter_groups
from diracnets.trainer import Trainer, lr_at


def _config(*argv: str) -> TrainConfig:
    """The config ``diracnets train ARGV`` runs."""
    args = build_parser().parse_args(["train", *argv])
    overrides = _given(args)
    if "recipe" in overrides:
        overrides = recipe_settings(overrides["recipe"], overrides)
    return preset_config(args.preset, **overrides)


def test_the_default_is_ours_and_names_are_checked():
    assert TrainConfig().recipe == "ours" and _config().recipe == "ours"
    with pytest.raises(ValueError, match="recipe='authors' is not accepted"):
        TrainConfig(recipe="authors")


@pytest.mark.parametrize("name, numbers", [
    # 0d0e033 train.py defaults: --batchSize 128 --lr 0.1 --epochs 200 --weightDecay 0.0005
    # --epoch_step [60,120,160] --lr_decay_ratio 0.2, SGD(params, lr, 0.9), dtype float
    ("authors-v1-cifar", {"arch": "cifar", "batch_size": 128, "lr": 0.1, "epochs": 200,
                          "weight_decay": 5e-4, "lr_gamma": 0.2, "momentum": 0.9,
                          "nesterov": False, "amp": False}),
    ("authors-v2-cifar", {"arch": "v2_cifar", "batch_size": 128, "lr": 0.1, "epochs": 200,
                          "weight_decay": 5e-4, "lr_gamma": 0.2, "momentum": 0.9,
                          "nesterov": False, "amp": False}),
    # README: --batchSize 256 --epoch_step [30,60,90] --epochs 100 --weightDecay 0.0001
    # --lr_decay_ratio 0.1, DiracNet-18
    ("authors-v1-imagenet", {"arch": "imagenet", "depth": 18, "batch_size": 256, "lr": 0.1,
                             "epochs": 100, "weight_decay": 1e-4, "lr_gamma": 0.1,
                             "amp": False}),
    ("authors-v2-imagenet", {"arch": "v2_imagenet", "depth": 18, "batch_size": 256,
                             "epochs": 100, "weight_decay": 1e-4, "lr_gamma": 0.1,
                             "amp": False}),
])
def test_the_authors_numbers(name, numbers):
    config = _config("--recipe", name)
    assert {k: getattr(config, k) for k in numbers} == numbers
    assert config.recipe == name
    # an option still wins over the recipe's number
    assert _config("--recipe", name, "--epochs", "3").epochs == 3


def _authors_lrs(lr, steps, ratio, epochs):
    """Their torchnet loop: on_start_epoch sees epoch = state['epoch'] + 1 and drops the lr
    when that is in epoch_step."""
    out = []
    for state_epoch in range(epochs):
        if state_epoch + 1 in steps:
            lr *= ratio
        out.append(lr)
    return out


@pytest.mark.parametrize("name, steps, ratio, epochs", [
    ("authors-v1-cifar", (60, 120, 160), 0.2, 200),
    ("authors-v2-cifar", (60, 120, 160), 0.2, 200),
    ("authors-v1-imagenet", (30, 60, 90), 0.1, 100),
])
def test_the_lr_drops_where_the_authors_loop_drops_it(name, steps, ratio, epochs):
    config = _config("--recipe", name)
    ours = [lr_at(config, e) for e in range(epochs)]
    assert ours == pytest.approx(_authors_lrs(0.1, steps, ratio, epochs), rel=1e-12)
    # so their first drop comes after 59 epochs (ours: after 60)
    assert lr_at(config, steps[0] - 2) == 0.1 and lr_at(config, steps[0] - 1) < 0.1
    assert lr_at(TrainConfig(), 59) == 0.1


def _first_step_buffers_are_fresh(trainer: Trainer) -> bool:
    """After one SGD step, whether every momentum buffer is that step's ``d_p`` alone (a new
    optimizer's), not ``0.9 * old + d_p``: ``buf == grad + wd * (p + lr * buf)``, since the
    step moved ``p`` by ``-lr * buf``."""
    fresh = []
    for group in trainer.optimizer.param_groups:
        lr, decay = group["lr"], group["weight_decay"]
        for p in group["params"]:
            buf = trainer.optimizer.state[p]["momentum_buffer"]
            d_p = p.grad + decay * (p.detach() + lr * buf)
            fresh.append(torch.allclose(buf, d_p, rtol=1e-4, atol=1e-7))
    return all(fresh)


@pytest.mark.parametrize("name, reset", [("authors-v1-cifar", True), ("ours", False)])
def test_momentum_buffers_after_a_drop(name, reset, tiny_config, small_digits):
    fresh: dict[tuple[int, int], bool] = {}

    def check(event: str, trainer: Trainer) -> None:
        if event == "batch_end" and trainer.batch in (1, 2):
            fresh[trainer.epoch, trainer.batch] = _first_step_buffers_are_fresh(trainer)

    config = tiny_config(recipe=name, milestones=(1,), epochs=2, amp=False)
    trainer = Trainer(config, dataset=small_digits, callbacks=[check], log=None)
    trainer.fit()
    trainer.close()
    assert fresh[0, 1] and not fresh[0, 2]  # the very first step; then momentum builds up
    assert fresh[1, 1] == reset  # the first step after the drop: a new SGD only if reset
    assert not fresh[1, 2]


@settings(max_examples=25, deadline=None)
@given(height=st.integers(3, 9), width=st.integers(3, 9), pad=st.integers(1, 2),
       mode=st.sampled_from(["symmetric", "reflect"]))
def test_mirror_padding_is_numpys(height, width, pad, mode):
    image = torch.randint(0, 255, (2, 3, height, width), dtype=torch.uint8)
    expected = np.pad(image.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=mode)
    assert np.array_equal(pad_images(image, pad, mode).numpy(), expected)


def _cifar_like() -> Dataset:
    images = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    split = TensorSplit(images, torch.zeros(8, dtype=torch.int64))
    return Dataset("cifar10", split, split, 10, 3, 32, 255.0, (0.5,) * 3, (0.25,) * 3,
                   Augment(pad=4, flip=True))


@pytest.mark.parametrize("name, mode", [
    # v1: cv2.BORDER_REFLECT ("fedcba|abcdefgh|hgfedcb", the edge pixel repeated)
    ("authors-v1-cifar", "symmetric"),
    # v2: T.Pad(4, padding_mode='reflect') ("dcb|abcd|cba")
    ("authors-v2-cifar", "reflect"),
    ("ours", "zeros"),
])
def test_pad_mode_of_the_crops(name, mode):
    dataset = adapt_dataset(_cifar_like(), name)
    assert dataset.augment.pad_mode == mode and dataset.augment.pad == 4
    # every crop is a window of the image padded that way
    images = dataset.train.images[:2]
    crops = augment_batch(images, dataclasses.replace(dataset.augment, flip=False),
                          torch.Generator().manual_seed(0))
    padded = pad_images(images, 4, mode)
    for crop, full in zip(crops, padded, strict=True):
        windows = [full[:, y:y + 32, x:x + 32] for y in range(9) for x in range(9)]
        assert any(torch.equal(crop, w) for w in windows)


@pytest.mark.parametrize("name, fixed", [("authors-v1-cifar", True), ("authors-v2-cifar", True),
                                         ("ours", False)])
def test_cifar_normalisation(name, fixed):
    dataset = adapt_dataset(_cifar_like(), name)
    if fixed:  # their Normalize([125.3, 123.0, 113.9], [63.0, 62.1, 66.7]) on 0-255 values
        assert dataset.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))
        assert dataset.std == pytest.approx((63.0 / 255, 62.1 / 255, 66.7 / 255))
    else:
        assert dataset.mean == (0.5,) * 3


def test_decay_groups():
    v2 = create_model("diracnet10_1_v2_cifar")
    groups = parameter_groups(v2, 5e-4, True, recipe("authors-v2-cifar").decay)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in v2.named_parameters():
        # their v2: SGD groups [dim != 1 with weight decay, the rest without]
        assert (id(p) in decayed) == (p.dim() > 1), name
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in v2.parameters())
    v1 = create_model("diracnet10_1_cifar")
    groups = parameter_groups(v1, 5e-4, True, recipe("authors-v1-cifar").decay)
    # their v1: SGD(params.values(), ..., weight_decay=...): every tensor, alpha and beta too
    assert all(g["weight_decay"] == 5e-4 for g in groups)


def test_every_recipe_is_documented():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    for name in RECIPES:
        assert f"`{name}`" in text


def test_a_resumed_authors_run_empties_the_momentum_as_an_uninterrupted_one(
        tiny_config, small_digits, tmp_path):
    # the drop falls on the epoch the run resumes at: the restored buffers must be emptied too
    def config(epochs: int, out: str) -> TrainConfig:
        return tiny_config(recipe="authors-v2-cifar", arch="v2_cifar", epochs=epochs,
                           milestones=(2,), out=str(tmp_path / out))

    straight = Trainer(config(3, "a"), dataset=small_digits, log=None)
    straight.fit()
    straight.close()
    first = Trainer(config(2, "b"), dataset=small_digits, log=None)
    first.fit()
    first.close()
    resumed = Trainer.from_checkpoint(tmp_path / "b" / "last.pt", {"epochs": 3},
                                      dataset=small_digits, log=None)
    resumed.fit()
    resumed.close()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
