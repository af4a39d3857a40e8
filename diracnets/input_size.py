"""Whether a model takes the data's images, checked before a run claims its folder.

An ImageNet network on the 8x8 digits shrinks its feature maps to nothing (the stem's stride
and the poolings halve 8 five times) and fails at its first batch with a shape error from
deep inside PyTorch. One forward pass of a blank image of the data's shape, before anything
is written, turns that into one line that names the model, the images and what to do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def check_input_size(model: nn.Module, channels: int, size: int, *, model_name: str,
                     data: str, device: Any = "cpu", batch_size: int | None = None) -> None:
    """Run one blank ``channels x size x size`` image through ``model`` in eval mode (no
    gradient, batch-norm statistics untouched, the model's mode restored).

    With ``batch_size`` (the examples of a training step on one rank), every batch norm must
    also see more than one value per channel in training: ``batch_size`` times its map.

    Raises
    ------
    ValueError
        The model fails on it (too small for its strides and poolings, or other channels):
        the message names ``model_name``, ``data``, the image shape and PyTorch's reason; or a
        batch norm would see one value per channel (it names ``--batch-size``).

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(4))
    >>> check_input_size(net, 3, 4, model_name="tiny", data="dots")
    Traceback (most recent call last):
    ...
    ValueError: tiny does not take dots's 3x4x4 images ...
    """
    training = model.training
    model.eval()
    maps: dict[str, int] = {}  # batch norm -> values per channel and example it sees

    def seen(name: str) -> Any:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            maps.setdefault(name, args[0][0, 0].numel())
        return hook

    hooks = [m.register_forward_pre_hook(seen(name)) for name, m in model.named_modules()
             if isinstance(m, _BatchNorm)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, size, size, device=device))
    except (RuntimeError, ValueError) as exc:  # torch's refusal, or the network's own check
        reason = " ".join(str(exc).split())[:300]
        raise ValueError(
            f"{model_name} does not take {data}'s {channels}x{size}x{size} images (its "
            f"strides and poolings shrink them to nothing, or its channels differ: {reason}); "
            f"choose a model for images this size (`diracnets models`: cifar models for small "
            f"images) or larger images (--image-size, for class folders)"
        ) from None
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    lonely = [name for name, values in maps.items() if (batch_size or 2) * values <= 1]
    if lonely:
        raise ValueError(
            f"--batch-size gives {batch_size} image per training step on each rank, and "
            f"{model_name}'s batch norm {lonely[0]!r} sees a 1x1 map of {data}'s "
            f"{channels}x{size}x{size} images: one value per channel, which batch norm cannot "
            "train on; use a --batch-size of at least 2 per rank (or larger images)")
