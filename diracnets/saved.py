"""A run folder, back in a fresh process: its settings, the trained model, the folded model.

``config.json`` records the settings and the network's architecture (the
``dirac_core.nets`` spec, with the data's input channels and classes), so the model is rebuilt
without the data and without the code that chose it; the weights come from
``model.safetensors`` (the end of training), ``best.pt`` or ``last.pt``; the folded network is
folded afresh from them. ``folded.safetensors`` needs even less: ``dirac_torch.load_model``
rebuilds it with no training code at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .config import TrainConfig

WEIGHTS = {"final": "model.safetensors", "best": "best.pt", "last": "last.pt"}


@dataclass
class LoadedRun:
    """What :func:`load_run` returns; both models are in eval mode."""

    run_dir: Path
    config: TrainConfig
    model: nn.Module
    folded: nn.Module
    summary: dict[str, Any] | None


def read_run_config(run_dir: str | Path) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The settings of the run in ``run_dir`` and its recorded architecture (``None`` for a
    model that is not a DiracNet, or a run recorded before architectures were).

    Raises
    ------
    FileNotFoundError
        ``run_dir`` holds no ``config.json``.
    ValueError
        ``config.json`` holds an unknown setting.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory: no config.json")
    record = json.loads(path.read_text())
    architecture = record.pop("architecture", None)
    return TrainConfig.from_dict(record), architecture


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
        (``summary.json``, or ``None`` for an unfinished run).

    Raises
    ------
    FileNotFoundError
        No ``config.json``, or no file for ``weights`` (``"final"`` before the run finished).
    ValueError
        A bad ``weights``; no recorded architecture and no ``model``; weights that do not fit.
    CheckpointError
        ``best.pt``/``last.pt`` is corrupted or tampered with.

    Examples
    --------
    >>> run = load_run("runs/demo")  # doctest: +SKIP
    >>> run.folded(images).argmax(1)  # doctest: +SKIP
    """
    from dirac_torch.fold import fold_model
    from dirac_torch.saving import build_from_architecture, load_state

    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r} is not accepted; use one of {sorted(WEIGHTS)}")
    run_dir = Path(run_dir)
    config, architecture = read_run_config(run_dir)
    if model is None:
        if architecture is None:
            raise ValueError(
                f"{str(run_dir / 'config.json')!r} records no architecture (the model was not "
                f"a DiracNet): pass model=, the network to load the weights into")
        model = build_from_architecture({**architecture, "folded": False})
    path = run_dir / WEIGHTS[weights]
    load_state(model, _read_weights(path, map_location), repr(str(path)))
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    model.eval()
    return LoadedRun(run_dir, config, model, fold_model(model), summary)


def _read_weights(path: Path, map_location: Any) -> dict[str, Any]:
    if not path.is_file():
        hint = " (written when the run finishes; weights='last' reads the latest checkpoint)"
        raise FileNotFoundError(
            f"{str(path)!r} does not exist{hint if path.suffix == '.safetensors' else ''}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device=str(map_location))
    from .checkpoint import load_checkpoint

    return load_checkpoint(path, map_location=map_location)["model"]
