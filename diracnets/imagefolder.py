"""ImageNet-style class folders read with Pillow (no torchvision needed).

``data_dir/train/<class>/<image>`` and ``data_dir/val/<class>/<image>``: the classes are the
sub-folders of ``train`` in sorted order (``val`` may only use those), the images the files
with an image extension directly inside them, in sorted order. Training images get a random
resized crop to ``image_size`` (scale 0.08-1, aspect 3/4-4/3: the usual ImageNet recipe) and
a random horizontal flip, drawn from torch's generator of the loading process (seeded per
epoch by :class:`diracnets.loaders.FolderLoader`); validation images are resized so their
shorter side is ``image_size * 8 // 7`` and centre-cropped. Both are normalised with the
ImageNet statistics.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff",
                        ".webp"})
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
# decoded pixels per image, checked from the header before decoding: 6000 x 6000 as RGB is
# 108 MB, above any photo of ImageNet and below Pillow's own warning (89.5 Mpx)
MAX_PIXELS = 36_000_000
Box = tuple[int, int, int, int]  # left, top, right, bottom


def find_images(root: Path, classes: list[str] | None = None) -> tuple[list[str],
                                                                       list[tuple[Path, int]]]:
    """``(classes, [(path, label), ...])`` of the class folders in ``root``.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder, or holds no class folder with an image.
    ValueError
        ``classes`` is given and ``root`` has a class not among them.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{str(root)!r} is not a folder of class folders")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    classes = found if classes is None else classes
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{str(root)!r} has classes the training folder lacks: {unknown[:5]}")
    samples = [(path, classes.index(name)) for name in found
               for path in sorted((root / name).iterdir())
               if path.suffix.lower() in EXTENSIONS and path.is_file()]
    if not samples:
        raise FileNotFoundError(f"{str(root)!r} holds no images in class folders "
                                f"(extensions {sorted(EXTENSIONS)})")
    return classes, samples


def random_resized_box(width: int, height: int) -> Box:
    """A random crop box covering 8-100 % of the area with aspect 3/4-4/3 (10 tries, then
    the largest centred box of an aspect in range)."""
    area = width * height
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(*SCALE).item()
        aspect = math.exp(torch.empty(1).uniform_(*log_ratio).item())
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,)))
            left = int(torch.randint(0, width - w + 1, (1,)))
            return left, top, left + w, top + h
    ratio = width / height
    w, h = ((width, round(width / RATIO[0])) if ratio < RATIO[0] else
            (round(height * RATIO[1]), height) if ratio > RATIO[1] else (width, height))
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def centre_box(width: int, height: int, size: int) -> Box:
    """The centred ``size`` x ``size`` box (as in a centre crop)."""
    left, top = round((width - size) / 2), round((height - size) / 2)
    return left, top, left + size, top + size


@dataclass
class ImageFolder:
    """A map-style dataset of ``(normalised float32 (3, S, S) image, label)`` pairs."""

    samples: list[tuple[Path, int]]
    classes: list[str]
    image_size: int
    train: bool

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        try:
            with warnings.catch_warnings():  # its size is checked here, below Pillow's limit
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                file = Image.open(path)
            with file:
                width, height = file.size  # from the header: nothing is decoded yet
                if width * height > MAX_PIXELS:
                    raise ValueError(f"{path}: {width}x{height} pixels; images of at most "
                                     f"{MAX_PIXELS:,} pixels are read")
                image = file.convert("RGB")
        except (OSError, Image.DecompressionBombError) as exc:
            why = " ".join(str(exc).split())
            raise ValueError(f"{path}: not a readable image ({why})") from None
        size = self.image_size
        if self.train:
            box = random_resized_box(*image.size)
            image = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
            if torch.rand(1).item() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            width, height = image.size
            scale = (size * 8 // 7) / min(width, height)  # the shorter side to 8/7 of the crop
            image = image.resize((round(width * scale), round(height * scale)),
                                 Image.Resampling.BILINEAR)
            image = image.crop(centre_box(*image.size, size))
        return to_tensor(image), label


def to_tensor(image: object) -> torch.Tensor:
    """An RGB Pillow image as a ``(3, H, W)`` float32 tensor, scaled to [0, 1] and normalised
    with the ImageNet mean and std."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (pixels - mean) / std


def load_folders(data_dir: str | Path, image_size: int) -> tuple[ImageFolder, ImageFolder]:
    """The ``train`` and ``val`` datasets of ``data_dir`` (see the module docstring)."""
    root = Path(data_dir)
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise FileNotFoundError(f"data_dir={str(root)!r} has no {part}/ folder of classes")
    classes, train = find_images(root / "train")
    _, val = find_images(root / "val", classes)
    return (ImageFolder(train, classes, image_size, train=True),
            ImageFolder(val, classes, image_size, train=False))
