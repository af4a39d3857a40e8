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


def check_input_size(model: nn.Module, channels: int, size: int, *, model_name: str,
                     data: str, device: Any = "cpu") -> None:
    """Run one blank ``channels x size x size`` image through ``model`` in eval mode (no
    gradient, batch-norm statistics untouched, the model's mode restored).

    Raises
    ------
    ValueError
        The model fails on it (too small for its strides and poolings, or other channels):
        the message names ``model_name``, ``data``, the image shape and PyTorch's reason.

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
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, size, size, device=device))
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ValueError(
            f"{model_name} does not take {data}'s {channels}x{size}x{size} images (its "
            f"strides and poolings shrink them to nothing, or its channels differ: {reason}); "
            f"choose a model for images this size (`diracnets models`: cifar models for small "
            f"images) or larger images (--image-size, for class folders)"
        ) from None
    finally:
        model.train(training)
