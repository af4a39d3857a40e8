"""A rank killed mid-run ends the whole torchrun job, and the run folder stays resumable (here
by a single process: checkpoints of a distributed run load without one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diracnets.checkpoint import load_checkpoint


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def rank_of(pid: int) -> int | None:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ranks = [int(v.split(b"=", 1)[1]) for v in env if v.startswith(b"RANK=")]
    return ranks[0] if ranks else None


@pytest.mark.distributed
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the ranks in /proc")
def test_killing_one_rank_ends_the_job_and_leaves_a_resumable_folder(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "diracnets.cli", "train", "--depth", "10", "--epochs", "50",
           "--batch-size", "32", "--train-limit", "320", "--no-progress", "--device", "cpu",
           "--out", str(run)]
    job = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists() and job.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.1)
        victims = [pid for pid in children(job.pid) if rank_of(pid) == 1]
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)  # in epoch 2 (of 50): mid-training
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    # the whole job ended, and torchrun's report names the rank that died and how
    assert job.returncode != 0
    assert "exitcode: -9" in err and "rank      : 1" in err, err[-3000:]
    # resumable, in one process, from the last epoch boundary rank 0 saved
    state = load_checkpoint(run / "last.pt")
    epochs = state["epoch"] + 1
    done = subprocess.run([sys.executable, "-m", "diracnets.cli", "train", "--resume",
                           str(run), "--epochs", str(epochs), "--device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 1 and summary["epochs"] == epochs
