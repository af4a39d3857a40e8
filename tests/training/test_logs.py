"""Logs people can read: plain lines per epoch off a terminal, naturally ordered layer keys,
plots with integer ticks and no overlapping text, a one-line message without torch."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diracnets.cli import main
from diracnets.metrics import read_jsonl, write_json, write_jsonl
from diracnets.plots import curves_figure, depth_figure, replot, scales_figure
from diracnets.rundir import RunFolder

ROOT = Path(__file__).parents[2]
TINY = ["--depth", "10", "--epochs", "3", "--batch-size", "32", "--train-limit", "64",
        "--device", "cpu"]


def _env(**extra: str) -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "backends"), str(ROOT / "conformance")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.parametrize("progress", ["--progress", "--no-progress"])
def test_a_log_file_gets_one_plain_line_per_epoch(progress, tmp_path):
    """Off a terminal (here: pipes) no bar is drawn, bars asked for or not; each epoch still
    reports one line."""
    cmd = [sys.executable, "-m", "diracnets.cli", "train", *TINY, progress,
           "--out", str(tmp_path / "run")]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    assert "\r" not in log and "\x1b" not in log
    epochs = [line for line in log.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert all(" val loss " in line and line.endswith(" s") for line in epochs)
    assert len(log) < 3000  # a summary and three lines, not a stream of bar redraws


def test_without_torch_the_command_says_how_to_install_it(tmp_path):
    """A Python with numpy (the one required dependency) and nothing else: ``-S`` drops the
    site-packages, a folder holding links to numpy alone stands in for them."""
    import numpy

    site = Path(numpy.__file__).parents[1]
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (tmp_path / name).symlink_to(site / name)
    env = _env()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    result = subprocess.run([sys.executable, "-S", "-m", "diracnets.cli", "train"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("diracnets: needs torch") and "pip install torch" in line


def test_layer_keys_are_written_in_natural_order(tmp_path):
    record = {"epoch": 1, "alpha": {"group0.10": 1.0, "group0.4": 2.0, "group1.2": 3.0}}
    write_jsonl(tmp_path / "m.jsonl", [record])
    text = (tmp_path / "m.jsonl").read_text()
    assert text.index("group0.4") < text.index("group0.10") < text.index("group1.2")
    assert read_jsonl(tmp_path / "m.jsonl") == [record]
    write_json(tmp_path / "s.json", {"final": record})
    text = (tmp_path / "s.json").read_text()
    assert text.index("group0.4") < text.index("group0.10")


def _history(epochs: int, layers: list[str]) -> list[dict]:
    return [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_acc": 1 - 1 / (e + 1),
             "val_acc": 1 - 1.2 / (e + 1),
             "alpha": {name: 5.0 - 0.01 * e * i for i, name in enumerate(layers)},
             "beta": {name: 0.1 * e for name in layers}} for e in range(1, epochs + 1)]


def _drawn_texts(fig) -> list:
    """Every piece of text the figure shows: titles, axis labels, legends, and the labels of
    the ticks inside the view (matplotlib keeps labels of ticks beyond it, undrawn)."""
    fig.canvas.draw()
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = sorted(limits)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if low <= tick.get_loc() <= high and tick.label1.get_visible():
                    texts.append(tick.label1)
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def assert_readable(fig, axes) -> None:
    """Integer x ticks on ``axes``; no two pieces of text anywhere in ``fig`` overlap."""
    for ax in axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    boxes = [t.get_window_extent() for t in _drawn_texts(fig)]
    clashes = [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
    assert boxes and not clashes


@pytest.mark.parametrize("epochs", [1, 3, 200])
def test_curve_plots_have_integer_epochs_and_no_overlapping_text(epochs):
    fig = curves_figure(_history(epochs, ["group0.1"]))
    assert_readable(fig, fig.axes)


def test_scale_plots_colour_layers_in_depth_order():
    layers = [f"group0.{i}" for i in (1, 4, 7, 10, 13)]
    history = _history(12, list(reversed(layers)))  # keys in the wrong order, as old files
    fig = scales_figure(history)
    alpha_ax = fig.axes[0]
    first = [r["alpha"]["group0.1"] for r in history]
    assert list(alpha_ax.lines[0].get_ydata()) == first  # the shallowest layer is drawn first
    assert_readable(fig, fig.axes[:2])


@pytest.mark.parametrize("depths", [(10, 28, 52, 100), tuple(range(10, 101, 6))])
def test_depth_plot_ticks_are_depths_and_do_not_overlap(depths):
    rows = [{"depth": d, "parameterization": k, "train_loss": 1 / d, "val_acc": 0.5}
            for d in depths for k in ("plain", "dirac")]
    fig = depth_figure(rows)
    assert_readable(fig, fig.axes)
    if len(depths) == 4:
        assert list(fig.axes[0].get_xticks()) == list(depths)


def test_plot_redraws_an_experiment_folder(tmp_path, capsys):
    RunFolder.new(tmp_path, kind="experiment").release()  # plots go only into run folders
    rows = [{"depth": 10, "parameterization": k, "train_loss": 0.1, "val_acc": 0.9,
             "status": "ok"} for k in ("plain", "dirac")]
    (tmp_path / "results.json").write_text(json.dumps({"settings": {}, "rows": rows}))
    cell = tmp_path / "dirac-10"
    cell.mkdir()
    write_jsonl(cell / "metrics.jsonl", _history(2, ["group0.1"]))
    assert main(["plot", str(tmp_path)]) == 0
    written = capsys.readouterr().out
    for path in (tmp_path / "depth.png", cell / "curves.png", cell / "alpha.png"):
        assert str(path) in written and path.stat().st_size > 0
    assert replot(cell) == [cell / "curves.png", cell / "alpha.png"]
    assert main(["plot", str(tmp_path / "dirac-10" / "nothing")]) == 2
    assert "not a diracnets run folder" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match=r"holds neither metrics\.jsonl"):
        replot(tmp_path / "dirac-10" / "nothing")
