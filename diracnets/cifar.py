"""Readers for the CIFAR-10 and CIFAR-100 downloads, binary and python-pickle versions.

Each reader takes the extracted folder (or a folder above it) or the ``.tar.gz`` archive itself,
and returns ``uint8`` images ``(N, 3, 32, 32)`` with ``int64`` labels. Formats (from the
dataset's page):

- binary CIFAR-10: ``data_batch_{1..5}.bin`` and ``test_batch.bin``, records of 1 label byte
  and 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major);
- binary CIFAR-100: ``train.bin`` and ``test.bin``, records of a coarse and a fine label byte,
  then the 3072 pixel bytes; the fine label (100 classes) is used;
- python CIFAR-10: pickled dicts ``{b"data": uint8 (10000, 3072), b"labels": [...]}`` in
  ``data_batch_{1..5}`` and ``test_batch``;
- python CIFAR-100: ``train`` and ``test`` with ``b"fine_labels"``.

Pickles are read with :func:`diracnets.safe_pickle.safe_load`, which never runs code.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .safe_pickle import safe_load

PIXELS = 3 * 32 * 32
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))

# name -> (num_classes, binary (train files, test files, label bytes), pickle (train, test, key))
LAYOUTS = {
    "cifar10": (10, (tuple(f + ".bin" for f in CIFAR10_TRAIN), ("test_batch.bin",), 1),
                (CIFAR10_TRAIN, ("test_batch",), b"labels")),
    "cifar100": (100, (("train.bin",), ("test.bin",), 2),
                 (("train",), ("test",), b"fine_labels")),
}

Split = tuple[np.ndarray, np.ndarray]


def _members(root: Path) -> dict[str, Callable[[], bytes]]:
    """Basename -> reader of every file under a folder or inside a tar archive."""
    if root.is_dir():
        return {
            name: (lambda p=Path(folder) / name: p.read_bytes())
            for folder, _, names in os.walk(root) for name in names
        }
    if root.is_file() and tarfile.is_tarfile(root):
        with tarfile.open(root) as archive:  # a CIFAR archive is a few files, read them all
            blobs = {
                Path(m.name).name: archive.extractfile(m).read()  # type: ignore[union-attr]
                for m in archive.getmembers() if m.isfile()
            }
        return {name: (lambda blob=blob: blob) for name, blob in blobs.items()}
    raise FileNotFoundError(
        f"data_dir={str(root)!r} is neither a folder nor a tar archive of a CIFAR download"
    )


def _parse_binary(blob: bytes, label_bytes: int, name: str) -> Split:
    record = label_bytes + PIXELS
    if not blob or len(blob) % record:
        raise ValueError(
            f"{name}: {len(blob)} bytes is not a whole number of {record}-byte CIFAR records"
        )
    rows = np.frombuffer(blob, np.uint8).reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: the fine label comes last
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), labels


def _parse_pickle(blob: bytes, key: bytes, name: str) -> Split:
    batch = safe_load(blob)
    if not isinstance(batch, dict) or b"data" not in batch or key not in batch:
        raise ValueError(f"{name}: expected a dict with b'data' and {key!r}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise ValueError(f"{name}: b'data' must be uint8 (N, {PIXELS}), got {data.dtype} "
                         f"{data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{name}: {labels.shape[0]} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels


def _concat(parts: list[Split], num_classes: int, name: str) -> Split:
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got "
                         f"[{labels.min()}, {labels.max()}]")
    return np.ascontiguousarray(images), labels


def read_cifar(name: str, data_dir: str | os.PathLike) -> tuple[Split, Split, int]:
    """Read a CIFAR download: ``((train_images, train_labels), (test_images, test_labels), C)``.

    The binary version is used when both are present (reading it runs no unpickling at all).

    Parameters
    ----------
    name
        ``"cifar10"`` or ``"cifar100"``.
    data_dir
        The extracted folder, a folder above it, or the downloaded ``.tar.gz``.

    Raises
    ------
    FileNotFoundError
        Neither version's files are there.
    ValueError
        A file is truncated or holds something other than CIFAR batches.
    """
    if name not in LAYOUTS:
        raise ValueError(f"name={name!r} is not a CIFAR dataset; use one of {sorted(LAYOUTS)}")
    num_classes, binary, python = LAYOUTS[name]
    files = _members(Path(data_dir))
    for (train, test, how), parse in ((binary, _parse_binary), (python, _parse_pickle)):
        if all(f in files for f in train + test):
            splits = tuple(
                _concat([parse(files[f](), how, f) for f in names], num_classes, name)
                for names in (train, test)
            )
            return splits[0], splits[1], num_classes
    wanted = [binary[0] + binary[1], python[0] + python[1]]
    raise FileNotFoundError(
        f"no {name} files under data_dir={str(data_dir)!r}: expected {list(wanted[0])} "
        f"(binary version) or {list(wanted[1])} (python version)"
    )
