"""``diracnets demo`` (what ``make demo`` runs): the whole workflow in about a minute on a CPU.

Trains a small DiracNet on the built-in digits with progress bars, folds it and checks the
folded network against the trained one, exports it to ONNX and checks onnxruntime's outputs,
times inference folded vs unfolded, and writes plots and checkpoints to the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dirac_core.catalog import family

from .config import preset_config

# sized for <= ~1 minute of training on 2 CPU cores; the rest are the paper's settings
DEMO: dict[str, Any] = {"depth": 16, "width": 1, "epochs": 15, "batch_size": 64,
                        "milestones": (8, 12)}


def run_demo(out: str | Path = "runs/demo", *, epochs: int | None = None,
             depth: int | None = None, width: float | None = None, onnx: bool = True,
             progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Run the demo into ``out`` and return the run summary.

    ``out`` must be new or empty; an earlier demo run there is replaced only with
    ``overwrite`` (see :mod:`.rundir`); a run of another kind (a ``train`` run) never is. A
    demo stopped by Ctrl-C (a checkpoint, no ``summary.json``) continues where it stopped
    when run again with the same settings.

    Raises
    ------
    ValueError
        An interrupted demo in ``out`` with other settings (pass ``overwrite`` to start
        again)."""
    from .run import format_summary, run_training

    given = {"epochs": epochs, "depth": depth, "width": width}
    settings = {**DEMO, **{k: v for k, v in given.items() if v is not None}}
    if epochs is not None:
        settings["milestones"] = None  # default fractions of the requested epochs
    config = preset_config("v1", data="digits", out=str(out), onnx=onnx, progress=progress,
                           device="cpu", **settings)
    init = family(config.arch).init
    print(f"diracnets demo: DiracNet-{config.depth}-{config.width} (paper v1: NCReLU, "
          f"alpha_init={init.alpha}, beta_init={init.beta}) on scikit-learn's "
          f"8x8 digits, {config.epochs} epochs, CPU", flush=True)
    folder = Path(out)
    if not overwrite and _interrupted_run(folder):
        try:  # the same demo, interrupted: continue it (the resume policy checks the settings)
            summary = run_training(resume=folder, overrides=config.to_dict())
        except ValueError as exc:
            raise ValueError(f"{out} holds an interrupted demo with other settings ({exc}); "
                             f"rerun with its settings to continue it, or add --overwrite to "
                             f"start again") from None
    else:
        summary = run_training(config, overwrite=overwrite, kind="demo")
    print(format_summary(summary))
    return summary


def _interrupted_run(folder: Path) -> bool:
    """Whether ``folder`` holds a diracnets run of its own (not an experiment's cell) that
    stopped before it finished: a checkpoint and no ``summary.json``."""
    from .rundir import read_marker

    marker = read_marker(folder) if folder.is_dir() else None
    return (marker is not None and marker.kind == "demo" and marker.owner is None
            and (folder / "last.pt").is_file()
            and not (folder / "summary.json").exists())
