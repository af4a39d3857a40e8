"""Built-in digits and batch schedules."""

from __future__ import annotations

import pytest
import torch

from diracnets.datasets import Augment, load_dataset
from diracnets.loaders import Schedule, TensorLoader, augment_batch, generator


def test_digits_split_is_fixed_disjoint_and_complete(digits):
    assert (len(digits.train), len(digits.val)) == (1438, 359)
    assert (digits.in_channels, digits.image_size, digits.num_classes) == (1, 8, 10)
    assert digits.train.images.dtype == torch.uint8 and int(digits.train.images.max()) == 16
    assert digits.augment == Augment(pad=1, flip=False)  # a mirrored digit is another glyph
    again = load_dataset("digits")
    assert torch.equal(again.val.labels, digits.val.labels)
    assert set(digits.train.labels.tolist()) == set(digits.val.labels.tolist()) == set(range(10))
    assert len(digits.train) + len(digits.val) == 1797


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="data='mnist' is not accepted"):
        load_dataset("mnist")


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_split_each_global_batch_without_overlap(world):
    length, per_rank = 50, 4
    schedules = [Schedule(length, per_rank, shuffle=True, seed=5, rank=r, world=world)
                 for r in range(world)]
    assert len(schedules[0]) == length // (per_rank * world)
    per_batch = zip(*(s.batch_indices(epoch=2) for s in schedules), strict=True)
    seen = []
    for parts in per_batch:
        assert all(p.numel() == per_rank for p in parts)
        seen += torch.cat(parts).tolist()
    assert len(seen) == len(set(seen)) == len(schedules[0]) * per_rank * world


def test_epochs_differ_and_resume_at_any_batch_matches():
    schedule = Schedule(40, 8, shuffle=True, seed=1)
    full = list(schedule.batch_indices(epoch=3))
    assert not torch.equal(torch.cat(full), torch.cat(list(schedule.batch_indices(epoch=4))))
    tail = list(schedule.batch_indices(epoch=3, start=2))
    assert all(torch.equal(a, b) for a, b in zip(full[2:], tail, strict=True))


def test_evaluation_schedule_covers_everything_once():
    parts = [torch.cat(list(Schedule(11, 3, shuffle=False, rank=r, world=2).batch_indices(0)))
             for r in range(2)]
    assert sorted(torch.cat(parts).tolist()) == list(range(11))


def test_batch_larger_than_data_is_an_error():
    with pytest.raises(ValueError, match=r"batch_size=64 .* larger than the 40"):
        Schedule(40, 32, shuffle=True, world=2)


def test_augmentation_is_a_shifted_crop_and_a_flip():
    images = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6)
    out = augment_batch(images, Augment(pad=2, flip=True), generator(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(2):  # each output is some crop of the padded image, maybe mirrored
        crops = [padded[i, :, y:y + 5, x:x + 6] for y in range(5) for x in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)
    same = augment_batch(images, Augment(pad=2, flip=True), generator(0))
    assert torch.equal(out, same)
    assert torch.equal(augment_batch(images, Augment(), generator(0)), images)


def test_loader_normalises_and_reproduces_batches(digits):
    loader = TensorLoader(digits.train, digits, 64, shuffle=True, seed=3)
    first = [x for x, _ in loader.batches(epoch=1)]
    again = [x for x, _ in loader.batches(epoch=1, start=1)]
    assert all(torch.equal(a, b) for a, b in zip(first[1:], again, strict=True))
    val = TensorLoader(digits.val, digits, 512, shuffle=False)
    (images, labels), = list(val.batches())
    assert images.dtype == torch.float32 and labels.shape == (359,)
    expected = (digits.val.images.float() / 16 - digits.mean[0]) / digits.std[0]
    torch.testing.assert_close(images, expected)


def test_folder_loader_streams_any_map_style_dataset_by_the_same_schedule():
    from diracnets.loaders import FolderLoader

    images = torch.arange(24, dtype=torch.float32).view(24, 1, 1, 1)
    data = torch.utils.data.TensorDataset(images, torch.arange(24))
    loader = FolderLoader(data, 4, shuffle=True, seed=2, rank=1, world=2, workers=0)
    schedule = Schedule(24, 4, shuffle=True, seed=2, rank=1, world=2)
    got = [labels for _, labels in loader.batches(epoch=1, start=1)]
    want = list(schedule.batch_indices(epoch=1, start=1))
    assert len(loader) == 3 and len(got) == 2
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
