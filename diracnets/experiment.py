"""The depth experiment: the paper's central claim, in miniature, on the built-in digits.

The paper (section 4, fig. 3) trains plain networks with and without the Dirac
parameterization at growing depth: both train when shallow; without it a plain network
degrades and at about 100 layers fails to converge, while the DiracNet keeps training. Here
the same architecture (``dirac_core.nets.diracnet_cifar``) is trained at each depth as
``parameterization="plain"`` (He-initialised convs, the control) and ``"dirac"``, with the same
seed, data order and hyper-parameters, on scikit-learn's 8x8 digits on the CPU.

Each run lives in ``out/<kind>-<depth>/``; a finished run leaves ``row.json`` and is not run
again, an interrupted one resumes from its ``last.pt``, so a stopped experiment continues
where it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig
from .datasets import Dataset, load_digits_dataset
from .metrics import write_json
from .plots import plot_depth
from .trainer import NonFiniteLossError, Trainer

DEFAULT_DEPTHS = (10, 28, 52, 100)
KINDS = ("plain", "dirac")
# fixed so that the default grid fits in about 15 minutes on 2 CPU cores
DEFAULTS: dict[str, Any] = {"epochs": 8, "batch_size": 64, "lr": 0.1, "milestones": (6,)}


def run_config(kind: str, depth: int, out: Path, **settings: Any) -> TrainConfig:
    """The config of one cell of the grid (digits, default model width)."""
    values = {**DEFAULTS, **settings}
    return TrainConfig(data="digits", depth=depth, parameterization=kind,
                       out=str(out / f"{kind}-{depth}"), **values)


def run_cell(config: TrainConfig, dataset: Dataset) -> dict[str, Any]:
    """Train one cell (resuming its checkpoint if one matches); return its table row."""
    run_dir = Path(config.out)
    done = run_dir / "row.json"
    if done.exists():
        row = json.loads(done.read_text())
        if row.get("config") == config.to_dict():
            return row
    started = time.perf_counter()
    trainer = _trainer(config, dataset)
    row: dict[str, Any] = {"depth": config.depth, "parameterization": config.parameterization}
    try:
        trainer.fit()
        status = "ok"
    except NonFiniteLossError as exc:
        status = f"diverged: {exc}"
    history = trainer.history
    last = history[-1] if history else {}
    row.update({
        "status": status,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "first_train_loss": history[0]["train_loss"] if history else float("nan"),
        "train_loss": last.get("train_loss", float("nan")),
        "train_acc": last.get("train_acc", float("nan")),
        "val_acc": last.get("val_acc", float("nan")),
        "best_val_acc": max((r["val_acc"] for r in history), default=float("nan")),
        "epochs": len(history),
        "time_s": time.perf_counter() - started,
        "config": config.to_dict(),
    })
    write_json(done, row)
    return row


def _trainer(config: TrainConfig, dataset: Dataset) -> Trainer:
    last = Path(config.out) / "last.pt"
    if last.exists():
        try:
            if load_checkpoint(last)["config"] == config.to_dict():
                return Trainer.from_checkpoint(last, dataset=dataset)
        except CheckpointError:
            pass  # an unreadable leftover: start this cell again
    return Trainer(config, dataset=dataset, overwrite=True)  # a changed cell starts over


def depth_experiment(depths: Sequence[int] = DEFAULT_DEPTHS, kinds: Sequence[str] = KINDS, *,
                     out: str | Path = "runs/depth", **settings: Any) -> list[dict[str, Any]]:
    """Train every ``(kind, depth)``; write ``results.json``, ``results.md`` and ``depth.png``.

    ``settings`` override :data:`DEFAULTS` and any :class:`TrainConfig` field (``epochs``,
    ``seed``, ``progress``, ...).

    Examples
    --------
    >>> rows = depth_experiment((10,), epochs=1, out=tempfile.mkdtemp())  # doctest: +SKIP
    """
    out = Path(out)
    dataset = load_digits_dataset()
    rows = []
    for depth in depths:
        for kind in kinds:
            row = run_cell(run_config(kind, depth, out, **settings), dataset)
            print(f"  {kind:>5} depth {depth:>3}: train loss {row['train_loss']:.4f}, "
                  f"val acc {100 * row['val_acc']:.1f} % ({row['time_s']:.0f} s)", flush=True)
            rows.append(row)
    table = [{k: v for k, v in r.items() if k != "config"} for r in rows]
    write_json(out / "results.json", {"settings": {**DEFAULTS, **settings}, "rows": table})
    (out / "results.md").write_text(markdown_table(rows) + "\n")
    plot_depth(rows, out / "depth.png")
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Depth by depth: plain and Dirac side by side (final train loss, accuracies)."""
    kinds = sorted({r["parameterization"] for r in rows}, key=lambda k: KINDS.index(k)
                   if k in KINDS else len(KINDS))
    by_cell = {(r["depth"], r["parameterization"]): r for r in rows}
    header = ["depth"] + [f"{k} {m}" for k in kinds
                          for m in ("train loss", "train acc", "val acc")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for depth in sorted({r["depth"] for r in rows}):
        cells = [str(depth)]
        for kind in kinds:
            row = by_cell.get((depth, kind))
            if row is None:
                cells += ["-"] * 3
            elif row["status"] != "ok":
                cells += ["diverged (NaN)", "-", "-"]
            else:
                cells += [f"{row['train_loss']:.4f}", f"{100 * row['train_acc']:.1f} %",
                          f"{100 * row['val_acc']:.1f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
