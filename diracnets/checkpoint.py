"""Checkpoints that are written atomically, load without running code, and detect tampering.

A checkpoint file is a ``torch.save`` of ``{"format", "version", "sha256", "payload"}`` where
``payload`` is the serialized training state (itself a ``torch.save``) as a ``uint8`` tensor and
``sha256`` its digest. Both levels are read with ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers, so a checkpoint can never execute code; the digest
catches any change to the payload (a flipped byte, a truncated copy, an edited value).
Writes go through :func:`diracnets.atomic.atomic_write_bytes`: a crash mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_bytes

FORMAT = "diracnets-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, not ours, or fails its integrity check."""


def _serialize(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save ``state`` (tensors, numbers, strings, lists, tuples, dicts) atomically to ``path``.

    Examples
    --------
    >>> import tempfile, torch
    >>> p = save_checkpoint({"w": torch.ones(2)}, tempfile.mkdtemp() + "/last.pt")
    >>> load_checkpoint(p)["w"]
    tensor([1., 1.])
    """
    payload = _serialize(state)
    envelope = {
        "format": FORMAT,
        "version": VERSION,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    return atomic_write_bytes(path, _serialize(envelope))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        The file is missing, is not a diracnets checkpoint, would need code to load, or its
        payload does not match the stored SHA-256 (corrupted or tampered with).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        envelope = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read safely (corrupted, truncated, or it holds "
            f"objects that would need code to load): {exc}"
        ) from exc
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a diracnets checkpoint")
    if envelope.get("version") != VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {envelope.get('version')!r}; "
                              f"this diracnets reads version {VERSION}")
    payload = envelope["payload"].numpy().tobytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != envelope.get("sha256"):
        raise CheckpointError(
            f"checkpoint {str(path)!r} failed its integrity check: the payload's SHA-256 is "
            f"{digest}, the file records {envelope.get('sha256')}; it was modified or corrupted "
            "after it was written, refusing to load it"
        )
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: payload cannot be loaded safely: "
                              f"{exc}") from exc
