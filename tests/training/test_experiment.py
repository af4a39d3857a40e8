"""The depth experiment: grid, table, plot, and continuing a stopped experiment."""

from __future__ import annotations

import json
import shutil

from diracnets import experiment
from diracnets.experiment import depth_experiment, markdown_table, run_config


def test_grid_writes_table_json_and_plot_and_reuses_finished_cells(tmp_path, monkeypatch,
                                                                   capsys):
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

    assert "reused" not in capsys.readouterr().out
    monkeypatch.setattr(experiment, "Trainer", must_not_train)
    again = depth_experiment((10,), out=tmp_path, **settings)
    assert [r["val_acc"] for r in again] == [r["val_acc"] for r in rows]
    lines = [line for line in capsys.readouterr().out.splitlines() if "depth  10" in line]
    assert len(lines) == 2 and all("reused: finished earlier" in line for line in lines)


def test_table_marks_diverged_runs():
    rows = [
        {"depth": 100, "parameterization": "plain", "status": "diverged: nan"},
        {"depth": 100, "parameterization": "dirac", "status": "ok", "train_loss": 0.5,
         "train_acc": 0.9, "val_acc": 0.85},
    ]
    line = markdown_table(rows).splitlines()[-1]
    assert line == "| 100 | diverged (NaN) | - | - | 0.5000 | 90.0 % | 85.0 % |"


def test_cells_are_reused_exactly_when_the_result_would_be_the_same(tmp_path, monkeypatch):
    settings = {"epochs": 1, "batch_size": 32, "train_limit": 64, "progress": False,
                "device": "cpu"}
    (first,) = depth_experiment((10,), kinds=("dirac",), out=tmp_path / "a", **settings)
    trained = []
    real_trainer = experiment._trainer

    def counting(config, *args):
        trained.append(config.seed)
        return real_trainer(config, *args)

    monkeypatch.setattr(experiment, "_trainer", counting)
    # cosmetic: progress bars, and the folder the experiment lives in
    depth_experiment((10,), kinds=("dirac",), out=tmp_path / "a", **{**settings,
                                                                     "progress": True})
    shutil.move(tmp_path / "a", tmp_path / "moved")
    (again,) = depth_experiment((10,), kinds=("dirac",), out=tmp_path / "moved", **settings)
    assert trained == [] and again["val_acc"] == first["val_acc"]
    # a setting that changes the result: that cell is trained again, in place
    (other,) = depth_experiment((10,), kinds=("dirac",), out=tmp_path / "moved",
                                **{**settings, "seed": 1})
    assert trained == [1] and other["config"]["seed"] == 1
    row = json.loads((tmp_path / "moved" / "dirac-10" / "row.json").read_text())
    assert row["config"]["seed"] == 1


def test_the_dirac_initial_values_go_to_the_dirac_cells_only(tmp_path):
    """The plain control has no Dirac convolution, so it takes no init_std (the settings
    refuse one there: it would be recorded and ignored)."""
    plain = run_config("plain", 10, tmp_path, init_std=1.0, epochs=1)
    dirac = run_config("dirac", 10, tmp_path, init_std=1.0, epochs=1)
    assert plain.init_std is None and dirac.init_std == 1.0
    assert plain.epochs == dirac.epochs == 1


def test_the_lr_drop_scales_with_the_epochs(tmp_path):
    # As `train` does: a fixed epoch-6 drop would never fire in a 4-epoch grid.
    def drops(**settings):
        return run_config("dirac", 10, tmp_path, **settings).resolved_milestones()

    assert drops() == (6,)
    assert drops(epochs=4) == (3,) and drops(epochs=1) == (1,) and drops(epochs=20) == (15,)
    assert drops(epochs=20, milestones=(3, 9)) == (3, 9)
    assert run_config("plain", 10, tmp_path, epochs=40).resolved_milestones() == (30,)
