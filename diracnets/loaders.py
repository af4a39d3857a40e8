"""Batches for one rank, reproducible from ``(seed, epoch, batch)`` alone.

Every random choice (the epoch's order, each global batch's crops and flips) comes from a
generator seeded by a :class:`numpy.random.SeedSequence` of ``(seed, epoch, batch)``. So a run
resumed at any batch, in any process, sees exactly the batches an uninterrupted run would, and
the ranks of a data-parallel run split each global batch, augmentation included, without
overlap: together they see what one process sees (in-memory datasets; class folders augment
in their loader workers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dirac_core.validation import one_of

from .datasets import PAD_MODES, Augment, Dataset, TensorSplit

Batch = tuple[torch.Tensor, torch.Tensor]


def generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from the integers ``key`` (distinct keys, independent streams)."""
    seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed)


def epoch_order(length: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``range(length)`` that epoch ``epoch`` visits."""
    return torch.randperm(length, generator=generator(seed, epoch))


def augment_batch(images: torch.Tensor, augment: Augment, gen: torch.Generator, *,
                  rank: int = 0, world: int = 1) -> torch.Tensor:
    """Random crop after padding by ``augment.pad`` (filled as ``augment.pad_mode`` says), then a
    random horizontal flip.

    Works on ``(N, C, H, W)`` of any dtype; one offset pair and one flip draw per image. The
    draws are made for a global batch of ``N * world`` images, of which ``images`` is the
    ``rank``-th part: the ranks of a data-parallel run together augment their global batch
    exactly as one process augments it whole.
    """
    n, channels, height, width = images.shape
    mine = slice(rank * n, (rank + 1) * n)
    if augment.pad:
        pad = augment.pad
        padded = pad_images(images, pad, augment.pad_mode)
        dy = torch.randint(0, 2 * pad + 1, (n * world, 1, 1, 1), generator=gen)[mine]
        dx = torch.randint(0, 2 * pad + 1, (n * world, 1, 1, 1), generator=gen)[mine]
        rows = dy + torch.arange(height).view(1, 1, -1, 1)
        cols = dx + torch.arange(width).view(1, 1, 1, -1)
        padded = padded.gather(2, rows.expand(n, channels, height, width + 2 * pad))
        images = padded.gather(3, cols.expand(n, channels, height, width))
    if augment.flip:
        flip = torch.rand(n * world, generator=gen)[mine] < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    return images


def _mirror(size: int, pad: int, mode: str) -> torch.Tensor:
    """Indices ``-pad .. size + pad - 1`` folded back into ``range(size)`` by mirroring."""
    index = torch.arange(-pad, size + pad)
    edge = 1 if mode == "symmetric" else 0  # symmetric repeats the edge pixel
    index = torch.where(index < 0, -index - edge, index)
    return torch.where(index >= size, 2 * size - 2 + edge - index, index)


def pad_images(images: torch.Tensor, pad: int, mode: str = "zeros") -> torch.Tensor:
    """``(N, C, H, W)`` padded by ``pad`` on each side: zeros, or mirrored (``"symmetric"``:
    ``cba|abcd|dcb``; ``"reflect"``: ``dcb|abcd|cba``).

    Raises
    ------
    ValueError
        An unknown mode, or a mirror wider than the image.

    Examples
    --------
    >>> image = torch.arange(1, 10).view(1, 1, 3, 3)  # first row: 1 2 3
    >>> pad_images(image, 2, "symmetric")[0, 0, 2].tolist()
    [2, 1, 1, 2, 3, 3, 2]
    >>> pad_images(image, 2, "reflect")[0, 0, 2].tolist()
    [3, 2, 1, 2, 3, 2, 1]
    """
    one_of(mode, "pad_mode", PAD_MODES)
    if mode == "zeros":
        return F.pad(images, (pad, pad, pad, pad))
    height, width = images.shape[-2:]
    if pad > min(height, width) - (mode == "reflect"):
        raise ValueError(f"pad={pad} is too wide to mirror a {height}x{width} image "
                         f"(pad_mode={mode!r})")
    rows = _mirror(height, pad, mode).to(images.device)
    cols = _mirror(width, pad, mode).to(images.device)
    return images.index_select(-2, rows).index_select(-1, cols)


class Schedule:
    """Which examples each batch of an epoch holds on one rank.

    Training (``shuffle=True``): a fresh permutation each epoch; the last incomplete global
    batch is dropped so every rank takes the same number of steps. Evaluation: the fixed
    order, rank ``r`` taking every ``world``-th example, nothing dropped.
    """

    def __init__(self, length: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                 rank: int = 0, world: int = 1) -> None:
        if shuffle and length < batch_size * world:
            raise ValueError(
                f"batch_size={batch_size * world} (over {world} rank(s)) is larger than the "
                f"{length} training examples; lower --batch-size"
            )
        self.length, self.batch_size, self.shuffle = length, batch_size, shuffle
        self.seed, self.rank, self.world = seed, rank, world

    def __len__(self) -> int:
        if self.shuffle:
            return self.length // (self.batch_size * self.world)
        mine = len(range(self.rank, self.length, self.world))
        return -(-mine // self.batch_size)

    def batch_indices(self, epoch: int, start: int = 0) -> Iterator[torch.Tensor]:
        """Example indices of each batch of ``epoch``, from batch ``start`` on."""
        if self.shuffle:
            step = self.batch_size * self.world
            order = epoch_order(self.length, self.seed, epoch)[: len(self) * step]
            mine = order.view(len(self), self.world, self.batch_size)[:, self.rank].reshape(-1)
        else:
            mine = torch.arange(self.rank, self.length, self.world)
        for b in range(start, len(self)):
            yield mine[b * self.batch_size: (b + 1) * self.batch_size]


class TensorLoader:
    """Batches of an in-memory :class:`TensorSplit`, normalised and moved to ``device``.

    Parameters
    ----------
    split, dataset
        The examples, and the dataset they belong to (scale, mean, std, augmentation).
    batch_size
        Examples per batch *on this rank*; ``shuffle``, ``seed``, ``rank`` and ``world`` as in
        :class:`Schedule`. Augmentation applies to shuffled (training) loaders only.
    """

    def __init__(self, split: TensorSplit, dataset: Dataset, batch_size: int, *, shuffle: bool,
                 seed: int = 0, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu") -> None:
        self.split, self.seed, self.rank = split, seed, rank
        self.schedule = Schedule(len(split), batch_size, shuffle=shuffle, seed=seed, rank=rank,
                                 world=world)
        self.device = torch.device(device)
        self.augment = dataset.augment if shuffle else Augment()
        self.scale = dataset.scale
        self.mean = torch.tensor(dataset.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(dataset.std, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.schedule)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """Yield ``(images, labels)`` of ``epoch`` from batch ``start`` on."""
        for b, idx in enumerate(self.schedule.batch_indices(epoch, start), start):
            images = self.split.images[idx]
            if self.augment.pad or self.augment.flip:
                # keyed by the global batch alone (the 0 was the rank once: single-process
                # runs keep their augmentation), so any number of ranks draws the same
                images = augment_batch(images, self.augment, generator(self.seed, epoch, b, 0),
                                       rank=self.rank, world=self.schedule.world)
            yield self._normalise(images), self.split.labels[idx].to(self.device)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True).to(torch.float32) / self.scale
        return (images - self.mean) / self.std


class FolderLoader:
    """Batches of a class-folder dataset through a :class:`torch.utils.data.DataLoader`.

    The order and the split between ranks follow :class:`Schedule`; the random crops and flips
    draw from the worker RNGs, seeded per ``(seed, epoch, start)``.
    """

    def __init__(self, data: Any, batch_size: int, *, shuffle: bool, seed: int = 0,
                 rank: int = 0, world: int = 1, device: torch.device | str = "cpu",
                 workers: int = 4) -> None:
        self.data, self.seed, self.workers = data, seed, workers
        self.schedule = Schedule(len(data), batch_size, shuffle=shuffle, seed=seed, rank=rank,
                                 world=world)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.schedule)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        batch_list = [idx.tolist() for idx in self.schedule.batch_indices(epoch, start)]
        loader = torch.utils.data.DataLoader(
            self.data, batch_sampler=batch_list, num_workers=self.workers,
            pin_memory=self.device.type == "cuda", generator=generator(self.seed, epoch, start),
        )
        for images, labels in _worker_errors_unwrapped(loader):
            yield (images.to(self.device, non_blocking=True),
                   labels.to(self.device, non_blocking=True))


def _worker_errors_unwrapped(loader: Iterable[Batch]) -> Iterator[Batch]:
    """``loader``'s batches; an image that a worker process could not read raises the
    worker's own one-line ``ValueError``, not the worker's whole traceback (which PyTorch puts
    into the message of the error it re-raises)."""
    try:
        yield from loader
    except ValueError as exc:
        text = str(exc)
        if "Original Traceback" not in text:
            raise
        last = text.strip().splitlines()[-1]
        raise ValueError(last.removeprefix("ValueError: ")) from None


def make_loaders(dataset: Dataset, batch_size: int, *, seed: int, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu", workers: int = 4,
                 train_limit: int | None = None) -> tuple[TensorLoader | FolderLoader, ...]:
    """``(train, val)`` loaders for this rank; ``batch_size`` is the global batch size.

    Raises
    ------
    ValueError
        ``batch_size`` not divisible by the number of ranks.
    """
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} must be divisible by the {world} ranks")
    per_rank = batch_size // world
    common = {"seed": seed, "rank": rank, "world": world, "device": device}
    if dataset.in_memory:
        return (TensorLoader(dataset.train.subset(train_limit), dataset, per_rank, shuffle=True,
                             **common),
                TensorLoader(dataset.val, dataset, per_rank, shuffle=False, **common))
    train = dataset.train
    if train_limit is not None and train_limit < len(train):
        train = torch.utils.data.Subset(train, range(train_limit))
    return (FolderLoader(train, per_rank, shuffle=True, workers=workers, **common),
            FolderLoader(dataset.val, per_rank, shuffle=False, workers=workers, **common))
