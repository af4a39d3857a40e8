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

from dirac_core.untrusted import UntrustedInputError, open_regular
from dirac_torch.torch_types import torch_device

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

    The file is read as untrusted (:mod:`dirac_core.untrusted`): a FIFO, a device, a
    directory or a sparse file is refused before it is read.

    Raises
    ------
    CheckpointError
        The file is missing or not a regular file, is not a diracnets checkpoint (an envelope
        without a ``uint8`` payload included), would need code to load, or its payload does not
        match the stored SHA-256 (corrupted or tampered with).
    ValueError
        ``map_location`` is not a torch device this machine has (checked first).
    """
    map_location = torch_device(map_location, "map_location")
    path = Path(path)
    try:
        with open_regular(path, "checkpoint") as file:
            envelope = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist") from None
    except UntrustedInputError as exc:
        raise CheckpointError(str(exc)) from None
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read safely (corrupted, truncated, or it holds "
            f"objects that would need code to load): {' '.join(str(exc).split())}"
        ) from exc
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a diracnets checkpoint")
    if envelope.get("version") != VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {envelope.get('version')!r}; "
                              f"this diracnets reads version {VERSION}")
    stored = envelope.get("payload")
    if not (isinstance(stored, torch.Tensor) and stored.dtype == torch.uint8
            and stored.dim() == 1 and stored.is_contiguous()
            and stored.untyped_storage().nbytes() >= stored.numel()):
        raise CheckpointError(f"checkpoint {str(path)!r} has no payload (a 1-d uint8 tensor); "
                              "it is not a diracnets checkpoint")
    payload = stored.numpy().tobytes()
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
