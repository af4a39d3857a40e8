"""Training DiracNets: the ``diracnets`` command, its data, checkpoints and experiments.

- :mod:`.config` — :class:`TrainConfig`, the paper's defaults and the ``v1``/``v2`` presets;
- :mod:`.datasets`, :mod:`.cifar`, :mod:`.safe_pickle`, :mod:`.loaders` — built-in digits,
  CIFAR-10/100 (binary and pickle, read without running code), class folders; reproducible
  batches;
- :mod:`.trainer`, :mod:`.checkpoint`, :mod:`.rng`, :mod:`.distributed` — the loop, atomic
  verified checkpoints, exact resume, torchrun data parallelism;
- :mod:`.run`, :mod:`.finalize` — a whole job: train, fold, verify, time, export;
- :mod:`.experiment`, :mod:`.demo`, :mod:`.plots`, :mod:`.metrics`, :mod:`.cli`.

See ``docs/training.md``.
"""

from .config import TrainConfig, preset_config

__all__ = ["TrainConfig", "preset_config"]
