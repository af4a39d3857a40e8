"""What a checkpoint's training state holds, and the check that a loaded one has that shape.

:meth:`diracnets.trainer.Trainer.state` writes this structure; a resume reads it back only
after :func:`check_state` has accepted it, so a file from another program (or an older
diracnets) fails with a :class:`~diracnets.checkpoint.CheckpointError` naming what is wrong,
not with a ``KeyError`` deep inside the restore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError
from .metrics import Meter

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
