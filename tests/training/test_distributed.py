"""Data-parallel training through torchrun: two CPU processes (gloo) with ``--sync-bn`` end
with equal weights, and the network folds (its batch norms are plain ones again)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from diracnets.checkpoint import load_checkpoint


@pytest.mark.distributed
def test_torchrun_two_cpu_ranks_end_identical(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "diracnets.cli", "train", "--depth", "10", "--epochs", "1",
           "--batch-size", "32", "--train-limit", "160", "--no-progress", "--device", "cpu",
           "--sync-bn",
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    rank0, rank1 = summary["replica_fingerprints"]
    assert rank0 == rank1  # SHA-256 of each rank's full state dict after training
    assert summary["epochs"] == 1 and summary["fold"]["ok"]
    saved = load_checkpoint(out / "last.pt")
    weights = load_file(str(out / "model.safetensors"))
    assert saved["model"].keys() == weights.keys()
    assert all(torch.equal(saved["model"][k], weights[k]) for k in weights)
    # 160 examples in global batches of 32 (16 per rank): 5 steps, every example once
    assert saved["optimizer"]["state"]  # it trained
