"""Training DiracNets: the ``diracnets`` command, its data, checkpoints and experiments.

- :mod:`.config` — :class:`TrainConfig`, the paper's defaults and the ``v1``/``v2`` presets;
- :mod:`.datasets`, :mod:`.cifar`, :mod:`.safe_pickle`, :mod:`.imagefolder`, :mod:`.loaders` —
  built-in digits, CIFAR-10/100 (binary and pickle, read without running code, within bounds),
  class folders (Pillow); reproducible batches;
- :mod:`.trainer`, :mod:`.callbacks`, :mod:`.stop_signals`, :mod:`.checkpoint`,
  :mod:`.training_state`, :mod:`.resume`, :mod:`.rng`, :mod:`.distributed` — the loop, early
  stopping, Ctrl-C as a clean stop, atomic verified checkpoints and what they hold, what a
  resume may change, exact resume, torchrun data parallelism;
- :mod:`.rundir`, :mod:`.atomic`, :mod:`.divergence` — one run per folder (marker, lock, the
  files it wrote), atomic writes, divergence is failure;
- :mod:`.run`, :mod:`.finalize`, :mod:`.saved` — a whole job: train, fold, verify, time,
  export; a run folder loaded back;
- :mod:`.experiment`, :mod:`.demo`, :mod:`.plots`, :mod:`.metrics`, :mod:`.cli`.

The names below import from the package itself (``from diracnets import Trainer``); they load
on first use, so ``import diracnets`` (and the ``diracnets`` command's help) needs no torch.
See ``docs/training.md``.
"""

from __future__ import annotations

from dirac_core.lazy import lazy_getattr

# public name -> the module that defines it
_LAZY = {
    "TrainConfig": "config",
    "preset_config": "config",
    "PRESETS": "config",
    "Trainer": "trainer",
    "TrainingInterrupted": "trainer",
    "NonFiniteLossError": "trainer",
    "build_model": "trainer",
    "EarlyStopping": "callbacks",
    "CheckpointError": "checkpoint",
    "run_training": "run",
    "format_summary": "run",
    "load_run": "saved",
    "LoadedRun": "saved",
    "EarlierReleaseWarning": "config",
    "depth_experiment": "experiment",
    "run_demo": "demo",
    "Dataset": "datasets",
    "load_dataset": "datasets",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
