"""CIFAR readers on tiny fake downloads (binary and python versions; folders and archives)."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
import tracemalloc

import numpy as np
import pytest
import torch

from diracnets.cifar import read_cifar
from diracnets.datasets import load_cifar_dataset, load_dataset

PER_FILE = 3


def _images(count: int, offset: int) -> np.ndarray:
    """Distinct uint8 images (N, 3, 32, 32) so that any mix-up of layout shows."""
    rng = np.random.default_rng(offset)
    return rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)


def _records(images: np.ndarray, labels: list[list[int]]) -> bytes:
    rows = [bytes(label) + img.tobytes() for img, label in zip(images, labels, strict=True)]
    return b"".join(rows)


def make_cifar10_binary(root) -> dict:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    truth = {"train": [], "test": []}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for n, name in enumerate(names):
        images, labels = _images(PER_FILE, n), [(n + k) % 10 for k in range(PER_FILE)]
        (folder / name).write_bytes(_records(images, [[y] for y in labels]))
        truth["test" if "test" in name else "train"].append((images, labels))
    return truth


def make_cifar100_binary(root) -> dict:
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    truth = {}
    for n, part in enumerate(("train", "test")):
        images = _images(PER_FILE, 10 + n)
        fine = [42 + k + n for k in range(PER_FILE)]
        (folder / f"{part}.bin").write_bytes(_records(images, [[7, y] for y in fine]))
        truth[part] = [(images, fine)]
    return truth


def make_cifar_python(root, name: str) -> dict:
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    if name == "cifar10":
        files, key = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels"
    else:
        files, key = ["train", "test"], b"fine_labels"
    truth = {"train": [], "test": []}
    for n, fname in enumerate(files):
        images = _images(PER_FILE, 20 + n)
        labels = [(3 * n + k) % 10 for k in range(PER_FILE)]
        batch = {b"data": images.reshape(PER_FILE, -1), key: labels, b"batch_label": b"x"}
        (folder / fname).write_bytes(pickle.dumps(batch, protocol=2))
        truth["test" if "test" in fname else "train"].append((images, labels))
    return truth


def _check(split, parts) -> None:
    images, labels = split
    np.testing.assert_array_equal(images, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(labels, np.concatenate([p[1] for p in parts]))
    assert images.dtype == np.uint8 and labels.dtype == np.int64


@pytest.mark.parametrize("maker, name, classes", [
    (make_cifar10_binary, "cifar10", 10),
    (make_cifar100_binary, "cifar100", 100),
    (lambda root: make_cifar_python(root, "cifar10"), "cifar10", 10),
    (lambda root: make_cifar_python(root, "cifar100"), "cifar100", 100),
])
def test_reads_every_format_exactly(tmp_path, maker, name, classes):
    truth = maker(tmp_path)
    train, test, num_classes = read_cifar(name, tmp_path)  # a folder above the extracted one
    assert num_classes == classes
    _check(train, truth["train"])
    _check(test, truth["test"])


def test_reads_the_tar_gz_archive(tmp_path):
    truth = make_cifar10_binary(tmp_path / "src")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    train, test, _ = read_cifar("cifar10", archive)
    _check(train, truth["train"])
    _check(test, truth["test"])


def test_dataset_has_paper_augmentation_and_stats(tmp_path):
    make_cifar10_binary(tmp_path)
    data = load_dataset("cifar10", tmp_path)
    assert (data.augment.pad, data.augment.flip) == (4, True)
    assert data.train.images.shape == (5 * PER_FILE, 3, 32, 32)
    assert (data.in_channels, data.image_size, data.num_classes) == (3, 32, 10)
    expected = data.train.images.double().div(255).mean(dim=(0, 2, 3))
    torch.testing.assert_close(torch.tensor(data.mean, dtype=torch.float64), expected)


def test_malicious_python_batch_is_refused(tmp_path):
    make_cifar_python(tmp_path, "cifar10")

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    target = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    target.write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3: refused to load global posix\.system"):
        load_cifar_dataset("cifar10", tmp_path)


def test_truncated_binary_file_is_reported(tmp_path):
    make_cifar10_binary(tmp_path)
    target = tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin"
    target.write_bytes(target.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"data_batch_2.bin: .* not a whole number"):
        read_cifar("cifar10", tmp_path)


def test_out_of_range_labels_are_reported(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    make_cifar10_binary(tmp_path)
    (folder / "test_batch.bin").write_bytes(_records(_images(1, 0), [[11]]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        read_cifar("cifar10", tmp_path)


def test_missing_files_name_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_batch_1\.bin"):
        read_cifar("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a tar"):
        read_cifar("cifar10", tmp_path / "nope")
    with pytest.raises(ValueError, match="needs --data-dir"):
        load_dataset("cifar100")


def test_reads_the_documented_layout_only(tmp_path):
    truth = make_cifar10_binary(tmp_path)
    make_cifar10_binary(tmp_path / "old-copy")  # another copy deeper down: never mixed in
    train, test, _ = read_cifar("cifar10", tmp_path)
    _check(train, truth["train"])
    _check(test, truth["test"])
    # the extracted folder itself works too
    train, _, _ = read_cifar("cifar10", tmp_path / "cifar-10-batches-bin")
    _check(train, truth["train"])
    # a download two levels down is not searched for
    (tmp_path / "downloads").mkdir()
    shutil.move(tmp_path / "cifar-10-batches-bin", tmp_path / "downloads")
    with pytest.raises(FileNotFoundError, match="expected the archive"):
        read_cifar("cifar10", tmp_path)


def test_an_incomplete_download_names_the_missing_files(tmp_path):
    make_cifar10_binary(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks \['data_batch_4.bin'\]"):
        read_cifar("cifar10", tmp_path)


def test_an_archive_is_read_member_by_member(tmp_path):
    truth = make_cifar10_binary(tmp_path / "src")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    junk = 64 * 2**20  # an unrelated member, tiny once compressed
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/readme-huge.bin")
        info.size = junk
        tar.addfile(info, io.BytesIO(bytes(junk)))
        tar.add(tmp_path / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    tracemalloc.start()
    try:
        train, _, _ = read_cifar("cifar10", archive)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _check(train, truth["train"])
    assert peak < junk // 8, f"peak {peak / 2**20:.1f} MiB: the unrelated member was read"


def test_a_member_larger_than_its_documented_size_is_not_read(tmp_path):
    archive = tmp_path / "cifar-100-binary.tar.gz"
    record = 2 + 3072
    with tarfile.open(archive, "w:gz") as tar:
        for name, records in (("train.bin", 1), ("test.bin", 10_001)):
            info = tarfile.TarInfo(f"cifar-100-binary/{name}")
            info.size = records * record
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(ValueError, match=r"test\.bin: 30743074 bytes, more than the "
                                         r"30740000 bytes"):
        read_cifar("cifar100", archive)


def _python_batch(tmp_path, batch: dict | bytes, key=b"labels") -> None:
    make_cifar_python(tmp_path, "cifar10")
    blob = batch if isinstance(batch, bytes) else pickle.dumps(batch, protocol=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(blob)


@pytest.mark.parametrize("labels", [[1.0, 2.0, 3.0], [b"1", b"2", b"3"], ["1", "2", "3"],
                                    [True, False, True], np.array([1.5, 2.0, 3.0])])
def test_labels_must_be_integers(tmp_path, labels):
    _python_batch(tmp_path, {b"data": _images(3, 0).reshape(3, -1), b"labels": labels})
    with pytest.raises(ValueError, match=r"data_batch_2: .*(list of integers|integer labels)"):
        read_cifar("cifar10", tmp_path)


def _ndarray_call(shape: tuple[int, ...]) -> bytes:
    """A protocol-2 pickle of ``{b"data": numpy.ndarray(shape, uint8), b"labels": [0, 0]}``:
    an uninitialised array of any size, for a few bytes."""
    dims = b"".join(b"J" + n.to_bytes(4, "little") for n in shape)
    return (b"\x80\x02}(C\x04data" + b"cnumpy\nndarray\n(" + dims + b"tcnumpy\ndtype\nX\x02\x00"
            b"\x00\x00u1\x85R\x85R" + b"C\x06labels]J\x00\x00\x00\x00J\x00\x00\x00\x00eu.")


def test_a_pickle_cannot_construct_arbitrary_arrays(tmp_path):
    _python_batch(tmp_path, _ndarray_call((2, 3072)))
    with pytest.raises(ValueError, match="data_batch_2: not a readable pickle"):
        read_cifar("cifar10", tmp_path)


def test_arrays_are_checked_before_they_are_made(tmp_path):
    too_many = np.zeros((10_001, 3072), np.uint8)  # more than a CIFAR-10 batch holds
    for data in (too_many, np.zeros((3, 3072), np.float64), np.zeros((3, 100), np.uint8)):
        _python_batch(tmp_path / str(data.shape), {b"data": data, b"labels": [0, 1, 2]})
        with pytest.raises(ValueError, match=r"data_batch_2: refused an array"):
            read_cifar("cifar10", tmp_path / str(data.shape))
