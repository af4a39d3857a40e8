"""Run settings: the paper's defaults, the presets, and their validation.

Defaults follow the paper (after Wide ResNet): SGD with momentum 0.9, lr 0.1, batch 128, 200
epochs, lr x 0.2 at 30 %, 60 % and 80 % of training (epochs 60/120/160 of 200), weight decay
5e-4 on every parameter including alpha and beta. The network and its initial values (alpha,
beta, ``W``, batch norm, classifier) are those its family defines in :mod:`dirac_core.catalog`
(``arch``; the paper's v1 by default: alpha 5, beta 1e-3, ``W ~ N(0, 0.1**2)``);
``alpha_init``, ``beta_init``, ``init_std``, ``activation`` and ``per_channel`` left at
``None`` mean "the family's"; the first three are refused for a ``plain`` or ``resnet``
network (:func:`dirac_core.catalog.check_overrides`: it has no Dirac convolution for them to
set), and ``per_channel`` is ``True``, ``False`` or ``"beta"`` as at every model door
(:func:`dirac_core.validation.per_channel_value`), in ``config.json`` too.

Every setting has one name, the same here, in ``config.json``, in ``dirac_torch.models``
(``diracnet_cifar(alpha_init=...)``) and on the command line (``--alpha-init``).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from dirac_core.catalog import OVERRIDES, Init, accepted_overrides, check_overrides, family
from dirac_core.nets import PARAMETERIZATIONS
from dirac_core.untrusted import UntrustedInputError, check_type, from_dict
from dirac_core.validation import (
    bool_value,
    int_value,
    non_negative_number,
    one_of,
    per_channel_value,
    positive_int,
    positive_number,
)

from .datasets import DATASETS

# preset -> the model family (of dirac_core.catalog) it means for a CIFAR or ImageNet network
PRESETS: dict[str, dict[str, str]] = {
    "v1": {"cifar": "cifar", "imagenet": "imagenet"},  # the paper's code
    "v2": {"cifar": "v2_cifar", "imagenet": "v2_imagenet"},  # the authors' later master
}
# names that checkpoints written before the settings were renamed still carry
RENAMED = {"alpha0": "alpha_init", "beta0": "beta_init"}
# model families that releases before architecture format 2 named otherwise: their
# "paper_imagenet" is today's "jun2017_imagenet", whose variant a caller sets
FORMAT_1_FAMILIES = {"paper_imagenet": "jun2017_imagenet"}
# True while from_dict reads a record: there, a variant that a family of FORMAT_1_FAMILIES now
# fixes was an earlier release's setting (the run's recorded architecture decides what it
# trained: diracnets.saved); everywhere else the family's fixed variant is refused at once
_READING_RECORD: ContextVar[bool] = ContextVar("_READING_RECORD", default=False)
MILESTONE_FRACTIONS = (0.3, 0.6, 0.8)  # 60/120/160 of the paper's 200 epochs
# settings that cannot change what a run computes; every other field (including any added
# later) counts as changing the result
COSMETIC = frozenset({"out", "progress"})
MAX_DEPTH = 10_000
FLOAT32_MAX = 3.4028234663852886e38
SEED_LIMIT = 2**63  # torch, NumPy and the data-order SeedSequence all take seeds below this
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# the rules of dirac_core.validation for a field annotated with one of these types
TYPE_RULES = {"bool": bool_value, "int": int_value}


class EarlierReleaseWarning(UserWarning):
    """A run saved by an earlier release, whose settings now describe another network: it
    loads as it was trained (its recorded architecture), and the warning says what changed."""


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in its checkpoints and ``config.json``.

    ``milestones`` (epochs at which the lr is multiplied by ``lr_gamma``) default to 30/60/80 %
    of ``epochs``. ``decay_scales=False`` exempts alpha and beta from weight decay.
    ``train_limit`` keeps only the first examples of the training split (quick runs).
    ``amp`` (float16 autocast with loss scaling) only acts on CUDA. ``arch`` is a model family
    of :mod:`dirac_torch.registry` (``cifar``, ``imagenet``, ``v2_imagenet``, ...); ``width``
    may be fractional (0.75). ``precise_bn`` recomputes the batch-norm statistics for the
    current weights (one pass over the training batches) before each evaluation. ``sync_bn``
    makes batch norm use the global batch's statistics under ``torchrun``
    (:mod:`diracnets.sync_bn`): N ranks then train exactly as one process.

    ``recipe`` (:mod:`diracnets.recipes`) sets the procedure (momentum reset, crop padding,
    which tensors are decayed, normalisation); every other field is taken as given here, so
    ``TrainConfig(recipe="authors-v1-cifar")`` keeps these defaults (``amp=True``, the
    30/60/80 % milestones). To start from a recipe's numbers and model family, as
    ``diracnets train --recipe`` does, use :func:`preset_config`
    (``preset_config(recipe="authors-v1-cifar", epochs=10)``).
    """

    data: str = "digits"
    data_dir: str | None = None
    arch: str = "cifar"
    depth: int = 34
    width: float = 1
    activation: str | None = None
    parameterization: str = "dirac"
    per_channel: bool | str | None = None
    image_size: int = 224
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_scales: bool = True
    milestones: tuple[int, ...] | None = None
    lr_gamma: float = 0.2
    alpha_init: float | None = None
    beta_init: float | None = None
    init_std: float | None = None
    precise_bn: bool = False
    sync_bn: bool = False
    recipe: str = "ours"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 4
    train_limit: int | None = None
    out: str = "runs/train"
    onnx: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def resolved_milestones(self) -> tuple[int, ...]:
        if self.milestones is not None:
            return tuple(self.milestones)
        return tuple(sorted({max(1, round(f * self.epochs)) for f in MILESTONE_FRACTIONS}))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of range (``TypeError`` for one of
        the wrong type), with the rules of :mod:`dirac_core.validation`.

        The numbers and names are checked by their rules first (the messages every door
        gives); then every field must have its annotated type, checked as ``config.json`` is
        read (:func:`dirac_core.untrusted.check_type`), so that what is accepted here is
        exactly what a saved run's settings may hold: ``nesterov="no"``, ``train_limit=True``
        or ``milestones=[1.5]`` are refused, not read as something else. NumPy scalars
        (``np.int64(3)``, ``np.float32(0.5)``, ``np.bool_``) are accepted and stored as the
        Python numbers they hold, which is what ``config.json`` records."""
        one_of(self.data, "data", DATASETS)
        from dirac_torch.registry import families

        one_of(self.arch, "arch", sorted(families()))
        positive_number(self.width, "width")
        for name in ("epochs", "batch_size", "depth", "image_size"):
            positive_int(getattr(self, name), name)
        for name in ("lr", "momentum", "weight_decay", "lr_gamma"):
            non_negative_number(getattr(self, name), name)
        one_of(self.parameterization, "parameterization", PARAMETERIZATIONS)
        if self.per_channel is not None:  # None: the family's
            self.per_channel = per_channel_value(self.per_channel)
        # checked as every door checks them, by Init.overridden (None keeps the family's)
        overrides = {"alpha_init": self.alpha_init, "beta_init": self.beta_init,
                     "init_std": self.init_std}
        Init().overridden(**overrides)
        network = family(self.arch).network(self.depth, self.width,
                                            {"parameterization": self.parameterization})
        check_overrides(network, {self.parameterization}, **overrides)
        from .recipes import RECIPES

        one_of(self.recipe, "recipe", tuple(RECIPES))
        self._check_types()
        self._validate_limits()
        self._validate_network()
        if self.train_limit is not None and self.train_limit < 1:
            raise ValueError(f"train_limit must be a positive int or None, got "
                             f"{self.train_limit!r}")
        if self.momentum > 1:
            raise ValueError(f"momentum must be at most 1 (a velocity that grows each step "
                             f"diverges), got {self.momentum!r}")
        self._validate_milestones()
        self._validate_run_settings()

    def _check_types(self) -> None:
        """Each field converted to its annotated type (NumPy scalars to Python's), or a
        ``TypeError`` naming it: a bool or an int (or None where allowed) by
        :func:`~dirac_core.validation.bool_value` and
        :func:`~dirac_core.validation.int_value`, every type by the reader's rule."""
        for item in dataclasses.fields(self):
            value = _python_scalars(getattr(self, item.name))
            kinds = {kind.strip() for kind in str(item.type).split("|")}
            optional = "None" in kinds
            kinds.discard("None")
            rule = TYPE_RULES.get(kinds.pop()) if len(kinds) == 1 else None
            if rule is not None and not (optional and value is None):
                value = rule(value, item.name)
            try:
                value = check_type(value, str(item.type), "TrainConfig", item.name)
            except UntrustedInputError as exc:
                raise TypeError(str(exc).removeprefix("TrainConfig: ")) from None
            setattr(self, item.name, value)

    def _validate_milestones(self) -> None:
        """Epochs >= 1, increasing: one out of order or repeated is a typo that MultiStepLR
        would silently sort or count twice. (A milestone at or past ``epochs`` is allowed and
        never fires: a shortened run, ``preset_config(recipe=..., epochs=10)``, keeps its
        first learning rate.)"""
        ms = self.milestones
        if ms is None:
            return
        if any(m < 1 for m in ms):
            raise ValueError(f"milestones must be epochs >= 1, got {ms!r}")
        if any(a >= b for a, b in pairwise(ms)):
            raise ValueError(f"milestones must increase, got {ms!r}")

    def _validate_limits(self) -> None:
        """Bounds from what can run: a depth whose spec is built in about a second, numbers
        that float32 parameters can hold, and weight decay that does not by itself make every
        weight grow (the step ``w -= lr * wd * w`` with momentum ``m`` is stable only for
        ``lr * wd <= 2 * (1 + m)``). Memory is checked when the data is known
        (:func:`diracnets.memory.require_fits`)."""
        if self.depth > MAX_DEPTH:
            raise ValueError(f"depth={self.depth} is not accepted; at most {MAX_DEPTH:,} layers "
                             "(the paper's deepest network has 400)")
        for name in ("width", "lr", "momentum", "weight_decay", "lr_gamma", "alpha_init",
                     "beta_init", "init_std"):
            value = getattr(self, name)
            if value is not None and value > FLOAT32_MAX:
                raise ValueError(f"{name}={value!r} is not accepted; float32 parameters hold "
                                 f"numbers up to {FLOAT32_MAX:.4g}")
        if self.lr * self.weight_decay > 2 * (1 + self.momentum):
            raise ValueError(
                f"lr={self.lr!r} with weight_decay={self.weight_decay!r} is not accepted: "
                f"lr * weight_decay must be at most 2 * (1 + momentum) = "
                f"{2 * (1 + self.momentum):g}, or the decay alone makes every weight grow "
                "without bound")

    def _validate_network(self) -> None:
        """The activation is one there is, and the family builds a network at this depth,
        width and variant (``depth=11`` is no CIFAR depth; ``v2_cifar`` fixes
        ``per_channel=True``: :meth:`dirac_core.catalog.Family.variant`'s rule and message, as
        at every model door), before any folder is made or data read, whatever the data.
        A record that :meth:`from_dict` reads of a family an earlier release named otherwise
        (:data:`FORMAT_1_FAMILIES`) keeps its variant: the run's recorded architecture
        decides what it trained (:func:`diracnets.saved.read_run_config`)."""
        from dirac_core.nets import ACTIVATIONS

        if self.activation is not None:
            one_of(self.activation, "activation", ACTIVATIONS)
        earlier = _READING_RECORD.get() and self.arch in FORMAT_1_FAMILIES
        family(self.arch).spec(self.depth, self.width, parameterization=self.parameterization,
                               **({} if earlier else self._variant()))

    def _variant(self) -> dict[str, Any]:
        """The variant settings given (None: the family's)."""
        return {k: getattr(self, k) for k in ("activation", "per_channel")
                if getattr(self, k) is not None}

    def _validate_run_settings(self) -> None:
        """Seed, device, workers and out: the settings that are not hyper-parameters."""
        seed, workers = self.seed, self.workers
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
            raise ValueError(f"seed={seed!r} is not accepted; use an integer in [0, 2**63)")
        if not isinstance(self.device, str) or not DEVICE.fullmatch(self.device):
            raise ValueError(f"device={self.device!r} is not accepted; use auto, cpu, cuda or "
                             "cuda:N (a CUDA GPU); other devices (mps, meta, ...) are not "
                             "supported")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {workers!r}")
        if not isinstance(self.out, str) or not self.out.strip():
            raise ValueError(f"out={self.out!r} is not accepted; give a run folder")

    def spec(self, num_classes: int, in_channels: int, image_size: int, **variant: Any) -> Any:
        """The :class:`dirac_core.nets.NetSpec` these settings describe, for data of
        ``in_channels`` channels, ``num_classes`` classes and ``image_size`` pixels; ``variant``
        (``head_relu``, ...) goes to :func:`dirac_core.catalog.family_spec` too.

        Raises
        ------
        ValueError
            The family refuses the depth, width or variant.
        """
        from dirac_core.catalog import family_spec

        return family_spec(self.arch, self.depth, self.width, num_classes,
                           parameterization=self.parameterization, in_channels=in_channels,
                           image_size=image_size, **self._variant(), **variant)

    def result_settings(self) -> dict[str, Any]:
        """:meth:`to_dict` without the :data:`COSMETIC` settings: two runs with equal result
        settings compute the same thing."""
        return {k: v for k, v in self.to_dict().items() if k not in COSMETIC}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["milestones"] = None if self.milestones is None else list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, values: Any, source: str = "settings") -> TrainConfig:
        """Inverse of :meth:`to_dict`, for settings read from a file (``source`` names it):
        through :func:`dirac_core.untrusted.from_dict`, so a value that is not an object,
        unknown keys, wrong types or values out of range are an
        :class:`~dirac_core.untrusted.UntrustedInputError` (a ``ValueError``). The names of
        :data:`RENAMED` are read as their new names, and an initial value that an earlier
        release recorded for a network without a Dirac convolution (where it set nothing; the
        depth experiment's plain cells took ``--init-std``) is read as None, with an
        :class:`EarlierReleaseWarning`: the same run, which the settings now
        describe. A variant that a family of :data:`FORMAT_1_FAMILIES` now fixes is kept (an
        earlier release's run; any other family's fixed variant is refused here too)."""
        reading = _READING_RECORD.set(True)
        try:
            return from_dict(cls, _without_unused_overrides(values, source), source,
                             rename=RENAMED)
        finally:
            _READING_RECORD.reset(reading)


def _python_scalars(value: Any) -> Any:
    """``value`` with NumPy scalars (alone or in a list or tuple) as the Python numbers
    they hold."""
    if isinstance(value, list | tuple):
        return type(value)(_python_scalars(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


def _without_unused_overrides(values: Any, source: str) -> Any:
    """``values`` with the overrides its network cannot take set to None (with a warning)."""
    kind = values.get("parameterization", "dirac") if isinstance(values, dict) else None
    if kind not in PARAMETERIZATIONS:
        return values  # from_dict names what is wrong
    earlier = {new: old for old, new in RENAMED.items()}  # recorded under either name
    unused = {key: values[key] for name in set(OVERRIDES) - set(accepted_overrides({kind}))
              for key in (name, earlier.get(name)) if key and values.get(key) is not None}
    if not unused:
        return values
    given = ", ".join(f"{k}={v!r}" for k, v in sorted(unused.items()))
    warnings.warn(f"{source} was saved by an earlier release: {given} for a {kind!r} network, "
                  f"which has no Dirac convolution, set nothing; read as None",
                  EarlierReleaseWarning, stacklevel=3)
    return {**values, **dict.fromkeys(unused)}


def preset_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """The settings ``diracnets train`` builds from its options: the paper's defaults, the
    recipe's numbers, the preset's model family, then ``overrides`` (the two doors share this
    function, so ``preset_config(recipe=...)`` and ``--recipe`` make the same config).

    ``recipe`` (in ``overrides``) starts from that recipe's numbers and model family
    (:func:`diracnets.recipes.recipe_settings`: the other ``overrides`` win; an ``arch`` given
    replaces the recipe's family and depth). ``preset=None`` (the default, as leaving out
    ``--preset``) keeps ``arch`` as given (default ``cifar``, the paper's v1 network). A preset
    picks the family of the dataset ``arch`` names: ``v2`` with ``arch="imagenet"`` is
    ``v2_imagenet``. The preset's own families are kept; another preset's family (``v1`` with
    ``arch="v2_cifar"``) is refused. Another family (``paper_imagenet``, ...) is kept as given
    under ``v1`` and refused under ``v2``. A preset is refused with an authors' recipe, which
    says which family it trains.

    Raises
    ------
    ValueError
        An unknown preset or recipe; an ``arch`` of another preset's family; ``v2`` with a
        family it has no counterpart of; a preset with an authors' recipe.

    Examples
    --------
    >>> preset_config("v2", epochs=10).arch
    'v2_cifar'
    >>> preset_config("v2", arch="imagenet").arch
    'v2_imagenet'
    >>> c = preset_config(recipe="authors-v2-imagenet")
    >>> c.arch, c.depth, c.epochs
    ('v2_imagenet', 18, 100)
    """
    if preset is not None:
        one_of(preset, "preset", sorted(PRESETS))
    if "recipe" in overrides:
        from .recipes import recipe, recipe_settings

        name = overrides["recipe"]
        if preset is not None and recipe(name).settings:
            raise ValueError(f"preset={preset!r} cannot be combined with recipe={name!r}: the "
                             "recipe says which model family it trains (give arch to change "
                             "it)")
        overrides = recipe_settings(name, overrides)
    if preset is None:
        return TrainConfig(**overrides)
    arch, own = overrides.get("arch", "cifar"), PRESETS[preset]
    other = next((name for name, choice in PRESETS.items()
                  if arch in choice.values() and arch not in choice), None)
    if arch in own:  # a dataset name: the preset's family for it
        overrides["arch"] = own[arch]
    elif arch not in own.values() and (other is not None or preset != "v1"):
        of = f" (a preset={other!r} family)" if other else ""
        raise ValueError(f"preset={preset!r} cannot be combined with arch={arch!r}{of}; use "
                         f"one of {sorted({*own, *own.values()})} or drop the preset")
    return TrainConfig(**overrides)
