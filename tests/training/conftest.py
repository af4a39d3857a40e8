"""Shared fixtures: a small slice of the built-in digits and tiny, fast run configs."""

from __future__ import annotations

import pytest
import torch

from diracnets.config import TrainConfig
from diracnets.datasets import Dataset, TensorSplit, load_digits_dataset


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions run fastest, and reproducibly, on one thread (and never oversubscribe
    the cores that pytest-xdist workers share)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_digits_dataset()


@pytest.fixture
def small_digits(digits: Dataset) -> Dataset:
    """160 training and 64 validation digits (same statistics as the full set)."""
    return Dataset(
        digits.name, digits.train.subset(160),
        TensorSplit(digits.val.images[:64], digits.val.labels[:64]), digits.num_classes,
        digits.in_channels, digits.image_size, digits.scale, digits.mean, digits.std,
        digits.augment,
    )


@pytest.fixture
def tiny_config(tmp_path):
    """A DiracNet-10 on the digits, 5 batches of 32 per epoch, no progress bars."""

    def make(**overrides) -> TrainConfig:
        values = {"depth": 10, "epochs": 2, "batch_size": 32, "progress": False,
                  "device": "cpu", "out": str(tmp_path / "run"), "train_limit": 160}
        return TrainConfig(**{**values, **overrides})

    return make

