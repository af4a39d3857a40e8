"""A run folder, loaded back in a fresh process: the trained model, the folded model, and the
folded model with no training code at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from diracnets import TrainConfig, load_run, run_training
from diracnets.checkpoint import load_checkpoint
from diracnets.saved import read_run_config

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, digits):
    """One v2 (ReLU, per-channel) run of 1 epoch on the digits: 1 channel, 10 classes."""
    out = tmp_path_factory.mktemp("saved") / "run"
    config = TrainConfig(depth=10, epochs=1, batch_size=32, train_limit=96, device="cpu",
                         progress=False, out=str(out), arch="v2_cifar", alpha_init=3.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_training(config, dataset=digits, log=None)
    finally:
        torch.set_num_threads(threads)
    return out, summary


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with this checkout first on the path."""
    paths = [str(ROOT), str(ROOT / "backends"), str(ROOT / "conformance")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_config_json_records_the_architecture(finished_run):
    out, _ = finished_run
    config, architecture = read_run_config(out)
    spec = architecture["spec"]
    assert (spec["in_channels"], spec["num_classes"]) == (1, 10)  # the digits, not the default
    assert architecture["folded"] is False
    assert (config.alpha_init, config.arch) == (3.0, "v2_cifar")
    assert spec["options"]["activation"] == "relu" and spec["options"]["per_channel"] is True


def test_a_run_loads_in_a_fresh_process(finished_run, tmp_path):
    out, _ = finished_run
    images = torch.randn(16, 1, 8, 8)
    torch.save(images, tmp_path / "images.pt")
    result = _python(f"""
        import torch
        from diracnets import load_run
        run = load_run({str(out)!r})
        images = torch.load({str(tmp_path / 'images.pt')!r})
        with torch.no_grad():
            torch.save({{"model": run.model(images), "folded": run.folded(images),
                         "training": run.model.training}}, {str(tmp_path / 'out.pt')!r})
        print(type(run.model).__name__, run.config.depth, run.summary["epochs"])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["DiracNet", "10", "1"]
    got = torch.load(tmp_path / "out.pt")
    assert got["training"] is False
    # the same weights as the run's last checkpoint, in the architecture the run recorded
    from dirac_torch.saving import build_from_architecture

    _, architecture = read_run_config(out)
    reference = build_from_architecture(architecture)
    reference.load_state_dict(load_checkpoint(out / "last.pt")["model"])
    with torch.no_grad():
        expected = reference.eval()(images)
    torch.testing.assert_close(got["model"], expected, rtol=0, atol=0)
    error = (got["folded"] - expected).abs().max() / expected.abs().max()
    assert float(error) < 1e-4  # folding is exact up to float32 rounding


def test_the_folded_model_loads_without_the_training_code(finished_run, tmp_path):
    out, summary = finished_run
    assert summary["folded_weights"] == str(out / "folded.safetensors")
    result = _python(f"""
        import sys, torch
        sys.modules["diracnets"] = None  # the training application may not be used
        import dirac_torch
        folded = dirac_torch.load_model({str(out / 'folded.safetensors')!r})
        model = dirac_torch.load_model({str(out / 'model.safetensors')!r})
        names = {{type(m).__name__ for m in folded.modules()}}
        assert "BatchNorm2d" not in names and "DiracConv2d" not in names, names
        x = torch.randn(4, 1, 8, 8)
        with torch.no_grad():
            err = float((folded(x) - model(x)).abs().max() / model(x).abs().max())
        print(err)
    """)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 1e-4


def test_load_run_reads_best_and_last_and_says_what_is_missing(finished_run, tmp_path):
    out, _ = finished_run
    last = load_run(out, "last")
    state = load_checkpoint(out / "best.pt")["model"]
    best = load_run(out, "best")
    assert all(torch.equal(best.model.state_dict()[k], v) for k, v in state.items())
    assert last.summary is not None
    with pytest.raises(ValueError, match="weights='newest' is not accepted"):
        load_run(out, "newest")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((out / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="weights='last' reads the latest checkpoint"):
        load_run(unfinished)
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load_run(tmp_path)


def test_a_run_without_an_architecture_needs_a_model(finished_run, tmp_path):
    from dirac_torch.models import diracnet_v2_cifar

    out, _ = finished_run
    record = json.loads((out / "config.json").read_text())
    del record["architecture"]
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps(record))
    (bare / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"records no architecture .* pass model="):
        load_run(bare)
    mine = diracnet_v2_cifar(10, in_channels=1)
    assert load_run(bare, model=mine).model is mine
    with pytest.raises(ValueError, match="do not fit the described network"):
        load_run(bare, model=diracnet_v2_cifar(16, in_channels=1))


def test_resume_accepts_the_run_folder(finished_run, tmp_path):
    from diracnets.cli import main

    out, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)  # a whole run folder (its marker too) resumes where it now is
    # the checkpoint's out is the original folder: resume into the copy
    assert main(["train", "--resume", str(copy), "--out", str(copy), "--epochs", "2",
                 "--no-progress"]) == 0
    assert json.loads((copy / "summary.json").read_text())["epochs"] == 2


def test_a_loaded_run_has_its_metrics_history(finished_run):
    out, summary = finished_run
    run = load_run(out, "last")
    assert [r["epoch"] for r in run.history] == [1]
    assert run.history[-1]["val_acc"] == summary["final"]["val_acc"]
    assert {"train_loss", "train_acc", "val_loss"} <= run.history[0].keys()
