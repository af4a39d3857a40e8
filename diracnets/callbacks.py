"""Ready-made :class:`~diracnets.trainer.Trainer` callbacks.

A callback is any ``callback(event, trainer)``; ``event`` is ``"batch_end"`` or
``"epoch_end"``, and ``trainer.history[-1]`` is the record of the epoch just ended.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dirac_core.validation import non_negative_number, one_of, positive_int

if TYPE_CHECKING:
    from .trainer import Trainer

MODES = ("max", "min")


class EarlyStopping:
    """End training (normally: the run is still folded and summarised) once ``monitor`` has
    not improved by more than ``min_delta`` for ``patience`` epochs.

    The best value belongs to one run: handed to another trainer (a new run, or a run resumed
    in a new process) the stopper starts afresh from that trainer's history.

    Parameters
    ----------
    monitor : str
        A key of the epoch records (``metrics.jsonl``): ``"val_acc"``, ``"val_loss"``, ...
    patience : int
        Epochs without improvement to accept before stopping (>= 1).
    mode : {"max", "min"}
        Whether larger or smaller values of ``monitor`` are better.
    min_delta : float
        The smallest change that counts as an improvement (>= 0).

    Raises
    ------
    ValueError
        ``patience < 1``, ``min_delta < 0`` or an unknown ``mode``.
    TypeError
        ``patience`` not an int, ``min_delta`` not a number.

    Examples
    --------
    >>> stopper = EarlyStopping("val_loss", patience=2, mode="min")
    >>> [stopper.improved(v) for v in (1.0, 0.8, 0.85, 0.81)]
    [True, True, False, False]
    >>> stopper.waited
    2
    """

    def __init__(self, monitor: str = "val_acc", patience: int = 5, mode: str = "max",
                 min_delta: float = 0.0) -> None:
        positive_int(patience, "patience")
        one_of(mode, "mode", MODES)
        non_negative_number(min_delta, "min_delta")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.reset()
        self._trainer: Trainer | None = None

    def reset(self) -> None:
        """Forget the best value and the epochs waited (a new run starts from nothing)."""
        self.best = -math.inf if self.mode == "max" else math.inf
        self.waited = 0

    def improved(self, value: float) -> bool:
        """Take one epoch's ``value``; return whether it beat the best so far."""
        gain = value - self.best if self.mode == "max" else self.best - value
        if gain > self.min_delta:
            self.best, self.waited = value, 0
            return True
        self.waited += 1
        return False

    def __call__(self, event: str, trainer: Trainer) -> None:
        if event != "epoch_end":
            return
        if trainer is not self._trainer:  # another run (or the same run resumed): its own best
            self._trainer = trainer
            self.reset()
            for earlier in trainer.history[:-1]:
                if self.monitor in earlier:
                    self.improved(earlier[self.monitor])
        record = trainer.history[-1]
        if self.monitor not in record:
            raise ValueError(f"monitor={self.monitor!r} is not in the epoch records; use one of "
                             f"{sorted(record)}")
        if not self.improved(record[self.monitor]) and self.waited >= self.patience:
            trainer.stop(f"{self.monitor} did not improve on {self.best:.4g} for "
                         f"{self.waited} epochs")
