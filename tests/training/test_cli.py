"""The diracnets command line: train, resume rules, errors, exit codes, plots."""

from __future__ import annotations

import json

import pytest

from diracnets.cli import build_parser, main

TINY = ["--depth", "10", "--batch-size", "32", "--train-limit", "64", "--no-progress",
        "--device", "cpu"]


def test_train_then_resume_longer(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--milestones", "5", "--out", str(out)]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert (config["depth"], config["epochs"], config["milestones"]) == (10, 1, [5])
    assert main(["train", "--resume", str(out / "last.pt"), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
    assert main(["train", "--resume", str(out / "last.pt"), "--lr", "0.5"]) == 2
    assert "cannot change lr when resuming" in capsys.readouterr().err
    assert main(["plot", str(out)]) == 0
    assert "curves.png" in capsys.readouterr().out
    # a fresh run over it would lose the checkpoint: refused unless --overwrite
    fresh = ["train", *TINY, "--epochs", "1", "--out", str(out)]
    assert main(fresh) == 2
    assert "already holds a run" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    (out / "model.onnx").write_text("mine too")  # a name the run could write, but did not
    assert main([*fresh, "--overwrite"]) == 0
    # only the files the run wrote are replaced
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "model.onnx").read_text() == "mine too"
    assert json.loads((out / "summary.json").read_text())["epochs"] == 1


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["train", *TINY, "--depth", "11", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diracnets: error: depth=11 is not accepted") and "Traceback" not in err
    # (without weight decay: lr * weight_decay beyond 2 (1 + momentum) is refused up front)
    assert main(["train", *TINY, "--epochs", "1", "--lr", "1e30", "--weight-decay", "0",
                 "--out", str(tmp_path / "nan")]) == 1  # divergence: a failure, not a usage
    assert "training loss became" in capsys.readouterr().err
    assert main(["train", *TINY, "--epochs", "1", "--lr", "1e30", "--out",
                 str(tmp_path / "decay")]) == 2
    assert "lr * weight_decay must be at most 2 * (1 + momentum)" in capsys.readouterr().err
    assert main(["train", *TINY, "--lr", "1e39", "--out", str(tmp_path / "big")]) == 2
    assert "float32 parameters hold numbers up to" in capsys.readouterr().err
    assert main(["train", *TINY, "--depth", "10000006", "--out", str(tmp_path / "deep")]) == 2
    assert "at most 10,000 layers" in capsys.readouterr().err
    assert main(["train", *TINY, "--width", "2000", "--out", str(tmp_path / "wide")]) == 2
    assert "use a smaller --depth, --width or --batch-size" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_presets_and_switches_reach_the_config():
    args = build_parser().parse_args(["train", "--preset", "v2", "--no-decay-scales"])
    assert (args.preset, args.decay_scales, args.lr) == ("v2", False, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "mnist"])


def _stop_at_first_batch(monkeypatch):
    """Make the next run stop after its first batch, as Ctrl-C does (a checkpoint is saved)."""
    from diracnets import stop_signals

    real = stop_signals.StopRequest.__init__

    def requested(self):
        real(self)
        self.requested = True

    monkeypatch.setattr(stop_signals.StopRequest, "__init__", requested)


@pytest.mark.parametrize("command", [
    ["demo", "--epochs", "1", "--depth", "10", "--no-onnx", "--no-progress"],
    ["experiment", "depth", "--depths", "10", "--epochs", "1", "--batch-size", "32",
     "--train-limit", "64", "--no-progress"],
], ids=["demo", "experiment"])
def test_ctrl_c_advice_is_to_rerun_the_same_command_and_that_works(command, tmp_path, capsys,
                                                                   monkeypatch):
    argv = [*command, "--out", str(tmp_path / "out")]
    with monkeypatch.context() as patch:
        _stop_at_first_batch(patch)
        assert main(argv) == 130
    err = capsys.readouterr().err
    assert "rerun the same command to continue" in err and "--resume" not in err
    assert main(argv) == 0  # continues where it stopped


def test_experiment_depth_help_shows_defaults_and_a_small_run(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "depth", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for shown in ("epochs per cell (default 8)", "batch size (default 64)",
                  "learning rate (default 0.1)", "(default all)", "(default 10 28 52 100)"):
        assert shown in out
    assert "diracnets experiment depth --depths 10 28 --epochs 2" in out
    from pathlib import Path

    from diracnets.cli import SMALL_DEPTH_RUN

    assert SMALL_DEPTH_RUN in (Path(__file__).parents[2] / "docs" / "training.md").read_text()


def test_demo_takes_a_fractional_width_as_train_does():
    from diracnets.cli import build_parser

    assert build_parser().parse_args(["demo", "--width", "0.5"]).width == 0.5
    assert build_parser().parse_args(["train", "--width", "0.5"]).width == 0.5


def test_help_states_the_defaults_the_command_uses(capsys):
    """--init-std's default read "all" (None printed as the train-limit's "all data"); --out's
    default named no family, and two families' runs of one size shared a folder."""
    from diracnets.cli import default_run_dir
    from diracnets.config import TrainConfig

    with pytest.raises(SystemExit):
        build_parser().parse_args(["experiment", "depth", "--help"])
    assert "initial W (default 0.1)" in " ".join(capsys.readouterr().out.split())
    runs = {default_run_dir(TrainConfig(arch=arch)) for arch in ("cifar", "v2_cifar")}
    assert len(runs) == 2
