"""Run records: per-epoch metrics as JSON lines and the run's JSON files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_bytes


def write_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> Path:
    """Write one JSON object per line, atomically (the file always matches a checkpoint)."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    return atomic_write_bytes(path, text.encode())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def write_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


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
