"""A whole training job: train (or resume), check the replicas agree, then fold, verify, time,
save the trained and the folded weights, optionally export ONNX, and write ``summary.json`` in
the run directory. A run ended early by a callback (:meth:`Trainer.stop`) is finalised alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .config import TrainConfig
from .divergence import require_finite_model
from .finalize import (
    compare_speed,
    count_model_parameters,
    export_and_check_onnx,
    fold_and_verify,
    save_weights,
)
from .metrics import write_json
from .rundir import RunFolderError
from .trainer import Callback, Trainer

VERIFY_IMAGES = 256


def run_training(config: TrainConfig | None = None, *, resume: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, callbacks: Sequence[Callback] = (),
                 **trainer_kw: Any) -> dict[str, Any]:
    """Train as ``config`` says, or continue the checkpoint ``resume`` (its own settings, with
    ``overrides``); return the summary.

    Under torchrun every rank calls this; rank 0 alone writes files. At the end the ranks'
    weight fingerprints (SHA-256 of the state dict) are gathered: they must be identical.

    Raises
    ------
    TrainingInterrupted, DivergenceError
        From :meth:`Trainer.fit`.
    RunFolderError
        The run folder may not be used (see :mod:`.rundir`).
    ValueError
        Both or neither of ``config`` and ``resume`` given.
    RuntimeError
        The ranks ended with different weights.
    """
    if (config is None) == (resume is None):
        raise ValueError("pass either config (a new run) or resume (a checkpoint), not both")
    started = time.perf_counter()
    if resume is not None:
        trainer = Trainer.from_checkpoint(resume, overrides, callbacks=callbacks, **trainer_kw)
    else:
        trainer = Trainer(config, callbacks=callbacks, **trainer_kw)
    trainer.hold_folder()  # the final files below are the run's too
    context = trainer.context
    try:
        _check_onnx_target(trainer)
        last = trainer.fit()
        prints = distributed.gather(distributed.fingerprint(trainer.model), context)
        if len(set(prints)) != 1:
            raise RuntimeError(f"data-parallel replicas ended with different weights: {prints}")
        summary: dict[str, Any] = {
            "run_dir": str(trainer.run_dir),
            "device": str(trainer.device),
            "world_size": context.world,
            "epochs": trainer.epoch,
            "final": last,
            "best_val_acc": trainer.best_acc if trainer.best_epoch else None,
            "best_epoch": trainer.best_epoch,
            "parameters": count_model_parameters(trainer.model),
            "replica_fingerprints": prints,
            "stopped_early": trainer.stopped,
        }
        if context.is_main:
            summary.update(finish(trainer))
            summary["time_s"] = time.perf_counter() - started
            write_json(trainer.run_dir / "summary.json", summary)
        distributed.barrier(context)
        return summary
    finally:
        trainer.close()
        distributed.teardown(context)


def _check_onnx_target(trainer: Trainer) -> None:
    """Refuse, before training, an ONNX export that would replace a ``model.onnx`` this run
    did not write (a user's file in a resumed run's folder)."""
    target = trainer.run_dir / "model.onnx"
    folder = trainer.folder
    if (trainer.config.onnx and folder is not None and target.exists()
            and target.name not in folder.marker.files):
        raise RunFolderError(f"--onnx would write over {str(target)!r}, which this run did not "
                             "write; move it away (or drop --onnx)")


def finish(trainer: Trainer) -> dict[str, Any]:
    """Fold and verify, time folded vs unfolded, save both networks' weights, export ONNX if
    asked (never from a model holding non-finite values)."""
    require_finite_model(trainer.model, "before the final weights were written")
    images = verification_images(trainer)
    model = trainer.model.eval()
    folded, fold = fold_and_verify(model, images)
    out: dict[str, Any] = {
        "fold": fold,
        "speed": compare_speed(model, folded, images),
        "weights": str(save_weights(model, trainer.run_dir / "model.safetensors")),
        "folded_weights": str(save_weights(folded, trainer.run_dir / "folded.safetensors")),
    }
    if trainer.config.onnx:
        out["onnx"] = export_and_check_onnx(model, trainer.run_dir / "model.onnx", images)
    return out


def verification_images(trainer: Trainer, count: int = VERIFY_IMAGES) -> torch.Tensor:
    """Up to ``count`` normalised validation images of this rank."""
    chunks, have = [], 0
    for images, _ in trainer.val_loader.batches():
        chunks.append(images)
        have += images.shape[0]
        if have >= count:
            break
    return torch.cat(chunks)[:count]


def format_summary(summary: dict[str, Any]) -> str:
    """The end-of-run report: accuracy, size, fold check, speed, ONNX check, files."""
    final, fold, speed = summary["final"], summary["fold"], summary["speed"]
    after = f"{summary['epochs']} epochs"
    if "batches" in final:  # stopped early in the middle of an epoch
        after += f" and {final['batches']} batches"
    if summary["best_epoch"]:
        after += (f" (best {100 * summary['best_val_acc']:.2f} % at epoch "
                  f"{summary['best_epoch']})")
    lines = [
        f"validation accuracy    {100 * final['val_acc']:.2f} % after {after}",
        f"parameters             {summary['parameters']:,}",
        f"folded vs unfolded     max relative error {fold['max_rel_error']:.2e} "
        f"(max abs {fold['max_abs_error']:.2e}) {'OK' if fold['ok'] else 'TOO LARGE'}",
    ]
    if "speedup_range" in speed:  # a ratio is shown only with its spread (older runs: none)
        low, high = speed["speedup_range"]
        lines.append(
            f"inference speed        folded {speed['speedup']:.2f}x unfolded (spread "
            f"{low:.2f}x-{high:.2f}x over {speed['passes']} paired passes on this machine"
            f"{'; no difference measurable here' if low <= 1 <= high else ''})")
    if "onnx" in summary:
        onnx = summary["onnx"]
        lines.append(f"ONNX (onnxruntime)     max relative error {onnx['max_rel_error']:.2e} "
                     f"vs PyTorch, {onnx['path']}")
    if summary.get("stopped_early"):
        lines.append(f"stopped early          {summary['stopped_early']['reason']}")
    lines.append(f"run directory          {summary['run_dir']} (metrics.jsonl, curves.png, "
                 "alpha.png, last.pt, best.pt, model.safetensors, folded.safetensors, "
                 "summary.json)")
    return "\n".join(lines)
