"""The depth experiment: the paper's central claim, in miniature, on the built-in digits.

The paper (section 4, fig. 3) trains plain networks with and without the Dirac
parameterization at growing depth: both train when shallow; without it a plain network
degrades and at about 100 layers fails to converge, while the DiracNet keeps training. Here
the same architecture (``dirac_core.nets.diracnet_cifar``) is trained at each depth as
``parameterization="plain"`` (He-initialised convs, the control) and ``"dirac"``, with the same
seed, data order and hyper-parameters, on scikit-learn's 8x8 digits on the CPU.

The experiment claims ``out`` as its folder (:mod:`.rundir`) and each cell is a run folder
of its own, ``out/<kind>-<depth>/``, owned by the experiment. A finished cell leaves
``row.json`` and is reused when every setting that changes the result matches (cosmetic ones,
:data:`~diracnets.config.COSMETIC`, do not count) and its ``config.json`` reads as
:func:`~diracnets.load_run` reads it (a cell of an earlier release is the network it was
trained as, with an :class:`~diracnets.EarlierReleaseWarning`); an interrupted one resumes from
its ``last.pt`` on the same condition (as that network too); otherwise the cell is trained
again. So a stopped experiment continues where it was, and a run that is not the experiment's
is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dirac_core.catalog import OVERRIDES, accepted_overrides
from dirac_core.untrusted import read_json
from dirac_core.validation import as_int

from .checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint
from .config import COSMETIC, TrainConfig
from .datasets import Dataset, load_digits_dataset
from .divergence import DivergenceError
from .metrics import write_json
from .plots import plot_depth
from .rundir import RunFolder, read_marker
from .saved import read_run_config
from .trainer import Trainer

DEFAULT_DEPTHS = (10, 28, 52, 100)
KINDS = ("plain", "dirac")
# fixed so that the default grid fits in about 15 minutes on 2 CPU cores
DEFAULTS: dict[str, Any] = {"epochs": 8, "batch_size": 64, "lr": 0.1}
MILESTONE_FRACTION = 0.75
"""The lr is multiplied by ``lr_gamma`` once, after this fraction of the epochs (after 6 of
the default 8), unless ``milestones`` are given: the drop scales with ``epochs``."""


def experiment_settings(**settings: Any) -> dict[str, Any]:
    """:data:`DEFAULTS` with ``settings`` over them, and the one lr drop at
    :data:`MILESTONE_FRACTION` of the epochs unless ``milestones`` are given.

    Examples
    --------
    >>> experiment_settings()["milestones"], experiment_settings(epochs=20)["milestones"]
    ((6,), (15,))
    """
    values = {**DEFAULTS, **settings}
    epochs = as_int(values["epochs"])
    if "milestones" not in values and epochs is not None:  # a bad epochs: TrainConfig says so
        values["milestones"] = (max(1, round(MILESTONE_FRACTION * epochs)),)
    return values


def run_config(kind: str, depth: int, out: Path, **settings: Any) -> TrainConfig:
    """The config of one cell of the grid (digits, default model width). An initial value of
    the Dirac convolutions (``init_std``, ...) goes to the cells that have them: the plain
    control takes none (:func:`dirac_core.catalog.accepted_overrides`)."""
    unused = set(OVERRIDES) - set(accepted_overrides({kind}))
    values = {k: v for k, v in experiment_settings(**settings).items() if k not in unused}
    return TrainConfig(data="digits", depth=depth, parameterization=kind,
                       out=str(out / f"{kind}-{depth}"), **values)


def _same_result(saved: Any, config: TrainConfig) -> bool:
    """Whether the settings ``saved`` (a config dict) compute what ``config`` computes."""
    if not isinstance(saved, dict):
        return False
    return {k: v for k, v in saved.items() if k not in COSMETIC} == config.result_settings()


def reusable_row(config: TrainConfig, owner: str | None) -> dict[str, Any] | None:
    """The row of the cell ``config`` describes if the experiment ``owner`` finished it earlier
    with the same result settings (it is then reused, not trained), else None."""
    run_dir = Path(config.out)
    marker = read_marker(run_dir) if run_dir.is_dir() else None
    if marker is None or marker.owner != owner:
        return None
    return _finished_row(run_dir, config)


def _finished_row(run_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    try:
        row = read_json(run_dir / "row.json", "row.json")
    except (OSError, ValueError):
        return None
    if not (isinstance(row, dict) and _same_result(row.get("config"), config)):
        return None
    try:  # the cell's record, read as load_run reads it: an earlier release's cell warns
        read_run_config(run_dir)
    except (OSError, ValueError):
        return None
    # JSON has no NaN: a diverged cell's missing numbers come back as NaN for the table
    return {k: float("nan") if v is None else v for k, v in row.items()}


def run_cell(config: TrainConfig, dataset: Dataset, owner: str | None = None) -> dict[str, Any]:
    """Train one cell (resuming its checkpoint if one matches); return its table row.

    ``owner`` is the experiment's run id: the cell folder must be new, empty or that
    experiment's (see :func:`.rundir.check_new`).
    """
    run_dir = Path(config.out)
    row = reusable_row(config, owner)
    if row is not None:
        return row
    started = time.perf_counter()
    trainer = _trainer(config, dataset, owner)
    trainer.hold_folder()  # row.json below is the cell's too
    try:
        status = _fit(trainer)
        row = _row(trainer, status, time.perf_counter() - started)
        write_json(run_dir / "row.json", row)
    finally:
        trainer.close()
    return row


def _fit(trainer: Trainer) -> str:
    """Train; ``"ok"``, or why the run diverged (a result of the experiment, not an error)."""
    try:
        trainer.fit()
    except DivergenceError as exc:
        return f"diverged: {exc}"
    return "ok"


def _row(trainer: Trainer, status: str, seconds: float) -> dict[str, Any]:
    """A cell's table row from its trainer's history."""
    config, history = trainer.config, trainer.history
    last = history[-1] if history else {}
    return {
        "depth": config.depth,
        "parameterization": config.parameterization,
        "status": status,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "first_train_loss": history[0]["train_loss"] if history else float("nan"),
        "train_loss": last.get("train_loss", float("nan")),
        "train_acc": last.get("train_acc", float("nan")),
        "val_acc": last.get("val_acc", float("nan")),
        "best_val_acc": max((r["val_acc"] for r in history), default=float("nan")),
        "epochs": len(history),
        "time_s": seconds,
        "config": config.to_dict(),
    }


def _trainer(config: TrainConfig, dataset: Dataset, owner: str | None) -> Trainer:
    """Resume the cell's own matching checkpoint, or start the cell over (only in a folder
    that is new, empty or the experiment's)."""
    run_dir = Path(config.out)
    last = run_dir / "last.pt"
    marker = read_marker(run_dir) if run_dir.is_dir() else None
    if marker is not None and marker.owner == owner and last.exists():
        try:
            state = load_checkpoint(last)
        except CheckpointError:
            state = None  # an unreadable leftover: start this cell again
        if state is not None and _same_result(state.get("config"), config):
            cosmetic = {k: getattr(config, k) for k in COSMETIC if k != "out"}
            return Trainer.from_checkpoint(last, cosmetic, dataset=dataset)
    folder = RunFolder.new(run_dir, overwrite=True, owner=owner)
    return Trainer(config, dataset=dataset, run_folder=folder)


def depth_experiment(depths: Sequence[int] = DEFAULT_DEPTHS, kinds: Sequence[str] = KINDS, *,
                     out: str | Path = "runs/depth", **settings: Any) -> list[dict[str, Any]]:
    """Train every ``(kind, depth)``; write ``results.json``, ``results.md`` and ``depth.png``.

    ``settings`` override :data:`DEFAULTS` and any :class:`TrainConfig` field (``epochs``,
    ``seed``, ``progress``, ...).

    Raises
    ------
    ValueError, TypeError
        A setting any cell refuses (``depth=11``, a variant its family fixes), before any
        folder is made or any cell trained.

    Examples
    --------
    >>> rows = depth_experiment((10,), epochs=1, out=tempfile.mkdtemp())  # doctest: +SKIP
    """
    out = Path(out)
    configs = [run_config(kind, depth, out, **settings) for depth in depths for kind in kinds]
    dataset = load_digits_dataset()
    for config in configs:  # every cell's network, before a folder is made or a cell trained
        config.spec(dataset.num_classes, dataset.in_channels, dataset.image_size)
    rows = []
    with RunFolder.continued(out, kind="experiment") as experiment:
        for config in configs:
            reused = reusable_row(config, experiment.run_id) is not None
            row = run_cell(config, dataset, owner=experiment.run_id)
            tag = ", reused: finished earlier with these settings" if reused else ""
            print(f"  {config.parameterization:>5} depth {config.depth:>3}: train loss "
                  f"{row['train_loss']:.4f}, val acc {100 * row['val_acc']:.1f} % "
                  f"({row['time_s']:.0f} s{tag})", flush=True)
            rows.append(row)
        table = [{k: v for k, v in r.items() if k != "config"} for r in rows]
        write_json(out / "results.json", {"settings": experiment_settings(**settings),
                                          "rows": table})
        atomic_write_bytes(out / "results.md", (markdown_table(rows) + "\n").encode())
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
