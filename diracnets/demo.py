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
             depth: int | None = None, width: int | None = None, onnx: bool = True,
             progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Run the demo into ``out`` and return the run summary.

    ``out`` must be new or empty; an earlier run there is replaced only with ``overwrite``
    (see :mod:`.rundir`)."""
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
    summary = run_training(config, overwrite=overwrite)
    print(format_summary(summary))
    return summary
