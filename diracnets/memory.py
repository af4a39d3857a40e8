"""What a training run needs in memory, estimated from its network's spec before anything is
built, so that a run that cannot fit is refused in one line instead of minutes of allocation.

The estimate is a lower bound, in float32: every parameter three times (the weight, its
gradient and the momentum buffer) and, for each example of a batch, every layer's output once
(kept for the backward pass). Real use is higher (the Dirac weights, workspace, the data), so a
run refused here certainly cannot run; one accepted may still be too big for the device.

>>> from dirac_core.catalog import family_spec
>>> training_bytes(family_spec("cifar", 34, 1, 10), batch_size=128) < 2**31
True
"""

from __future__ import annotations

import math
import os
from typing import Any

from dirac_core import nets

FLOAT_BYTES = 4


def activation_values(spec: nets.NetSpec) -> int:
    """How many values the layers of ``spec`` output for one example (their sum)."""
    size, channels, total = spec.image_size, spec.in_channels, 0
    for _, layer in spec.layers():
        if isinstance(layer, nets.Conv):
            channels = layer.out_channels
            size = (math.ceil(size / layer.stride) if layer.padding == "same"
                    else (size + 2 * int(layer.padding) - layer.kernel_size) // layer.stride + 1)
        elif isinstance(layer, nets.MaxPool):
            size = (size + 2 * layer.padding - layer.kernel_size) // layer.stride + 1
        elif isinstance(layer, nets.NCReLU):
            channels *= 2
        elif isinstance(layer, nets.GlobalAvgPool):
            size = 1
        elif isinstance(layer, nets.Linear):
            channels, size = layer.out_features, 1
        total += channels * max(size, 1) ** 2
    return total


def training_bytes(spec: nets.NetSpec, batch_size: int) -> int:
    """The lower bound of the module docstring, in bytes, for batches of ``batch_size``."""
    parameters = nets.count_parameters(spec)
    return FLOAT_BYTES * (3 * parameters + batch_size * activation_values(spec))


def available_bytes(device: Any = None) -> int | None:
    """The memory of ``device`` (a CUDA device: its total memory) or of this machine (its
    physical memory); ``None`` when the system does not say."""
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def require_fits(spec: nets.NetSpec, batch_size: int, device: Any = None,
                 available: int | None = None) -> None:
    """Refuse a network and batch whose :func:`training_bytes` exceed the memory available.

    Raises
    ------
    ValueError
        One line naming the network, the batch size, the estimate and the memory, and the
        options that shrink it.
    """
    available = available_bytes(device) if available is None else available
    needed = training_bytes(spec, batch_size)
    if available is not None and needed > available:
        raise ValueError(
            f"{spec.name} with --batch-size {batch_size} needs at least {_size(needed)} to "
            f"train ({nets.count_parameters(spec):,} parameters, "
            f"{activation_values(spec):,} activations per image); "
            f"{'this device' if device is not None and device.type == 'cuda' else 'this machine'}"
            f" has {_size(available)}: use a smaller --depth, --width or --batch-size")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
