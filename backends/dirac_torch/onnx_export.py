"""ONNX export of a folded DiracNet (or any model :func:`~dirac_torch.fold.fold_model` folds).

The model is folded first, so the ONNX graph holds only plain convolutions with bias,
activations (NCReLU exports as ``Relu``/``Neg``/``Concat`` or ``Min``/``Max``), pooling and
the classifier: the Dirac parameterization and batch norms cost nothing at inference.

PyTorch 2.9 made the ``torch.export``-based exporter (``dynamo=True``) the default and
deprecated the TorchScript one; this module uses the former, via ``onnxscript``, and writes one
self-contained file (``external_data=False``) unless told otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dirac_core.validation import bool_value

from .fold import example_args, fold_model


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    example_input: torch.Tensor | Sequence[torch.Tensor],
    *,
    dynamic_batch: bool = True,
    **kw: Any,
) -> Path:
    """Fold ``model`` and write it to ``path`` as ONNX.

    Parameters
    ----------
    model : nn.Module
        Left untouched; its folded, eval-mode copy is exported:
        ``fold_model(model, example_input)``, which also folds batch norms inside modules with
        their own ``forward`` (through a ``torch.fx`` trace) and checks the folded copy against
        ``model`` on ``example_input``.
    path : str or os.PathLike
        The ``.onnx`` file to write; its directory must exist.
    example_input : Tensor or sequence of Tensors
        The positional inputs of ``model.forward`` used to trace it.
    dynamic_batch : bool
        Let the first dimension of every input vary in the exported graph (the default), so
        one file serves any batch size; ``False`` fixes it to ``example_input``'s.
    **kw
        Passed on to :func:`torch.onnx.export` (e.g. ``opset_version``, ``input_names``);
        they override this function's defaults ``dynamo=True``, ``external_data=False``,
        ``input_names=["input", ...]``, ``output_names=["output"]``, ``verbose=False``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``; ``example_input`` is not a tensor or a sequence of
        tensors; ``dynamic_batch`` is not a bool.
    ValueError
        ``path``'s directory does not exist; anything :func:`~dirac_torch.fold.fold_model`
        refuses (a batch norm it cannot fold, a conv with hooks, a folded copy that differs
        from ``model``).

    Examples
    --------
    >>> import tempfile, dirac_torch as dt
    >>> net = dt.diracnet_cifar(10)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = export_onnx(net, f"{tmp}/net.onnx", torch.randn(1, 3, 32, 32))
    ...     out.stat().st_size > 100_000
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    bool_value(dynamic_batch, "dynamic_batch")
    args = example_args(example_input)
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path={str(path)!r}: directory {str(path.parent)!r} does not exist")
    input_names = [f"input{i}" if len(args) > 1 else "input" for i in range(len(args))]
    options: dict[str, Any] = {
        "dynamo": True, "external_data": False, "input_names": input_names,
        "output_names": ["output"], "verbose": False,
    }
    options.update(kw)
    if dynamic_batch:
        options.update(_dynamic_batch(args, options))
    torch.onnx.export(fold_model(model, args), args, path, **options)
    return path


def _dynamic_batch(args: tuple[torch.Tensor, ...], options: dict[str, Any]) -> dict[str, Any]:
    """The exporter option that frees the first dimension of every input."""
    if options["dynamo"]:
        return {"dynamic_shapes": tuple({0: torch.export.Dim.DYNAMIC} for _ in args)}
    return {"dynamic_axes": {name: {0: "batch"} for name in options["input_names"]}}

