"""Divergence is failure: a non-zero exit, one line, and no file with a non-finite value."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diracnets import trainer as trainer_module
from diracnets.checkpoint import load_checkpoint
from diracnets.cli import main
from diracnets.divergence import non_finite_entries
from diracnets.experiment import depth_experiment
from diracnets.metrics import strict_json, write_json, write_jsonl

TINY = ["--depth", "10", "--batch-size", "32", "--train-limit", "64", "--no-progress",
        "--device", "cpu"]


def strict_loads(text: str):
    """``json.loads`` that refuses the bare ``NaN``/``Infinity`` Python writes by default."""
    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def _finite(value) -> bool:
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def _poison_after_training(monkeypatch, entry: str, value: float, epoch: int) -> None:
    """From 0-based ``epoch`` on, set the first ``entry`` tensor of the model (first value) to
    ``value`` right after the epoch's training steps, before it is evaluated and saved."""
    train_epoch = trainer_module.Trainer._train_epoch

    def poisoned(self):
        train_epoch(self)
        if self.epoch >= epoch:
            module = next(m for m in self.model.modules()
                          if isinstance(getattr(m, entry, None), torch.Tensor))
            getattr(module, entry).data.view(-1)[0] = value

    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", poisoned)


@pytest.mark.parametrize("entry, value", [
    ("running_var", math.inf),  # eval output stays finite: only the statistics tell
    ("running_mean", math.nan),  # the validation loss becomes NaN
    ("bias", math.inf),  # a parameter
])
def test_a_diverging_run_exits_non_zero_and_saves_nothing_non_finite(
        tmp_path, capsys, monkeypatch, entry, value):
    out = tmp_path / "run"
    _poison_after_training(monkeypatch, entry, value, epoch=1)
    code = main(["train", *TINY, "--epochs", "3", "--onnx", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("diracnets: error: the run diverged") and err.count("\n") == 1
    assert "epoch 2" in err and "last.pt is kept" in err
    for name in ("last.pt", "best.pt"):
        saved = load_checkpoint(out / name)
        assert saved["epoch"] == 1 and _finite(saved)
    for name in ("model.safetensors", "model.onnx", "summary.json"):
        assert not (out / name).exists()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [strict_loads(line)["epoch"] for line in lines] == [1]
    strict_loads((out / "config.json").read_text())


def test_resuming_a_checkpoint_with_non_finite_values_is_refused(tmp_path, capsys):
    from diracnets.checkpoint import save_checkpoint

    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    state = load_checkpoint(out / "last.pt")
    next(v for v in state["model"].values() if v.is_floating_point()).view(-1)[0] = math.nan
    save_checkpoint(state, out / "last.pt")  # a valid digest over a diverged state
    capsys.readouterr()
    assert main(["train", "--resume", str(out / "last.pt"), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and err.count("\n") == 1


def test_non_finite_entries_names_parameters_and_statistics():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert non_finite_entries(net) == []
    net[1].running_var[0] = math.inf
    net[0].weight.data[0, 0, 0, 0] = math.nan
    assert non_finite_entries(net) == ["0.weight", "1.running_var"]


def test_run_records_are_strict_json(tmp_path):
    record = {"loss": math.nan, "acc": [0.5, math.inf, -math.inf], "epoch": 1, "name": "x"}
    assert strict_json(record) == {"loss": None, "acc": [0.5, None, None], "epoch": 1,
                                   "name": "x"}
    write_json(tmp_path / "a.json", record)
    write_jsonl(tmp_path / "a.jsonl", [record, record])
    assert strict_loads((tmp_path / "a.json").read_text())["loss"] is None
    assert len([strict_loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]) == 2


def test_a_diverged_experiment_cell_is_reported_in_valid_json(tmp_path):
    rows = depth_experiment((10,), kinds=("dirac",), out=tmp_path, epochs=1, batch_size=32,
                            train_limit=64, lr=1e30, weight_decay=0.0, progress=False,
                            device="cpu")
    assert rows[0]["status"].startswith("diverged")
    saved = strict_loads((tmp_path / "results.json").read_text())
    assert saved["rows"][0]["train_loss"] is None
    assert strict_loads((tmp_path / "dirac-10" / "row.json").read_text())["val_acc"] is None
    assert "diverged (NaN)" in (tmp_path / "results.md").read_text()
    # the diverged cell is a finished cell: reused, and its NaNs come back as NaNs
    again = depth_experiment((10,), kinds=("dirac",), out=tmp_path, epochs=1, batch_size=32,
                             train_limit=64, lr=1e30, weight_decay=0.0, progress=False,
                            device="cpu")
    assert math.isnan(again[0]["train_loss"]) and again[0]["time_s"] == rows[0]["time_s"]
