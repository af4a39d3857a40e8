"""PNG plots of a run: train/val curves, and every layer's alpha and beta over training
(the paper's fig. 4). Matplotlib runs headless (Agg) and is imported only when plotting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Loss and accuracy, train and validation, against the epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("val", "--")):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
        ax_acc.plot(epochs, [100 * r[f"{split}_acc"] for r in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_scales(history: list[dict[str, Any]], path: str | os.PathLike) -> Path | None:
    """Every Dirac conv's alpha and beta against the epoch, coloured by depth (paper fig. 4).

    Returns ``None`` (and writes nothing) for a model without Dirac convs.
    """
    if not history or not history[0].get("alpha"):
        return None
    plt = _pyplot()
    layers = list(history[0]["alpha"])
    epochs = [r["epoch"] for r in history]
    colours = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("alpha", "beta"), strict=True):
        for i, layer in enumerate(layers):
            ax.plot(epochs, [r[key][layer] for r in history],
                    color=colours(i / max(1, len(layers) - 1)), linewidth=1)
        ax.set(xlabel="epoch", ylabel=key, title=f"{key} of each Dirac layer")
        ax.grid(alpha=0.3)
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap=colours), ax=axes, shrink=0.8)
    bar.set_label("layer depth (first -> last)")
    return _save(fig, path)


def plot_depth(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """The depth experiment: final train loss and validation accuracy against depth."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for kind in sorted({r["parameterization"] for r in rows}):
        mine = sorted((r for r in rows if r["parameterization"] == kind), key=lambda r: r["depth"])
        depths = [r["depth"] for r in mine]
        ax_loss.plot(depths, [r["train_loss"] for r in mine], "o-", label=kind)
        ax_acc.plot(depths, [100 * r["val_acc"] for r in mine], "o-", label=kind)
    ax_loss.set(xlabel="depth (layers)", ylabel="final train loss", title="training loss",
                yscale="log")
    ax_acc.set(xlabel="depth (layers)", ylabel="validation accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    """Write the figure atomically (a viewer never sees half a PNG) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    os.replace(tmp, path)
    return path
