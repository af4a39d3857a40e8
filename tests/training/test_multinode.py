"""Two nodes, simulated: two ``torchrun --nnodes 2`` launchers on 127.0.0.1, each in its own
working directory, sharing one run folder (as on a cluster with a shared filesystem)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from filelock import FileLock

from diracnets.rundir import LOCK, MARKER, read_marker


def two_nodes(tmp_path, port, run, *extra, timeout=150):
    """Start both launchers, wait for both; ``[(returncode, stdout, stderr)]`` per node."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
           "--nproc-per-node", "1", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"test-{port}",
           "-m", "diracnets.cli", "train", "--depth", "10", "--epochs", "1",
           "--batch-size", "32", "--train-limit", "96", "--no-progress", "--device", "cpu",
           "--out", str(run), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = []
    for n in range(2):
        cwd = tmp_path / f"node{n}"
        cwd.mkdir(exist_ok=True)
        nodes.append(subprocess.Popen(cmd, cwd=cwd, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        outputs = [p.communicate(timeout=timeout) for p in nodes]
        return [(p.returncode, *output) for p, output in zip(nodes, outputs, strict=True)]
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.distributed
def test_two_launchers_share_one_run_folder_and_one_writer(tmp_path, free_port):
    run = tmp_path / "shared" / "run"
    done = two_nodes(tmp_path, free_port(), run)
    for code, _, err in done:
        assert code == 0, err[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["fold"]["ok"]
    assert len(set(summary["replica_fingerprints"])) == 1
    # one writer: every file of the folder is one the run recorded; neither node's working
    # directory got anything; the per-epoch log came from one process only
    written = {p.name for p in run.iterdir()}
    assert written == set(read_marker(run).files) | {MARKER, LOCK}
    assert {"last.pt", "folded.safetensors", "model.safetensors"} <= written
    assert not any(any((tmp_path / f"node{n}").iterdir()) for n in range(2))
    assert sum(out.count("epoch 1/1") for _, out, _ in done) == 1
    # the lock was given back at the end; a second run while another process holds it is
    # refused on every rank with one line, and nothing in the folder changes
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with FileLock(run / LOCK, timeout=0):
        refused = two_nodes(tmp_path, free_port(), run, "--overwrite")
    for code, _, err in refused:
        assert code != 0
        lines = [line for line in err.splitlines() if line.startswith("diracnets: error")]
        assert len(lines) == 1 and "is in use by another diracnets process" in lines[0], err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
