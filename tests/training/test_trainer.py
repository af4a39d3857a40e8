"""The training loop's promises: exact resume, clean stops, NaN stops, best/last checkpoints."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from diracnets.checkpoint import load_checkpoint
from diracnets.trainer import NonFiniteLossError, Trainer, TrainingInterrupted


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _straight(tiny_config, small_digits, tmp_path, epochs=4):
    trainer = Trainer(tiny_config(epochs=epochs, milestones=(3,), out=str(tmp_path / "a")),
                      dataset=small_digits)
    trainer.fit()
    return trainer


def test_four_epochs_equal_two_plus_resumed_two(tiny_config, small_digits, tmp_path):
    straight = _straight(tiny_config, small_digits, tmp_path)
    first = Trainer(tiny_config(epochs=2, milestones=(3,), out=str(tmp_path / "b")),
                    dataset=small_digits)
    first.fit()
    # something else random in between must not matter: the RNG states come from the checkpoint
    torch.randn(100)
    resumed = Trainer.from_checkpoint(tmp_path / "b" / "last.pt", {"epochs": 4},
                                      dataset=small_digits)
    assert (resumed.epoch, resumed.batch) == (2, 0)
    resumed.fit()
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    assert straight.optimizer.state_dict()["state"].keys() == \
        resumed.optimizer.state_dict()["state"].keys()
    for k, v in straight.optimizer.state_dict()["state"].items():
        assert torch.equal(v["momentum_buffer"], resumed.optimizer.state_dict()["state"][k][
            "momentum_buffer"])
    drop = ("eval_s", "train_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in straight.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in resumed.history]
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert (tmp_path / "b" / "curves.png").stat().st_size > 0
    assert (tmp_path / "b" / "alpha.png").stat().st_size > 0


def test_stop_mid_epoch_resumes_exactly_and_best_is_kept(tiny_config, small_digits, tmp_path):
    straight = _straight(tiny_config, small_digits, tmp_path, epochs=3)
    best = load_checkpoint(tmp_path / "a" / "best.pt")
    accs = [r["val_acc"] for r in straight.history]
    assert best["best_acc"] == max(accs) and best["epoch"] == accs.index(max(accs)) + 1
    assert_same_state(load_checkpoint(tmp_path / "a" / "last.pt")["model"],
                      straight.model.state_dict())

    def ctrl_c(event, trainer):
        if event == "batch_end" and (trainer.epoch, trainer.batch) == (1, 3):
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of epoch 2

    run = tiny_config(epochs=3, milestones=(3,), out=str(tmp_path / "b"))
    with pytest.raises(TrainingInterrupted, match="resume with --resume") as stop:
        Trainer(run, dataset=small_digits, callbacks=[ctrl_c]).fit()
    assert stop.value.checkpoint == tmp_path / "b" / "last.pt"
    saved = load_checkpoint(stop.value.checkpoint)
    assert (saved["epoch"], saved["batch"]) == (1, 3)
    resumed = Trainer.from_checkpoint(stop.value.checkpoint, dataset=small_digits)
    resumed.fit()
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    assert resumed.history[1]["train_loss"] == straight.history[1]["train_loss"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_config, small_digits, tmp_path):
    def absurd_lr(event, trainer):
        if event == "epoch_end" and trainer.epoch == 1:
            trainer.config.lr = 1e30  # from epoch 2 on

    trainer = Trainer(tiny_config(epochs=3), dataset=small_digits, callbacks=[absurd_lr])
    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf).*epoch 2.*last good "
                                                 r"checkpoint .*last.pt \(after epoch 1\)"):
        trainer.fit()
    kept = load_checkpoint(tmp_path / "run" / "last.pt")
    assert kept["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert all(math.isfinite(p.sum().item()) for p in trainer.model.parameters())  # not applied


def test_resume_refuses_a_tampered_checkpoint(tiny_config, small_digits, tmp_path):
    from diracnets.checkpoint import CheckpointError

    Trainer(tiny_config(epochs=1), dataset=small_digits).fit()
    path = tmp_path / "run" / "last.pt"
    envelope = torch.load(path, weights_only=True)
    envelope["payload"][len(envelope["payload"]) // 2] ^= 0xFF
    torch.save(envelope, path)
    with pytest.raises(CheckpointError, match="integrity check"):
        Trainer.from_checkpoint(path, dataset=small_digits)


def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "diracnets.cli", "train", "--depth", "10",
           "--epochs", "1000", "--batch-size", "32", "--train-limit", "64", "--no-progress",
           "--device", "cpu", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists():  # an epoch has finished: it is training
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume with --resume" in err and "Traceback" not in err
    saved = load_checkpoint(out / "last.pt")
    assert 1 <= saved["epoch"] < 1000
