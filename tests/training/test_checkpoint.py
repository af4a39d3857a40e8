"""Checkpoints: atomic writes, loading without code, tamper detection."""

from __future__ import annotations

import os

import pytest
import torch

from diracnets import checkpoint as ck
from diracnets.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _state():
    return {"model": {"w": torch.randn(3, 4)}, "epoch": 2, "history": [{"acc": 0.5}],
            "rng": (3, (1, 2, 3), None)}


def test_round_trip(tmp_path):
    state = _state()
    loaded = load_checkpoint(save_checkpoint(state, tmp_path / "last.pt"))
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["epoch"] == 2 and loaded["history"] == [{"acc": 0.5}]
    assert loaded["rng"] == (3, (1, 2, 3), None)
    # the file is a plain torch file that torch itself loads without code
    assert torch.load(tmp_path / "last.pt", weights_only=True)["format"] == ck.FORMAT


def test_tampered_payload_is_refused(tmp_path):
    path = save_checkpoint(_state(), tmp_path / "last.pt")
    envelope = torch.load(path, weights_only=True)
    envelope["payload"][-200] ^= 1  # one flipped bit, then re-saved consistently by torch
    torch.save(envelope, path)
    with pytest.raises(CheckpointError, match="failed its integrity check"):
        load_checkpoint(path)


def test_corrupted_file_is_refused(tmp_path):
    path = save_checkpoint(_state(), tmp_path / "last.pt")
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_pickled_object_never_runs(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": ck.FORMAT, "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="would need code to load"):
        load_checkpoint(path)


def test_other_files_are_not_checkpoints(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a diracnets checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    def crash(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(ck.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind
