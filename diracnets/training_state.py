"""What a checkpoint's training state holds, and the check that a loaded one has that shape.

:meth:`diracnets.trainer.Trainer.state` writes this structure; a resume reads it back only
after :func:`check_state` has accepted it, so a file from another program (or an older
diracnets) fails with a :class:`~diracnets.checkpoint.CheckpointError` naming what is wrong,
not with a ``KeyError`` deep inside the restore.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError
from .metrics import METRIC_FIELDS, Meter

# what a checkpoint's training state holds, and the types a resume relies on
STATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "config": dict, "model": dict, "optimizer": dict, "scaler": dict, "epoch": int,
    "batch": int, "meter": (list, tuple), "best_acc": (int, float), "best_epoch": int,
    "history": list, "rng": dict, "run_id": str,
}


def check_state(state: Any, path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has the structure of a training state.

    Examples
    --------
    >>> check_state([], "last.pt")
    Traceback (most recent call last):
    ...
    diracnets.checkpoint.CheckpointError: checkpoint 'last.pt' holds list, not a training state
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds {type(state).__name__}, not a "
                              "training state")
    wrong = [f"{key} ({type(state.get(key)).__name__})" for key, kind in STATE_TYPES.items()
             if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool)]
    if not wrong and len(state["meter"]) != len(Meter().state()):
        wrong = [f"meter ({len(state['meter'])} values)"]
    if wrong:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a training state of this diracnets: missing or "
            f"wrong {', '.join(wrong)} (a checkpoint written before run folders had run ids, "
            "or by another program)")
    bad = _bad_values(state)
    if bad:
        raise CheckpointError(f"checkpoint {str(path)!r} holds {bad}: a training state never "
                              "does (it was edited, or written by another program); refusing "
                              "to resume it")


def _bad_values(state: dict[str, Any]) -> str | None:
    """What is out of range in a training state of the right structure, or None."""
    loss_sum, correct, seen = state["meter"]
    if not all(_number(v) and math.isfinite(v) and v >= 0 for v in (loss_sum, correct, seen)) \
            or correct > seen:
        return f"meter={list(state['meter'])!r} (finite sums >= 0, correct <= seen)"
    epoch, batch, best_epoch, best = (state[k] for k in ("epoch", "batch", "best_epoch",
                                                         "best_acc"))
    if epoch < 0 or batch < 0 or not 0 <= best_epoch <= epoch:
        return f"epoch={epoch}, batch={batch}, best_epoch={best_epoch} (0 <= best_epoch <= epoch)"
    if not ((best_epoch == 0 and best == -math.inf) or (best_epoch > 0 and 0 <= best <= 1)):
        return (f"best_acc={best!r} with best_epoch={best_epoch} (an accuracy in [0, 1], or "
                "-inf before the first epoch)")
    if len(state["history"]) != epoch:
        return f"{len(state['history'])} history records for {epoch} finished epochs"
    for index, record in enumerate(state["history"]):
        if not isinstance(record, dict) or not all(
                _number(record.get(k)) and math.isfinite(record[k]) for k in METRIC_FIELDS):
            return f"history[{index}]={record!r:.80} (finite {', '.join(METRIC_FIELDS)})"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
