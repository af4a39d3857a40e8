"""After training: fold the model, check the folded network, time both, export and check ONNX.

Folding (``dirac_torch.fold.fold_model``) materialises ``W_hat = alpha * delta + beta *
normalize(W)`` once and absorbs each batch norm into the conv before it; the result must give
the unfolded model's eval-mode outputs up to float rounding. The check reports the largest
absolute and relative output difference (relative to the largest output magnitude).
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

FOLD_TOLERANCE = 1e-4  # float32 relative error; folding is exact up to rounding


def output_error(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """``max|a - b|`` and ``max|a - b| / max|a|`` of two outputs (float64 arithmetic)."""
    reference, other = reference.double(), other.double()
    diff = float((reference - other).abs().max())
    return {"max_abs_error": diff,
            "max_rel_error": diff / max(float(reference.abs().max()), 1e-30)}


def fold_and_verify(model: nn.Module, images: torch.Tensor) -> tuple[nn.Module, dict[str, Any]]:
    """Fold ``model``; compare folded and unfolded eval outputs on ``images``.

    Returns the folded network and ``{"max_abs_error", "max_rel_error", "ok"}``, ``ok`` when the
    relative error is below :data:`FOLD_TOLERANCE`. Batch norms that cannot be folded are kept
    (``strict=False``) so any model can be checked.
    """
    from dirac_torch.fold import fold_model

    model.eval()
    folded = fold_model(model, strict=False)
    with torch.inference_mode():
        error = output_error(model(images), folded(images))
    return folded, {**error, "ok": error["max_rel_error"] < FOLD_TOLERANCE}


def _forward_seconds(module: nn.Module, images: torch.Tensor) -> float:
    if images.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    module(images)
    if images.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare_speed(model: nn.Module, folded: nn.Module, images: torch.Tensor,
                  repeats: int = 10) -> dict[str, Any]:
    """Images per second of both networks and the unfolded/folded time ratio, with its spread.

    The two are timed alternately (after a warm-up pass each), so a load change on the machine
    hits both alike; each keeps its fastest pass for the images per second (the least disturbed
    estimate of its cost). Each pair of passes gives one ratio: ``speedup`` is their median and
    ``speedup_range`` their smallest and largest, the spread that machine noise puts on it.
    """
    modules = {"unfolded": model.eval(), "folded": folded.eval()}
    times: dict[str, list[float]] = {name: [] for name in modules}
    with torch.inference_mode():
        for module in modules.values():
            module(images)
        for _ in range(repeats):
            for name, module in modules.items():
                times[name].append(_forward_seconds(module, images))
    count = images.shape[0]
    ratios = sorted(u / f for u, f in zip(times["unfolded"], times["folded"], strict=True))
    return {"unfolded_images_per_s": count / min(times["unfolded"]),
            "folded_images_per_s": count / min(times["folded"]),
            "speedup": statistics.median(ratios),
            "speedup_range": [ratios[0], ratios[-1]], "passes": repeats}


def export_and_check_onnx(model: nn.Module, path: str | Path,
                          images: torch.Tensor) -> dict[str, Any]:
    """Export ``model`` (folded on the way) to ONNX and run it with onnxruntime on ``images``.

    Returns ``{"path", "max_abs_error", "max_rel_error"}`` against the PyTorch outputs.

    Raises
    ------
    ImportError
        onnx / onnxruntime are not installed (the ``onnx`` extra).
    """
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("ONNX export needs onnxruntime and onnx: pip install "
                          "'diracnets[onnx]'") from None
    from dirac_torch.onnx_export import export_onnx

    from .atomic import announce_write

    model = model.eval().cpu()
    images = images.cpu()
    announce_write(path)
    with _quiet_exporter():
        path = export_onnx(model, path, images[:1], dynamic_batch=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (outputs,) = session.run(None, {name: images.numpy()})
    with torch.inference_mode():
        reference = model(images)
    return {"path": str(path), **output_error(reference, torch.from_numpy(outputs))}


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (deprecations, torchvision ops it skips): not our news."""
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    exporter.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        exporter.setLevel(level)


def count_model_parameters(model: nn.Module) -> int:
    """Number of parameter entries of a built module (cf. ``dirac_core.nets.count_parameters``
    for an architecture spec)."""
    return sum(p.numel() for p in model.parameters())


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """The model's ``state_dict`` as safetensors (loads without any code, anywhere).

    A DiracNet (trained or folded) is written as ``dirac_torch.save_model`` writes it, with
    its architecture in the file's metadata: ``dirac_torch.load_model(path)`` rebuilds it.
    """
    from safetensors.torch import save

    from dirac_torch.models import DiracNet
    from dirac_torch.saving import model_bytes

    from .checkpoint import atomic_write_bytes

    if isinstance(model, DiracNet):
        return atomic_write_bytes(path, model_bytes(model))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write_bytes(path, save(state))
