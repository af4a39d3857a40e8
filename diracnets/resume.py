"""The resume policy: which settings a resumed run may change, and its config from the saved one.

A resumed run is the same run continued, so only settings that cannot change its result (or
that only extend it, like ``epochs``) may differ from the checkpoint's; anything else is refused
with a ``ValueError`` naming the setting, both values and what may change.
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig

# settings that may differ when resuming; any other difference would not be the same run (the
# folder is not one of them: a run continues in the folder its checkpoint lies in)
RESUMABLE = frozenset({"epochs", "milestones", "progress", "onnx", "workers", "device",
                       "data_dir", "amp"})


def resumed_config(saved: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The checkpoint's config ``saved`` with ``overrides`` (only :data:`RESUMABLE` ones may
    differ from the saved values).

    Raises
    ------
    ValueError
        An override outside :data:`RESUMABLE` that differs from the saved value.

    Examples
    --------
    >>> saved = TrainConfig(epochs=2).to_dict()
    >>> resumed_config(saved, {"epochs": 4}).epochs
    4
    """
    values = dict(saved)
    for name, value in overrides.items():
        if value == saved.get(name):
            continue
        if name not in RESUMABLE:
            raise ValueError(
                f"cannot change {name} when resuming (checkpoint: {saved.get(name)!r}, asked: "
                f"{value!r}); only {sorted(RESUMABLE)} may change"
            )
        values[name] = value
    return TrainConfig.from_dict(values)
