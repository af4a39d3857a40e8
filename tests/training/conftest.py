"""Shared fixtures: a small slice of the built-in digits and tiny, fast run configs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

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



def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def free_port():
    """``free_port()``: a TCP port on 127.0.0.1 that nothing listens on now."""
    return _free_port


@pytest.fixture
def launch_ranks(tmp_path):
    """Run ``ranks.py TASK`` as ``world`` gloo processes on 127.0.0.1 (one thread each); return
    their folder ``TASK-WORLD``, which holds each rank's ``rank{r}.pt``. Every process is
    killed after ``timeout`` seconds, so a hung collective fails the test, not the suite."""

    def launch(task: str, world: int, timeout: float = 60) -> Path:
        out = tmp_path / f"{task}-{world}"
        out.mkdir(exist_ok=True)  # the test may have put a run there
        env = {**os.environ, "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
        script = Path(__file__).with_name("ranks.py")
        procs = [subprocess.Popen([sys.executable, str(script), task, str(out)],
                                  env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for r in range(world)]
        try:
            outputs = [p.communicate(timeout=timeout)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for r, (p, text) in enumerate(zip(procs, outputs, strict=True)):
            assert p.returncode == 0, f"rank {r} of {task}:\n{text[-3000:]}"
        return out

    return launch


@pytest.fixture(scope="session")
def one_epoch_run(tmp_path_factory, digits) -> Path:
    """The folder of a finished run: DiracNet-10 on the digits, 1 epoch of 5 batches of 32.
    Copy it before changing anything in it."""
    from diracnets.run import run_training

    out = tmp_path_factory.mktemp("one-epoch") / "run"
    config = TrainConfig(depth=10, epochs=1, batch_size=32, train_limit=160, device="cpu",
                         progress=False, out=str(out))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(config, dataset=digits, log=None)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def run_copy(one_epoch_run, tmp_path) -> Path:
    """A private copy of :func:`one_epoch_run`'s folder (its marker too), free to edit."""
    copy = tmp_path / "run"
    shutil.copytree(one_epoch_run, copy, ignore=shutil.ignore_patterns(".diracnets-run.lock"))
    return copy


@pytest.fixture(scope="session")
def rank_tasks():
    """``ranks.py`` as a module, for the single-process side of a comparison."""
    spec = importlib.util.spec_from_file_location("ranks", Path(__file__).with_name("ranks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
