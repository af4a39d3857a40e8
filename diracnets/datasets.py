"""The data a run trains on: the built-in digits, CIFAR-10/100, or ImageNet-style class folders.

In-memory datasets (digits, CIFAR) are held as ``uint8`` tensors and normalised per batch;
class folders are streamed, read with Pillow (:mod:`.imagefolder`). :func:`load_dataset` picks
by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cifar import LAYOUTS, read_cifar

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")


PAD_MODES = ("zeros", "symmetric", "reflect")


@dataclass(frozen=True)
class Augment:
    """Training augmentation: pad by ``pad`` and crop back at random, optional h-flip.

    ``pad_mode`` fills the padding: ``"zeros"``, ``"symmetric"`` (mirrored with the edge pixel
    repeated, the authors' v1 ``cv2.BORDER_REFLECT``) or ``"reflect"`` (mirrored about the edge
    pixel, their v2).
    """

    pad: int = 0
    flip: bool = False
    pad_mode: str = "zeros"


@dataclass
class TensorSplit:
    """Images ``(N, C, H, W)`` as ``uint8`` and their ``int64`` labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, count: int | None) -> TensorSplit:
        """The first ``count`` examples (all when ``None``)."""
        if count is None or count >= len(self):
            return self
        return TensorSplit(self.images[:count], self.labels[:count])


@dataclass
class Dataset:
    """A train and a validation split plus what the model and the loader need to know.

    ``scale`` maps raw values to ``[0, 1]``; ``mean`` and ``std`` (per channel, after scaling)
    normalise a batch. ``train``/``val`` are :class:`TensorSplit` or, for class folders,
    :class:`~diracnets.imagefolder.ImageFolder` datasets.
    """

    name: str
    train: Any
    val: Any
    num_classes: int
    in_channels: int
    image_size: int
    scale: float = 1.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    augment: Augment = Augment()

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, TensorSplit)


def channel_stats(images: torch.Tensor, scale: float) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and std of ``uint8`` images scaled by ``1/scale`` (float64 sums)."""
    sums = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(sums)
    for chunk in images.split(4096):  # bounded memory for CIFAR's 50k images
        values = chunk.to(torch.float64) / scale
        sums += values.sum(dim=(0, 2, 3))
        squares += (values**2).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = sums / count
    std = (squares / count - mean**2).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _in_memory(name: str, train: TensorSplit, val: TensorSplit, num_classes: int, scale: float,
               augment: Augment) -> Dataset:
    mean, std = channel_stats(train.images, scale)
    _, channels, height, _ = train.images.shape
    return Dataset(name, train, val, num_classes, channels, height, scale, mean, std, augment)


def load_digits_dataset(val_fraction: float = 0.2) -> Dataset:
    """scikit-learn's bundled handwritten digits: 1797 8x8 grey images of 0-9, values 0-16.

    The data ships inside scikit-learn, so nothing is downloaded. A fixed permutation (seed 0,
    independent of the training seed) holds out ``val_fraction`` for validation. Augmentation
    is a 1-pixel shift; no flips (a mirrored digit is another glyph).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(labels)))
    held_out = round(val_fraction * len(labels))
    val_idx, train_idx = order[:held_out], order[held_out:]
    return _in_memory(
        "digits", TensorSplit(images[train_idx], labels[train_idx]),
        TensorSplit(images[val_idx], labels[val_idx]), 10, 16.0, Augment(pad=1, flip=False),
    )


def load_cifar_dataset(name: str, data_dir: str | Path) -> Dataset:
    """CIFAR-10/100 (train 50k, test 10k as validation) with the paper's augmentation:
    pad 4, random 32x32 crop, horizontal flip."""
    (xtr, ytr), (xte, yte), classes = read_cifar(name, data_dir)

    def split(x: np.ndarray, y: np.ndarray) -> TensorSplit:
        return TensorSplit(torch.from_numpy(x.copy()), torch.from_numpy(y))

    return _in_memory(name, split(xtr, ytr), split(xte, yte), classes, 255.0,
                      Augment(pad=4, flip=True))


def load_image_folders(data_dir: str | Path, image_size: int = 224) -> Dataset:
    """ImageNet-style ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` folders.

    Training: random resized crop to ``image_size`` and flip; validation: resize to
    ``image_size * 8/7`` and centre crop. Normalised with the ImageNet statistics. See
    :mod:`.imagefolder`.
    """
    from .imagefolder import load_folders

    train, val = load_folders(data_dir, image_size)
    return Dataset("imagefolder", train, val, len(train.classes), 3, image_size)


def load_dataset(name: str, data_dir: str | Path | None = None, image_size: int = 224) -> Dataset:
    """Load a dataset by name; see :data:`DATASETS`.

    Raises
    ------
    ValueError
        Unknown ``name``, or a dataset that needs ``data_dir`` without one.
    """
    if name not in DATASETS:
        raise ValueError(f"data={name!r} is not accepted; use one of {DATASETS}")
    if name == "digits":
        return load_digits_dataset()
    if data_dir is None:
        raise ValueError(f"data={name!r} needs --data-dir (the download's folder or archive)")
    if name in LAYOUTS:
        return load_cifar_dataset(name, data_dir)
    return load_image_folders(data_dir, image_size)
