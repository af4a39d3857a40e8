"""The depth experiment: grid, table, plot, and continuing a stopped experiment."""

from __future__ import annotations

import json

from diracnets import experiment
from diracnets.experiment import depth_experiment, markdown_table


def test_grid_writes_table_json_and_plot_and_reuses_finished_cells(tmp_path, monkeypatch):
    settings = {"epochs": 1, "batch_size": 32, "train_limit": 64, "progress": False,
                "device": "cpu"}
    rows = depth_experiment((10,), out=tmp_path, **settings)
    assert [(r["parameterization"], r["depth"], r["status"]) for r in rows] == [
        ("plain", 10, "ok"), ("dirac", 10, "ok")]
    assert all(0 <= r["val_acc"] <= 1 and r["train_loss"] > 0 for r in rows)
    table = (tmp_path / "results.md").read_text()
    assert table.splitlines()[0].startswith("| depth | plain train loss")
    assert table.splitlines()[2].startswith("| 10 | ")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["epochs"] == 1 and len(saved["rows"]) == 2
    assert (tmp_path / "depth.png").stat().st_size > 0

    def must_not_train(*_args, **_kw):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(experiment, "Trainer", must_not_train)
    again = depth_experiment((10,), out=tmp_path, **settings)
    assert [r["val_acc"] for r in again] == [r["val_acc"] for r in rows]


def test_table_marks_diverged_runs():
    rows = [
        {"depth": 100, "parameterization": "plain", "status": "diverged: nan"},
        {"depth": 100, "parameterization": "dirac", "status": "ok", "train_loss": 0.5,
         "train_acc": 0.9, "val_acc": 0.85},
    ]
    line = markdown_table(rows).splitlines()[-1]
    assert line == "| 100 | diverged (NaN) | - | - | 0.5000 | 90.0 % | 85.0 % |"
