"""Class folders read with Pillow, on a generated folder, with torchvision unavailable."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from diracnets.datasets import load_dataset
from diracnets.imagefolder import MEAN, STD, random_resized_box
from diracnets.trainer import Trainer

RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.fixture(autouse=True)
def no_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed


def _halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2:] = BLUE
    return Image.fromarray(pixels)


@pytest.fixture
def folders(tmp_path):
    """train/{cat,dog} with 4 images each (sizes and formats vary), val/{cat,dog} with 2."""
    for part, count in (("train", 4), ("val", 2)):
        for label, name in enumerate(("cat", "dog")):
            folder = tmp_path / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = (28 + 4 * i, 20 + 2 * label)
                suffix = (".png", ".bmp", ".ppm", ".PNG")[i % 4]  # lossless: exact colours
                _halves(*size).save(folder / f"{i}{suffix}")
            (folder / "notes.txt").write_text("not an image")
    return tmp_path


def _normalised(colour) -> torch.Tensor:
    """The float64 reference value of a pixel of ``colour`` after normalisation."""
    return (torch.tensor(colour, dtype=torch.float64) / 255 - torch.tensor(MEAN,
            dtype=torch.float64)) / torch.tensor(STD, dtype=torch.float64)


def test_reads_classes_and_images_with_pillow(folders):
    data = load_dataset("imagefolder", folders, image_size=16)
    assert (data.num_classes, data.in_channels, data.image_size) == (2, 3, 16)
    assert (len(data.train), len(data.val)) == (8, 4)
    assert data.train.classes == ["cat", "dog"]
    assert [label for _, label in data.val.samples] == [0, 0, 1, 1]
    image, label = data.val[3]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 1
    # centre crop of a resized red|blue image: red on the left edge, blue on the right
    torch.testing.assert_close(image[:, :, 0].double(), _normalised(RED)[:, None].expand(3, 16),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(image[:, :, -1].double(),
                               _normalised(BLUE)[:, None].expand(3, 16), atol=1e-5, rtol=0)


def test_training_crops_are_random_but_seeded(folders):
    data = load_dataset("imagefolder", folders, image_size=8)
    torch.manual_seed(0)
    first = [data.train[i][0] for i in range(8)]
    torch.manual_seed(0)
    again = [data.train[i][0] for i in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(first[0], data.train[0][0]) for _ in range(5))
    for _ in range(200):
        left, top, right, bottom = random_resized_box(40, 30)
        width, height = right - left, bottom - top
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        # aspect within 3/4..4/3 up to rounding to whole pixels; 8-100 % of the area
        assert (width - 0.5) / (height + 0.5) <= 4 / 3
        assert (width + 0.5) / (height - 0.5) >= 3 / 4
        assert (width + 1) * (height + 1) >= 0.08 * 40 * 30


def test_a_run_trains_on_class_folders(folders, tiny_config):
    config = tiny_config(data="imagefolder", data_dir=str(folders), image_size=8,
                         batch_size=4, train_limit=None, workers=0, epochs=1)
    trainer = Trainer(config)
    record = trainer.fit()
    assert record["epoch"] == 1 and 0 <= record["val_acc"] <= 1
    assert np.isfinite(record["train_loss"])


def test_errors_name_the_folder_or_file(folders, tmp_path):
    (folders / "val" / "bird").mkdir()
    with pytest.raises(ValueError, match=r"classes the training folder lacks: \['bird'\]"):
        load_dataset("imagefolder", folders)
    (folders / "val" / "bird").rmdir()
    (folders / "val" / "dog" / "0.png").write_bytes(b"not a png")
    data = load_dataset("imagefolder", folders, image_size=8)
    with pytest.raises(ValueError, match=r"0\.png: not a readable image"):
        data.val[2]
    with pytest.raises(FileNotFoundError, match="has no train/ folder"):
        load_dataset("imagefolder", folders / "train")


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (its data is not there)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_an_image_too_large_to_decode_is_refused_from_its_header(folders):
    (folders / "val" / "dog" / "0.png").write_bytes(_png_header(13000, 13000))
    data = load_dataset("imagefolder", folders, image_size=8)
    with pytest.raises(ValueError, match=r"0\.png: 13000x13000 pixels; images of at most "
                                         r"36,000,000 pixels are read"):
        data.val[2]


def test_a_corrupt_image_in_a_worker_is_one_line(folders):
    from diracnets.loaders import make_loaders

    (folders / "train" / "dog" / "1.bmp").write_bytes(b"not a bmp")
    data = load_dataset("imagefolder", folders, image_size=8)
    train, _ = make_loaders(data, 8, seed=0, workers=2)
    with pytest.raises(ValueError) as error:
        list(train.batches())
    message = str(error.value)
    assert "1.bmp: not a readable image" in message
    assert "\n" not in message and "Traceback" not in message and "worker" not in message


def test_batch_one_at_a_one_by_one_batch_norm_names_the_batch_size(folders, tiny_config):
    """ImageNet DiracNet-18 on 32x32 crops: its last group works on 1x1 maps, where one image
    per step gives batch norm one value per channel."""
    config = tiny_config(data="imagefolder", data_dir=str(folders), image_size=32,
                         arch="imagenet", depth=18, batch_size=1, workers=0, epochs=1,
                         train_limit=None)
    with pytest.raises(ValueError, match=r"--batch-size gives 1 image per training step .* "
                                         r"sees a 1x1 map"):
        Trainer(config)
    assert not (folders / "run").exists()  # refused before the folder was claimed
