"""PNG plots of a run: train/val curves, and every layer's alpha and beta over training
(the paper's fig. 4); of the depth experiment: loss and accuracy against depth.

Matplotlib runs headless (Agg) and is imported only when plotting. Figures use matplotlib's
constrained layout (titles, axis labels and the colour bar never overlap), epochs and depths
get integer ticks, at the depths themselves when their labels fit side by side. The
``*_figure`` functions return the figure; ``plot_*`` write it; :func:`replot` redraws a run
or an experiment folder from its records.
"""

from __future__ import annotations

import io
import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dirac_core.untrusted import read_json, require

from .metrics import natural_key, read_metrics

FIGSIZE = (10, 4)
MAX_LABELLED = 16  # more distinct epochs/depths than this never fit as one label each


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _figure(columns: int = 2) -> tuple[Any, Any]:
    return _pyplot().subplots(1, columns, figsize=FIGSIZE, layout="constrained")


def curves_figure(history: list[dict[str, Any]]) -> Any:
    """Loss and accuracy, train and validation, against the epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = _figure()
    for split, style in (("train", "-"), ("val", "--")):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
        ax_acc.plot(epochs, [100 * r[f"{split}_acc"] for r in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        integer_ticks(ax, epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def scales_figure(history: list[dict[str, Any]]) -> Any | None:
    """Every Dirac conv's alpha and beta against the epoch, coloured by depth (paper fig. 4);
    ``None`` for a model without Dirac convs."""
    if not history or not history[0].get("alpha"):
        return None
    plt = _pyplot()
    layers = sorted(history[0]["alpha"], key=natural_key)  # depth order: group0.4 < group0.10
    epochs = [r["epoch"] for r in history]
    colours = plt.get_cmap("viridis")
    fig, axes = _figure()
    for ax, key in zip(axes, ("alpha", "beta"), strict=True):
        for i, layer in enumerate(layers):
            ax.plot(epochs, [r[key][layer] for r in history],
                    color=colours(i / max(1, len(layers) - 1)), linewidth=1)
        ax.set(xlabel="epoch", ylabel=key, title=f"{key} of each Dirac layer")
        integer_ticks(ax, epochs)
        ax.grid(alpha=0.3)
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap=colours), ax=axes, shrink=0.8)
    bar.set_label("layer depth (first -> last)")
    return fig


def depth_figure(rows: list[dict[str, Any]]) -> Any:
    """The depth experiment: final train loss and validation accuracy against depth."""
    fig, (ax_loss, ax_acc) = _figure()
    for kind in sorted({r["parameterization"] for r in rows}):
        mine = sorted((r for r in rows if r["parameterization"] == kind), key=lambda r: r["depth"])
        depths = [r["depth"] for r in mine]
        ax_loss.plot(depths, [r["train_loss"] for r in mine], "o-", label=kind)
        ax_acc.plot(depths, [100 * r["val_acc"] for r in mine], "o-", label=kind)
    ax_loss.set(xlabel="depth (layers)", ylabel="final train loss", title="training loss",
                yscale="log")
    ax_acc.set(xlabel="depth (layers)", ylabel="validation accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        integer_ticks(ax, [r["depth"] for r in rows])
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def integer_ticks(ax: Any, values: Sequence[int]) -> None:
    """Integer x ticks: at ``values`` themselves if their labels do not touch, else at evenly
    spaced integers that matplotlib picks to fit."""
    from matplotlib.ticker import MaxNLocator

    distinct = sorted(set(values))
    if len(distinct) <= MAX_LABELLED:
        ax.set_xticks(distinct)
    if len(distinct) > MAX_LABELLED or labels_overlap(ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def labels_overlap(ax: Any) -> bool:
    """Whether any two visible x tick labels of ``ax`` overlap once drawn."""
    ax.figure.canvas.draw()
    boxes = sorted((label.get_window_extent() for label in ax.get_xticklabels()
                    if label.get_visible() and label.get_text()), key=lambda b: b.x0)
    return any(a.x1 >= b.x0 for a, b in itertools.pairwise(boxes))


def plot_curves(history: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write :func:`curves_figure` to ``path``."""
    return _save(curves_figure(history), path)


def plot_scales(history: list[dict[str, Any]], path: str | os.PathLike) -> Path | None:
    """Write :func:`scales_figure` to ``path``; ``None`` (nothing written) without Dirac
    convs."""
    fig = scales_figure(history)
    return None if fig is None else _save(fig, path)


def plot_depth(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write :func:`depth_figure` to ``path``."""
    return _save(depth_figure(rows), path)


# what each row of a depth experiment's results.json needs for its plot
ROW_FIELDS = {"parameterization": "str", "depth": "int", "train_loss": "float | None",
              "val_acc": "float | None"}


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a depth experiment's ``results.json``, read as untrusted
    (:mod:`dirac_core.untrusted`) and checked for the fields the plot reads.

    Raises
    ------
    FileNotFoundError, dirac_core.untrusted.UntrustedInputError
        No file; not a bounded regular JSON file; no ``rows`` list of such rows.
    """
    value = require(read_json(path, "results.json"), "dict[str, Any]", str(path),
                    "results.json")
    rows = require(value.get("rows"), "list[Any]", str(path), "rows")
    for index, row in enumerate(rows):
        where = f"{path}, rows[{index}]"
        row = require(row, "dict[str, Any]", where, "row")
        for key, kind in ROW_FIELDS.items():
            require(row.get(key), kind, where, key)
    return [{k: math.nan if v is None else v for k, v in row.items()} for row in rows]


def replot(folder: str | os.PathLike) -> list[Path]:
    """Redraw the plots of a run folder (``metrics.jsonl``: ``curves.png``, ``alpha.png``) or
    of a depth-experiment folder (``results.json``: ``depth.png``, and each cell's plots).

    Raises
    ------
    FileNotFoundError
        ``folder`` holds neither.
    """
    folder = Path(folder)
    if (folder / "results.json").is_file():
        rows = read_results(folder / "results.json")
        written = [plot_depth(rows, folder / "depth.png")]
        cells = sorted((d for d in folder.iterdir() if (d / "metrics.jsonl").is_file()),
                       key=lambda d: natural_key(d.name))
        return written + [path for cell in cells for path in replot(cell)]
    if (folder / "metrics.jsonl").is_file():
        history = read_metrics(folder / "metrics.jsonl")
        written = [plot_curves(history, folder / "curves.png"),
                   plot_scales(history, folder / "alpha.png")]
        return [path for path in written if path is not None]
    raise FileNotFoundError(f"{str(folder)!r} holds neither metrics.jsonl (a run) nor "
                            "results.json (a depth experiment): nothing to plot")


def _save(fig: Any, path: str | os.PathLike) -> Path:
    """Write the figure atomically (a viewer never sees half a PNG) and free it."""
    from .atomic import atomic_write_bytes

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    _pyplot().close(fig)
    return atomic_write_bytes(path, png.getvalue())
