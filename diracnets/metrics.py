"""Run records: per-epoch metrics as JSON lines and the run's JSON files.

Keys are written in natural order (digit runs compare as numbers), so the layers of a record
read in depth order: ``group0.4`` before ``group0.10``.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from dirac_core.untrusted import UntrustedInputError, read_json_lines, require

from .atomic import atomic_write_bytes


def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key of ``text`` with its digit runs as numbers.

    ``re.split`` with a capturing group alternates text and digits, so two keys always compare
    str with str and int with int.

    Examples
    --------
    >>> sorted(["group0.10", "group1.0", "group0.4", "stem.0"], key=natural_key)
    ['group0.4', 'group0.10', 'group1.0', 'stem.0']
    """
    parts = re.split(r"(\d+)", text)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def naturally_ordered(value: Any) -> Any:
    """``value`` with the keys of every dict in it (at any depth) in natural order."""
    if isinstance(value, dict):
        ordered = sorted(value, key=lambda k: natural_key(str(k)))
        return {k: naturally_ordered(value[k]) for k in ordered}
    if isinstance(value, list | tuple):
        return [naturally_ordered(v) for v in value]
    return value


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None``: JSON has no NaN, and a
    bare ``NaN`` in a file makes it unreadable to strict parsers.

    Examples
    --------
    >>> strict_json({"loss": float("nan"), "acc": [0.5, float("inf")]})
    {'loss': None, 'acc': [0.5, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def _dumps(value: Any, **kw: Any) -> str:
    """JSON of ``value`` in natural key order, strict (see :func:`strict_json`)."""
    return json.dumps(strict_json(naturally_ordered(value)), allow_nan=False, **kw)


def write_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> Path:
    """Write one JSON object per line, atomically (the file always matches a checkpoint)."""
    text = "".join(_dumps(r) + "\n" for r in records)
    return atomic_write_bytes(path, text.encode())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file, read as untrusted (:mod:`dirac_core.untrusted`:
    a regular file of at most :data:`~dirac_core.untrusted.JSONL_LIMIT` bytes, strict JSON).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    dirac_core.untrusted.UntrustedInputError
        (a ``ValueError``) Not a readable file, a line that is not JSON or not an object.
    """
    return [require(value, "dict[str, Any]", f"{path}, line {number}", "record")
            for number, value in read_json_lines(path, "JSON-lines file")]


# what every record of metrics.jsonl holds (the plots and the table read these)
METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A run's ``metrics.jsonl``, checked: one object per line with :data:`METRIC_FIELDS`
    (finite numbers; ``val_loss`` and ``val_acc`` may be null, JSON's spelling of a diverged
    epoch), read as :func:`read_jsonl` does.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    dirac_core.untrusted.UntrustedInputError
        (a ``ValueError``) A line that is not JSON, not an object, or lacks a field (or has a
        non-number there); no record at all.
    """
    records = []
    for number, value in read_json_lines(path, "metrics.jsonl"):
        where = f"{path}, line {number}"
        record = require(value, "dict[str, Any]", where, "record")
        for key in METRIC_FIELDS:
            require(record.get(key), "float", f"{where}: not a diracnets metrics record", key)
        records.append(record)
    if not records:
        raise UntrustedInputError(f"{path} holds no metrics records")
    return records


def write_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_write_bytes(path, (_dumps(value, indent=2) + "\n").encode())


class Meter:
    """Running sums of loss and correct predictions over the examples seen."""

    def __init__(self, loss_sum: float = 0.0, correct: float = 0.0, seen: float = 0.0) -> None:
        self.loss_sum, self.correct, self.seen = loss_sum, correct, seen

    def add(self, loss_sum: float, correct: float, seen: float) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.seen += seen

    @property
    def loss(self) -> float:
        return self.loss_sum / self.seen if self.seen else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.seen if self.seen else float("nan")

    def state(self) -> list[float]:
        return [self.loss_sum, self.correct, self.seen]
