"""Named training recipes: ours (the default) and the authors' ``train.py``, item by item.

A :class:`Recipe` is the part of training that is not the network: the numbers (epochs, batch,
learning-rate schedule, weight decay, mixed precision) and the procedure (is SGD rebuilt when the
learning rate drops, how a CIFAR crop is padded, which tensors are decayed, how images are
normalised). ``diracnets train --recipe NAME`` (``TrainConfig.recipe``) selects one; the
numbers are defaults an option may still change, the procedure is the recipe's.

The authors' recipes reproduce ``szagoruyko/diracnets``' ``train.py``:

- ``authors-v1-cifar`` (``0d0e033``, the code behind the paper's CIFAR numbers): SGD momentum
  0.9, lr 0.1, batch 128, 200 epochs, weight decay 5e-4 on every tensor, lr x 0.2 when epoch
  60, 120, 160 (counted from 1) *starts*, i.e. after 59, 119 and 159 epochs, with a new SGD
  (empty momentum buffers) at each drop; float32; flip, then a 4-pixel ``cv2.BORDER_REFLECT``
  pad (the edge pixel repeated: NumPy's ``"symmetric"``) and a random 32x32 crop; fixed
  normalisation, mean (125.3, 123.0, 113.9) and std (63.0, 62.1, 66.7) on the 0-255 scale.
- ``authors-v2-cifar`` (``3c6f986``, master): the same numbers, but weight decay only on
  tensors of more than one dimension (alpha, beta, batch norm and biases are exempt) and a
  4-pixel ``"reflect"`` pad (the edge pixel not repeated: ``T.Pad(4, padding_mode='reflect')``).
- ``authors-v1-imagenet``, ``authors-v2-imagenet``: their README's ImageNet command: batch 256,
  100 epochs, lr x 0.1 when epochs 30, 60, 90 start, weight decay 1e-4 (v1: on everything;
  v2: tensors of more than one dimension), float32, SGD rebuilt at each drop.

``docs/training.md`` tabulates where the default (``ours``) departs from them and why.

>>> recipe("authors-v1-cifar").settings["milestones"]
(59, 119, 159)
>>> recipe("authors-v2-cifar").decay
'matrices'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dirac_core.validation import one_of

DECAY = ("all", "matrices")
NORMALIZATION = ("data", "cifar-fixed")
# the authors' CIFAR normalisation, on the 0-255 scale (their train.py)
CIFAR_MEAN = (125.3, 123.0, 113.9)
CIFAR_STD = (63.0, 62.1, 66.7)


@dataclass(frozen=True)
class Recipe:
    """One way to train.

    Attributes
    ----------
    name, summary, source : str
        Its ``--recipe`` name, one line, and the authors' commit it reproduces (``""``: ours).
    settings : mapping
        ``TrainConfig`` defaults it sets (an option given on top wins).
    momentum_reset : bool
        Empty the SGD momentum buffers when the learning rate drops (the authors build a new
        optimizer there).
    pad_mode : {"zeros", "symmetric", "reflect"}
        How the training crops' padding is filled (CIFAR and the digits).
    decay : {"all", "matrices"}
        Weight decay on every tensor (``decay_scales`` may still exempt alpha and beta) or only
        on tensors of more than one dimension.
    normalization : {"data", "cifar-fixed"}
        CIFAR images normalised with the training split's own mean and std, or with the
        authors' constants.
    """

    name: str
    summary: str
    source: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    momentum_reset: bool = False
    pad_mode: str = "zeros"
    decay: str = "all"
    normalization: str = "data"


_AUTHORS_CIFAR = {"epochs": 200, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
                  "nesterov": False, "weight_decay": 5e-4, "decay_scales": True,
                  "lr_gamma": 0.2, "milestones": (59, 119, 159), "amp": False}
_AUTHORS_IMAGENET = {**_AUTHORS_CIFAR, "epochs": 100, "batch_size": 256, "weight_decay": 1e-4,
                     "lr_gamma": 0.1, "milestones": (29, 59, 89)}

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("ours", "the paper's numbers; momentum kept across drops, zero padding, float16 "
           "autocast on CUDA, normalisation from the data"),
    Recipe("authors-v1-cifar", "the authors' v1 CIFAR train.py, item by item",
           "szagoruyko/diracnets@0d0e033 train.py", {"arch": "cifar", **_AUTHORS_CIFAR},
           momentum_reset=True, pad_mode="symmetric", normalization="cifar-fixed"),
    Recipe("authors-v2-cifar", "the authors' v2 CIFAR train.py, item by item",
           "szagoruyko/diracnets@3c6f986 train.py", {"arch": "v2_cifar", **_AUTHORS_CIFAR},
           momentum_reset=True, pad_mode="reflect", decay="matrices",
           normalization="cifar-fixed"),
    Recipe("authors-v1-imagenet", "the authors' v1 ImageNet command (README), item by item",
           "szagoruyko/diracnets@0d0e033 train.py and README",
           {"arch": "imagenet", "depth": 18, **_AUTHORS_IMAGENET}, momentum_reset=True),
    Recipe("authors-v2-imagenet", "the authors' v2 ImageNet command (README), item by item",
           "szagoruyko/diracnets@3c6f986 train.py and README",
           {"arch": "v2_imagenet", "depth": 18, **_AUTHORS_IMAGENET}, momentum_reset=True,
           decay="matrices"),
)}


def recipe(name: str) -> Recipe:
    """The recipe ``name``.

    Raises
    ------
    ValueError
        An unknown name (the message lists the recipes).
    """
    return RECIPES[one_of(name, "recipe", tuple(RECIPES))]


def recipe_settings(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``TrainConfig`` fields: the recipe's settings, then ``given`` (options win); the
    recipe's model family only when ``given`` names no model (``arch``)."""
    settings = dict(recipe(name).settings)
    if "arch" in given:
        settings.pop("depth", None)
    return {**settings, **given, "recipe": name}


def adapt_dataset(dataset: Any, name: str) -> Any:
    """``dataset`` as recipe ``name`` feeds it: its crops' pad mode and, for CIFAR under
    ``"cifar-fixed"``, the authors' mean and std."""
    chosen = recipe(name)
    changes: dict[str, Any] = {}
    if dataset.augment.pad and chosen.pad_mode != dataset.augment.pad_mode:
        changes["augment"] = dataclasses.replace(dataset.augment, pad_mode=chosen.pad_mode)
    if chosen.normalization == "cifar-fixed" and dataset.name.startswith("cifar"):
        changes["mean"] = tuple(m / 255 for m in CIFAR_MEAN)
        changes["std"] = tuple(s / 255 for s in CIFAR_STD)
    return dataclasses.replace(dataset, **changes) if changes else dataset


__all__ = ["RECIPES", "Recipe", "adapt_dataset", "recipe", "recipe_settings"]
