"""A run folder, back in a fresh process: its settings, the trained model, the folded model.

``config.json`` records the settings and the network's architecture (the
``dirac_core.nets`` spec, with the data's input channels and classes), so the model is rebuilt
without the data and without the code that chose it; the weights come from
``model.safetensors`` (the end of training), ``best.pt`` or ``last.pt``; the folded network is
folded afresh from them. ``folded.safetensors`` needs even less: ``dirac_torch.load_model``
rebuilds it with no training code at all.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from dirac_core.untrusted import UntrustedInputError, read_json, require

from .config import FORMAT_1_FAMILIES, EarlierReleaseWarning, TrainConfig
from .metrics import read_metrics

WEIGHTS = {"final": "model.safetensors", "best": "best.pt", "last": "last.pt"}


@dataclass
class LoadedRun:
    """What :func:`load_run` returns; both models are in eval mode. ``history`` holds the
    run's per-epoch metrics (``metrics.jsonl``: ``epoch``, ``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc``, ...), oldest first; empty before the first epoch ended."""

    run_dir: Path
    config: TrainConfig
    model: nn.Module
    folded: nn.Module
    summary: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)


def read_run_config(run_dir: str | Path) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The settings of the run in ``run_dir`` and its recorded architecture (``None`` for a
    model that is not a DiracNet, or a run recorded before architectures were), both checked
    (:mod:`dirac_core.untrusted`): a recorded architecture must be the network the settings
    describe unless the run recorded that its model came from elsewhere.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` holds no ``config.json``.
    dirac_core.untrusted.UntrustedInputError
        (a ``ValueError``) ``config.json`` is not a regular JSON file of at most
        :data:`~dirac_core.untrusted.JSON_LIMIT` bytes, holds an unknown setting, a value of the
        wrong type, an architecture that is not valid or disagrees with the settings.
    """
    from dirac_torch.saving import check_architecture

    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory: no config.json")
    record, architecture, from_config, source = _read_record(path)
    config = TrainConfig.from_dict(record, source)
    if architecture is not None:
        spec = check_architecture(architecture, source)
        if from_config:
            _check_agrees(config, spec, architecture["format_version"], source)
    return config, architecture


def resumed_network(run_dir: str | Path, config: TrainConfig,
                    data: tuple[int, int, int]) -> tuple[dict[str, Any], Any] | None:
    """The network to continue the run in ``run_dir`` with: the architecture its
    ``config.json`` records and its spec, checked as :func:`read_run_config` checks them but
    against ``config``, the settings of the checkpoint being resumed (a run of an earlier
    release continues as it was trained, with an :class:`EarlierReleaseWarning`).

    Parameters
    ----------
    run_dir : str or Path
        The folder of the checkpoint being resumed.
    config : TrainConfig
        The checkpoint's settings.
    data : tuple of int
        ``(num_classes, in_channels, image_size)`` of the data the run continues on.

    Returns
    -------
    tuple or None
        ``(architecture, spec)``; ``None`` when ``config.json`` is missing or records no
        network built from the settings (a model of your own ``model_factory``).

    Raises
    ------
    dirac_core.untrusted.UntrustedInputError
        (a ``ValueError``) ``config.json`` is not valid, its architecture is not the network
        ``config`` describes (nor the one it described when an earlier format was written),
        or was trained on data of other classes, channels or image size than ``data``.

    Examples
    --------
    >>> import tempfile
    >>> resumed_network(tempfile.mkdtemp(), TrainConfig(), (10, 3, 32)) is None
    True
    """
    from dirac_torch.saving import check_architecture

    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    _, architecture, from_config, source = _read_record(path)
    if architecture is None or not from_config:
        return None
    spec = check_architecture(architecture, source)
    _check_agrees(config, spec, architecture["format_version"], source)
    trained_on = (spec.num_classes, spec.in_channels, spec.image_size)
    if trained_on != tuple(data):
        raise UntrustedInputError(
            f"{source}: the run was trained on data of {trained_on[0]} classes, "
            f"{trained_on[1]} channels and {trained_on[2]} pixels; the data it would continue "
            f"on has {data[0]}, {data[1]} and {data[2]}: resume it on the data it was "
            "trained on")
    return architecture, spec


def _read_record(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None, bool, str]:
    """``config.json`` at ``path``: its settings, its architecture (``None`` if none), whether
    the model was built from the settings, and the file's name for messages."""
    source = f"config.json {str(path)!r}"
    record = dict(require(read_json(path, "config.json"), "dict[str, Any]", source,
                          "config.json"))
    architecture = record.pop("architecture", None)
    from_config = require(record.pop("model_from_config", True), "bool", source,
                          "model_from_config")
    return record, architecture, from_config, source


# Runs record the architecture format_version of dirac_torch.saving. Format 1 (releases
# before the v1 head change) recorded, for the same settings, today's network with a ReLU
# before the global pool (head_relu=True) in every family, no "family" option, and its
# families of FORMAT_1_FAMILIES had other names. Nothing else differs (docs/training.md).


def _check_agrees(config: TrainConfig, spec: Any, version: int, source: str) -> None:
    """Refuse an architecture that is not the network ``config`` describes (for the data's
    channels, classes and image size the spec records); warn about one that is the network
    the same settings described when the earlier format ``version`` was written."""
    from dirac_core.nets import spec_to_dict

    recorded = _network(spec_to_dict(spec))
    try:
        expected = config.spec(spec.num_classes, spec.in_channels, spec.image_size)
    except (ValueError, TypeError) as exc:
        expected, problem = None, " ".join(str(exc).split())
    if expected is not None and _network(spec_to_dict(expected)) == recorded:
        return
    if version == 1 and _format_1_network(config, spec) == recorded:
        note = _format_1_note(config, expected)
        if note:
            warnings.warn(f"{source} was saved by an earlier release (architecture "
                          f"format_version 1): {note}", EarlierReleaseWarning, stacklevel=4)
        return
    if expected is None:
        raise UntrustedInputError(f"{source}: the settings describe no network ({problem})")
    raise UntrustedInputError(
        f"{source}: the recorded architecture ({spec.name}) is not the network the settings "
        f"describe ({expected.name}: arch={config.arch!r}, depth={config.depth}, "
        f"width={config.width:g}, ...); the file was edited or mixed up, refusing to load it")


def _format_1_network(config: TrainConfig, spec: Any) -> dict[str, Any] | None:
    """What a format-1 release recorded for ``config`` (JSON-ready), or None if no network."""
    from dirac_core.nets import spec_to_dict

    arch = FORMAT_1_FAMILIES.get(config.arch, config.arch)
    try:
        then = replace(config, arch=arch).spec(spec.num_classes, spec.in_channels,
                                               spec.image_size, head_relu=True)
    except (ValueError, TypeError):
        return None
    recorded = _network(spec_to_dict(then))
    del recorded["options"]["family"]
    return recorded


def _network(spec: dict[str, Any]) -> dict[str, Any]:
    """A recorded spec (``spec_to_dict``) without its name, a label the rest determines:
    earlier releases called the plain control and eq. 14's network ``DiracNet-...`` too."""
    return {key: value for key, value in spec.items() if key != "name"}


def _format_1_note(config: TrainConfig, now: Any) -> str:
    """What changed for a format-1 run of ``config`` (``now``: the network the settings
    describe today, None if none); empty when the network is the same."""
    notes = []
    if config.arch in FORMAT_1_FAMILIES:
        notes.append(
            f"arch={config.arch!r} then named the network that is now "
            f"{FORMAT_1_FAMILIES[config.arch]!r} (blocks 3-4-6-5, the per_channel setting); "
            f"{config.arch!r} is now the authors' released v1 ImageNet file's network (a "
            f"per-filter beta)")
    if now is None or not now.options.get("head_relu"):
        notes.append(
            "the v1 model families then put a ReLU before the global pool; they now pool the "
            "last batch norm's output, as the authors' v1 diracnet.py does")
    if not notes:
        return ""
    now_builds = ("describe no network" if now is None
                  else "build and train another network in a new run")
    return ("; ".join(notes) + ". The run's model is rebuilt as it was trained (its recorded "
            "architecture, with the ReLU before the pool), so its recorded accuracy is that "
            "network's, and resuming the run continues that network; the same settings now "
            f"{now_builds}")


def load_run(run_dir: str | Path, weights: str = "final", *, model: nn.Module | None = None,
             map_location: Any = "cpu") -> LoadedRun:
    """Rebuild the trained and the folded model of the run in ``run_dir``.

    Parameters
    ----------
    run_dir : str or Path
        A ``diracnets train`` (or :func:`~diracnets.run.run_training`) run directory.
    weights : {"final", "best", "last"}
        ``model.safetensors`` (written when the run finished), ``best.pt`` (best validation
        accuracy) or ``last.pt`` (the latest checkpoint; also of an unfinished run).
    model : nn.Module, optional
        The network to load the weights into, for a run whose model is not a DiracNet (built by
        your own ``model_factory``); by default it is rebuilt from ``config.json``.
    map_location : device
        Where the weights go.

    Returns
    -------
    LoadedRun
        ``config``, ``model``, ``folded`` (``dirac_torch.fold.fold_model`` of it), ``summary``
        (``summary.json``, or ``None`` for an unfinished run), ``history`` (the per-epoch
        metrics of ``metrics.jsonl``).

    Every file is read as untrusted (:mod:`dirac_core.untrusted`): the weights are read and
    checked (a checkpoint must be of this folder's run) and the network's parameter count
    compared with the values they hold before the network is built.

    Raises
    ------
    FileNotFoundError
        No ``config.json``, or no file for ``weights`` (``"final"`` before the run finished).
    ValueError
        A bad ``weights``; no recorded architecture and no ``model``; weights that do not fit;
        (:class:`~dirac_core.untrusted.UntrustedInputError`) a file that is not valid, see
        :func:`read_run_config`.
    CheckpointError
        ``best.pt``/``last.pt`` is corrupted, tampered with, holds no model, or belongs to
        another run than the folder's.

    Examples
    --------
    >>> run = load_run("runs/demo")  # doctest: +SKIP
    >>> run.folded(images).argmax(1)  # doctest: +SKIP
    """
    from dirac_torch.fold import fold_model
    from dirac_torch.saving import build_from_architecture
    from dirac_torch.untrusted import load_state

    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r} is not accepted; use one of {sorted(WEIGHTS)}")
    run_dir = Path(run_dir)
    config, architecture = read_run_config(run_dir)
    if model is None and architecture is None:
        raise ValueError(
            f"{str(run_dir / 'config.json')!r} records no architecture (the model was not "
            f"a DiracNet): pass model=, the network to load the weights into")
    path = run_dir / WEIGHTS[weights]
    state = _read_weights(path, map_location)
    if model is None:
        stored = sum(v.numel() for v in state.values())
        model = build_from_architecture({**architecture, "folded": False}, repr(str(path)),
                                        stored)
    load_state(model, state, repr(str(path)))
    summary_path = run_dir / "summary.json"
    summary = (require(read_json(summary_path, "summary.json"), "dict[str, Any]",
                       repr(str(summary_path)), "summary.json")
               if summary_path.exists() else None)
    model.eval()
    metrics = run_dir / "metrics.jsonl"
    history = read_metrics(metrics) if metrics.is_file() else []
    return LoadedRun(run_dir, config, model, fold_model(model), summary, history)


def _read_weights(path: Path, map_location: Any) -> dict[str, Any]:
    """The model weights of ``path``, checked: dense tensors only, and a checkpoint must be
    one of the run whose folder it lies in."""
    from dirac_torch.untrusted import load_safetensors, stored_tensors

    if not path.exists():
        hint = " (written when the run finishes; weights='last' reads the latest checkpoint)"
        raise FileNotFoundError(
            f"{str(path)!r} does not exist{hint if path.suffix == '.safetensors' else ''}")
    if path.suffix == ".safetensors":
        return load_safetensors(path, map_location, "weights file")
    from .checkpoint import CheckpointError, load_checkpoint
    from .rundir import read_marker

    state = load_checkpoint(path, map_location=map_location)
    marker = read_marker(path.parent)
    run_id = state.get("run_id") if isinstance(state, dict) else None
    if marker is None or run_id != marker.run_id:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not of the run in its folder (its run id is "
            f"{run_id!r}, the folder's marker names {marker.run_id if marker else None!r}): "
            "it was copied in from another run; refusing to load it")
    if "model" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} holds no model weights")
    try:
        return stored_tensors(state["model"], f"checkpoint {str(path)!r}, model")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
