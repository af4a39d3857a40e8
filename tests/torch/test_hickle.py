"""The authors' released v1 ImageNet files (.hkl, per-filter beta), checked against a forward
written independently from their notebook's ``define_train_diracnet``, in NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dirac_core as dc
from dirac_core.untrusted import UntrustedInputError
from dirac_torch import pretrained
from dirac_torch.fold import fold_model

h5py = pytest.importorskip("h5py")
from dirac_torch.hickle import load_hickle, read_hickle, write_hickle  # noqa: E402

BLOCKS = (2, 2, 2, 2)  # DiracNet-18
WIDTHS = (8, 16, 32, 64)  # int((64, 128, 256, 512) * 0.125)


def _their_delta(ni: int, no: int, k: int) -> np.ndarray:
    """Their ``dirac_delta``: ``dirac(n, n, k, k).repeat(max(no // ni, 1), max(ni // no, 1))``
    with ``n = min(ni, no)``."""
    n = min(ni, no)
    eye = np.zeros((n, n, k, k))
    eye[np.arange(n), np.arange(n), k // 2, k // 2] = 1
    return np.tile(eye, (max(no // ni, 1), max(ni // no, 1), 1, 1))


def _their_file(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Random weights in their training file's layout (``diracnet-18-0.75-br.hkl``)."""
    params: dict[str, np.ndarray] = {"conv": rng.standard_normal((WIDTHS[0], 3, 7, 7)) * 0.1}
    stats: dict[str, np.ndarray] = {}

    def bn(base: str, n: int) -> None:
        params[f"{base}.weight"] = rng.uniform(0.5, 1.5, n)
        params[f"{base}.bias"] = rng.standard_normal(n) * 0.1
        stats[f"{base}.running_mean"] = rng.standard_normal(n) * 0.1
        stats[f"{base}.running_var"] = rng.uniform(0.5, 1.5, n)

    bn("bn", WIDTHS[0])
    channels = WIDTHS[0]
    for g, (width, blocks) in enumerate(zip(WIDTHS, BLOCKS, strict=True)):
        for j in range(2 * blocks):
            base = f"group{g}.block{j}"
            params[f"{base}.conv"] = rng.standard_normal((width, 2 * channels, 3, 3))
            params[f"{base}.conv.gamma"] = rng.uniform(0.5, 2, 1)  # alpha: a scalar
            params[f"{base}.conv.beta"] = rng.uniform(0.1, 1, width)  # one per filter
            stats[f"eye{width}_{2 * channels}_3_3"] = _their_delta(2 * channels, width, 3)
            bn(f"{base}.bn", width)
            channels = width
    params["fc.weight"] = rng.standard_normal((5, channels)) * 0.1
    params["fc.bias"] = rng.standard_normal(5) * 0.1
    return {"params": params, "stats": stats}


def _max_pool(x: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    out = (x.shape[2] - k) // s + 1
    windows = [x[:, :, i:i + s * out:s, j:j + s * out:s] for i in range(k) for j in range(k)]
    return np.max(windows, axis=0)


def _their_forward(data: dict[str, dict[str, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Their notebook's ``define_train_diracnet(18)`` in evaluation mode, in float64."""
    params, stats = data["params"], data["stats"]

    def batch_norm(o: np.ndarray, base: str) -> np.ndarray:
        scale = params[f"{base}.weight"] / np.sqrt(stats[f"{base}.running_var"] + 1e-5)
        shift = params[f"{base}.bias"] - stats[f"{base}.running_mean"] * scale
        return o * scale[:, None, None] + shift[:, None, None]

    o = dc.conv(x, params["conv"], stride=2, padding=3)
    o = _max_pool(batch_norm(o, "bn"), 3, 2, 1)
    for g, blocks in enumerate(BLOCKS):
        if g:
            o = _max_pool(o, 2, 2, 0)
        for j in range(2 * blocks):
            base = f"group{g}.block{j}"
            w = params[f"{base}.conv"]
            flat = w.reshape(w.shape[0], -1)
            normalized = (flat / np.linalg.norm(flat, axis=1, keepdims=True)).reshape(w.shape)
            eye = stats["eye" + "_".join(map(str, w.shape))]
            w_hat = params[f"{base}.conv.beta"][:, None, None, None] * normalized \
                + params[f"{base}.conv.gamma"] * eye
            o = np.concatenate([np.maximum(o, 0), np.minimum(o, 0)], axis=1)  # ncrelu
            o = batch_norm(dc.conv(o, w_hat, padding=1), f"{base}.bn")
    o = np.maximum(o, 0).mean(axis=(2, 3))  # avg_pool2d(F.relu(o), o.size(-1))
    return o @ params["fc.weight"].T + params["fc.bias"]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    data = _their_file(np.random.default_rng(0))
    path = tmp_path_factory.mktemp("hkl") / "diracnet-18-0.125-br.hkl"
    write_hickle(path, data)
    return path, data


def test_their_training_file_loads_as_the_papers_network(released):
    path, data = released
    model = load_hickle(path).double().eval()
    assert model.spec.options["family"] == "paper_imagenet"
    assert model.spec.options["per_channel"] == "beta" and model.spec.num_classes == 5
    assert sum(p.numel() for p in model.parameters()) == sum(
        v.size for v in data["params"].values())
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64))
    expected = _their_forward(data, x)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    assert np.allclose(ours, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_their_folded_export_loads_folded(released, tmp_path):
    path, data = released
    folded = fold_model(load_hickle(path).double().eval())
    export = pretrained.authors_state_dict(folded)
    assert pretrained.detect_layout(export) == "v1-folded"
    assert set(export) >= {"conv.weight", "conv.bias", "group3.block3.conv.bias", "fc.weight"}
    write_hickle(tmp_path / "export.hkl", {k: v.numpy() for k, v in export.items()})
    model = load_hickle(tmp_path / "export.hkl")
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64))
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    expected = _their_forward(data, x)
    assert np.allclose(ours, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def test_read_hickle_reads_what_write_hickle_wrote(released):
    path, data = released
    back = read_hickle(path)
    assert back.keys() == data.keys()
    for part in data:
        assert back[part].keys() == data[part].keys()
        assert all(np.array_equal(back[part][k], v) for k, v in data[part].items())


def _file(path, build) -> str:
    with h5py.File(path, "w") as handle:
        build(handle)
    return str(path)


@pytest.mark.parametrize("build, message", [
    (lambda f: f.create_group("other"), "has no 'data_0'"),
    (lambda f: f.create_dataset("data_0", data=np.zeros(2)), "holds no dict"),
    (lambda f: f.create_group("data_0").create_group("conv"), "keys are quoted names"),
    (lambda f: f.create_group("data_0").create_group("'conv'").create_dataset(
        "data_0", data=np.array([b"text"])), "accepted"),
    (lambda f: f.create_group("data_0").create_group("'conv'").__setitem__(
        "data_0", h5py.SoftLink("/elsewhere")), "links are refused"),
    (lambda f: f.create_group("data_0").create_group("'conv'").__setitem__(
        "data_0", h5py.ExternalLink("other.h5", "/x")), "links are refused"),
    (lambda f: f.create_group("data_0").create_group("'a'").create_group("data_0")
     .create_group("'b'").create_group("data_0").create_group("'c'").create_group("data_0")
     .create_group("'d'").create_dataset("data_0", data=np.zeros(1)), "deeper than"),
])
def test_files_that_are_not_the_authors_are_refused(tmp_path, build, message):
    with pytest.raises(UntrustedInputError, match=message):
        read_hickle(_file(tmp_path / "bad.hkl", build))


def test_not_hdf5_and_not_a_file_are_refused(tmp_path):
    (tmp_path / "text.hkl").write_text("not hdf5")
    with pytest.raises(UntrustedInputError, match="not an HDF5 file"):
        read_hickle(tmp_path / "text.hkl")
    with pytest.raises(UntrustedInputError, match="a directory"):
        read_hickle(tmp_path)


def test_nan_or_infinite_weights_are_refused_naming_the_file_and_keys(released, tmp_path):
    _, data = released
    params = {**data["params"], "fc.bias": np.full(5, np.nan),
              "group0.block0.conv.gamma": np.array([np.inf])}
    path = tmp_path / "nan.hkl"
    write_hickle(path, {"params": params, "stats": data["stats"]})
    with pytest.raises(pretrained.AuthorsCheckpointError,
                       match=r"nan.hkl'.*NaN or infinite values in \['[^]]*'\]; refused$") as info:
        load_hickle(path)
    assert "'fc.bias'" in str(info.value) and "'group0.block0.conv.gamma'" in str(info.value)


@pytest.mark.parametrize("chunks", [None, (2**20,)])
def test_an_array_the_file_does_not_store_is_refused_before_it_is_read(tmp_path, chunks):
    """A few KB declaring 256 MiB of float64 (never written): refused, nothing allocated."""
    path = _file(tmp_path / "huge.hkl", lambda f: f.create_group("data_0").create_group(
        "'conv'").create_dataset("data_0", shape=(2**25,), dtype="float64", chunks=chunks))
    assert Path(path).stat().st_size < 10_000
    with pytest.raises(UntrustedInputError,
                       match=r"huge.hkl'/'conv' declares \(33554432,\) of float64 "
                             r"\(268,435,456 bytes\) but the file stores 0"):
        read_hickle(path)


def test_compressed_arrays_are_read_though_they_store_fewer_bytes(tmp_path):
    path = _file(tmp_path / "gzip.hkl", lambda f: f.create_group("data_0").create_group(
        "'conv'").create_dataset("data_0", data=np.zeros(4096), compression="gzip"))
    assert np.array_equal(read_hickle(path)["conv"], np.zeros(4096))


def test_a_compressed_array_that_would_expand_past_the_limit_is_refused(tmp_path):
    """256 MiB of zeros gzip to about 260 KB: a bomb under the element budget, refused before
    it is read; the same zeros in 1 MiB still read."""
    path = _file(tmp_path / "bomb.hkl", lambda f: f.create_group("data_0").create_group(
        "'conv'").create_dataset("data_0", data=np.zeros(2**25), compression="gzip",
                                 chunks=(2**20,)))
    assert Path(path).stat().st_size < 2**20
    with pytest.raises(UntrustedInputError,
                       match=r"bomb.hkl'/'conv' declares \(33554432,\) of float64 "
                             r"\(268,435,456 bytes\) compressed into [\d,]+; refused"):
        read_hickle(path)
    path = _file(tmp_path / "ok.hkl", lambda f: f.create_group("data_0").create_group(
        "'conv'").create_dataset("data_0", data=np.zeros(2**17), compression="gzip"))
    assert not read_hickle(path)["conv"].any()
