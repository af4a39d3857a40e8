"""Readers for the CIFAR-10 and CIFAR-100 downloads, binary and python-pickle versions.

``data_dir`` is the downloaded ``.tar.gz`` archive, the folder it extracts to (say
``cifar-10-batches-bin``), or a folder holding that extracted folder at its top level. Nothing
else is searched: the files are read at their documented paths only. Formats (from the
dataset's page), with the documented record counts as upper bounds:

- binary CIFAR-10 (``cifar-10-batches-bin/``): ``data_batch_{1..5}.bin`` and
  ``test_batch.bin``, 10000 records each of 1 label byte and 3072 pixel bytes (1024 red,
  1024 green, 1024 blue, row-major);
- binary CIFAR-100 (``cifar-100-binary/``): ``train.bin`` (50000) and ``test.bin`` (10000),
  records of a coarse and a fine label byte, then the 3072 pixel bytes; the fine label is used;
- python CIFAR-10 (``cifar-10-batches-py/``): pickled dicts ``{b"data": uint8 (N, 3072),
  b"labels": [...]}`` in ``data_batch_{1..5}`` and ``test_batch``;
- python CIFAR-100 (``cifar-100-python/``): ``train`` and ``test`` with ``b"fine_labels"``.

Archives are read member by member, only the members needed, each checked against its
expected size before it is read. Pickles are read with :func:`diracnets.safe_pickle.safe_load`,
which never runs code; every array in them is checked against the expected shape and dtype
before it is made, and labels must be integers in range. Anything else is a ``ValueError``
naming the file.
"""

from __future__ import annotations

import os
import pickle
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dirac_core.untrusted import check_regular, read_bytes

from .safe_pickle import safe_load

PIXELS = 3 * 32 * 32
PICKLE_OVERHEAD = 2_000_000  # filenames, labels and keys of a python batch, generously
MAX_MEMBERS = 64  # a CIFAR archive holds 8 or 9
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass(frozen=True)
class Version:
    """One download's layout: its folder, files (with their record counts) and label field."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    records: dict[str, int]
    label: int | bytes  # binary: label bytes per record; python: the labels' key
    binary: bool

    def files(self) -> tuple[str, ...]:
        return self.train + self.test

    def max_bytes(self, name: str) -> int:
        count = self.records[name]
        if self.binary:
            return count * (int(self.label) + PIXELS)
        return count * PIXELS + PICKLE_OVERHEAD


def _counts(train: tuple[str, ...], per_train: int, test: str) -> dict[str, int]:
    return {**dict.fromkeys(train, per_train), test: 10_000}


_C10_BIN = tuple(f + ".bin" for f in CIFAR10_TRAIN)
# name -> (num_classes, versions in order of preference: binary first, it needs no unpickling)
LAYOUTS: dict[str, tuple[int, tuple[Version, Version]]] = {
    "cifar10": (10, (
        Version("cifar-10-batches-bin", _C10_BIN, ("test_batch.bin",),
                _counts(_C10_BIN, 10_000, "test_batch.bin"), 1, True),
        Version("cifar-10-batches-py", CIFAR10_TRAIN, ("test_batch",),
                _counts(CIFAR10_TRAIN, 10_000, "test_batch"), b"labels", False),
    )),
    "cifar100": (100, (
        Version("cifar-100-binary", ("train.bin",), ("test.bin",),
                _counts(("train.bin",), 50_000, "test.bin"), 2, True),
        Version("cifar-100-python", ("train",), ("test",),
                _counts(("train",), 50_000, "test"), b"fine_labels", False),
    )),
}

Split = tuple[np.ndarray, np.ndarray]
Blobs = dict[str, bytes]


def _read_folder(folder: Path, version: Version) -> Blobs:
    """The version's files in ``folder``, each size-checked before it is read."""
    missing = [f for f in version.files() if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{str(folder)!r} lacks {missing} of the {version.folder} "
                                "download")
    blobs = {}
    for name in version.files():
        size = (folder / name).stat().st_size
        _check_size(folder / name, size, version.max_bytes(name))
        blobs[name] = read_bytes(folder / name, "CIFAR file", version.max_bytes(name))
    return blobs


def _check_size(where: Path | str, size: int, limit: int) -> None:
    if size > limit:
        raise ValueError(f"{where}: {size} bytes, more than the {limit} bytes this file has in "
                         "the CIFAR download; refusing to read it")


def _read_archive(archive: tarfile.TarFile, path: Path,
                  versions: tuple[Version, ...]) -> tuple[Version, Blobs]:
    """The first version whose members are all in ``archive``, its members read one by one."""
    members: dict[str, tarfile.TarInfo] = {}
    for member in archive:  # headers only; a CIFAR archive has a handful of members
        members[member.name.removeprefix("./")] = member
        if len(members) > MAX_MEMBERS:
            raise ValueError(f"{path}: more than {MAX_MEMBERS} members, not a CIFAR archive")
    for version in versions:
        wanted = {f"{version.folder}/{name}": name for name in version.files()}
        if not all(w in members for w in wanted):
            continue
        blobs = {}
        # in archive order, so a compressed archive is decompressed front to back once
        for member_name in sorted(wanted, key=lambda w: members[w].offset):
            member, name = members[member_name], wanted[member_name]
            if not member.isfile():
                raise ValueError(f"{path}: {member_name} is not a regular file")
            _check_size(f"{path}:{member_name}", member.size, version.max_bytes(name))
            blobs[name] = archive.extractfile(member).read()  # type: ignore[union-attr]
        return version, blobs
    raise FileNotFoundError(f"{path} holds neither {_expected(versions)}")


def _expected(versions: tuple[Version, ...]) -> str:
    return " nor ".join(f"{v.folder}/{{{','.join(v.files())}}}" for v in versions)


def _read_download(data_dir: Path, versions: tuple[Version, ...]) -> tuple[Version, Blobs]:
    """Pick the version present at its documented place and read its files' bytes."""
    if data_dir.is_file():
        check_regular(data_dir, "CIFAR archive")  # not a sparse file
        try:
            with tarfile.open(data_dir) as archive:
                return _read_archive(archive, data_dir, versions)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"data_dir={str(data_dir)!r} is not a readable CIFAR archive "
                             f"(corrupt or truncated: {exc})") from None
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir={str(data_dir)!r} is neither a folder nor a tar "
                                "archive of a CIFAR download")
    for version in versions:
        for folder in (data_dir / version.folder, data_dir):
            if folder.is_dir() and any((folder / f).exists() for f in version.files()):
                return version, _read_folder(folder, version)
    raise FileNotFoundError(
        f"no CIFAR files at data_dir={str(data_dir)!r}: expected the archive, or "
        f"{_expected(versions)} in that folder or at its top level")


def _parse_binary(blob: bytes, label_bytes: int, name: str) -> Split:
    record = label_bytes + PIXELS
    if not blob or len(blob) % record:
        raise ValueError(
            f"{name}: {len(blob)} bytes is not a whole number of {record}-byte CIFAR records"
        )
    rows = np.frombuffer(blob, np.uint8).reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: the fine label comes last
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), labels


def _array_check(name: str, records: int) -> Callable[[tuple[int, ...], np.dtype], None]:
    """What an array in a python batch may be: the ``uint8`` images or integer labels."""

    def check(shape: tuple[int, ...], dtype: np.dtype) -> None:
        images = dtype == np.uint8 and len(shape) == 2 and shape[1] == PIXELS
        labels = dtype.kind in "iu" and len(shape) == 1
        if not (images or labels) or shape[0] > records:
            raise pickle.UnpicklingError(
                f"refused an array {dtype} {shape}: a CIFAR batch holds uint8 images "
                f"(N, {PIXELS}) and integer labels, N <= {records}")

    return check


def _labels(value: Any, count: int, name: str, key: bytes) -> np.ndarray:
    """Labels as int64, refusing anything that is not integers (no silent coercion)."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.ndim == 1:
        labels = value.astype(np.int64)
    elif isinstance(value, list) and all(type(v) is int for v in value):
        labels = np.array(value, dtype=np.int64) if value else np.zeros(0, np.int64)
    else:
        raise ValueError(f"{name}: {key!r} must be a list of integers")
    if labels.shape != (count,):
        raise ValueError(f"{name}: {labels.shape[0]} labels for {count} images")
    return labels


def _parse_pickle(blob: bytes, key: bytes, name: str, records: int) -> Split:
    try:
        batch = safe_load(blob, check_array=_array_check(name, records))
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if not isinstance(batch, dict) or b"data" not in batch or key not in batch:
        raise ValueError(f"{name}: expected a dict with b'data' and {key!r}")
    data = batch[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == PIXELS and data.shape[0] > 0):
        raise ValueError(f"{name}: b'data' must be a uint8 (N, {PIXELS}) array")
    return data.reshape(-1, 3, 32, 32), _labels(batch[key], data.shape[0], name, key)


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
        The downloaded ``.tar.gz``, the extracted folder, or a folder holding it at its top
        level (see the module docstring).

    Raises
    ------
    FileNotFoundError
        Neither version's files are at their documented place.
    ValueError
        A file or archive is corrupt, truncated, too large, or holds something other than
        CIFAR batches (labels included: integers in range).
    """
    if name not in LAYOUTS:
        raise ValueError(f"name={name!r} is not a CIFAR dataset; use one of {sorted(LAYOUTS)}")
    num_classes, versions = LAYOUTS[name]
    version, blobs = _read_download(Path(data_dir), versions)

    def parse(file: str) -> Split:
        if version.binary:
            return _parse_binary(blobs.pop(file), int(version.label), file)
        return _parse_pickle(blobs.pop(file), bytes(version.label), file,
                             version.records[file])

    train = _concat([parse(f) for f in version.train], num_classes, name)
    test = _concat([parse(f) for f in version.test], num_classes, name)
    return train, test, num_classes
