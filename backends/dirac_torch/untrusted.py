"""The tensor half of :mod:`dirac_core.untrusted`: weight files and state dicts from outside.

Before a network described by a file is built, the file has to prove it holds the weights:

- :func:`safetensors_header` reads a safetensors file's header (bounded, strict JSON) without
  touching its data, and checks every entry's dtype, shape and byte range against the file's
  size; :func:`load_safetensors` then loads it, naming the file in every error;
- :func:`stored_tensors` refuses anything in a loaded state dict that is not a dense tensor
  holding its own values: an expanded (stride-0) or overlapping view claims more values than
  its storage has, so a 16 KB file could otherwise describe gigabytes;
- :func:`stored_tensors` also refuses NaN and infinite values (:func:`non_finite_keys`): a
  network built from them computes NaN;
- :func:`check_floating_values` refuses integer or bool values for a floating-point weight,
  for every loader (our files through :func:`load_state`, the authors' checkpoints);
- :func:`check_parameter_count` compares the parameter count of the described network
  (:func:`dirac_core.nets.count_parameters` of its spec) with the values the file stores and
  with :data:`MAX_PARAMETERS`, so nothing is allocated for weights the file does not have.

Every refusal is a :class:`dirac_core.untrusted.UntrustedInputError` (a ``ValueError``).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from typing import Any

import torch

from dirac_core import nets
from dirac_core.untrusted import UntrustedInputError, open_regular, parse_json, require

from .torch_types import torch_device

# a backstop whatever the file stores: 2**31 float32 parameters are 8 GiB
MAX_PARAMETERS = 2**31
# safetensors itself refuses headers over 100 MB
HEADER_LIMIT = 100_000_000
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
             "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def safetensors_header(path: str | os.PathLike[str],
                       what: str = "model file") -> tuple[dict[str, str], dict[str, int]]:
    """``(metadata, {tensor name: number of values})`` of the safetensors file ``path``, from
    its header alone.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    UntrustedInputError
        Not a regular file, sparse, not a safetensors file, a header over 100 MB, or entries
        whose dtype, shape or byte range are not valid for the file's size.
    """
    source = f"{what} {str(path)!r}"
    with open_regular(path, what) as file:
        size = os.fstat(file.fileno()).st_size
        head = file.read(8)
        if len(head) < 8:
            raise UntrustedInputError(f"{source} is not a safetensors file ({size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= min(HEADER_LIMIT, size - 8):
            raise UntrustedInputError(f"{source} is not a safetensors file (a header of "
                                      f"{length:,} bytes in a file of {size:,})")
        header = parse_json(file.read(length), f"{source} (safetensors header)", max_depth=4)
    header = require(header, "dict[str, Any]", source, "header")
    metadata = header.pop("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise UntrustedInputError(f"{source}: __metadata__ is not an object of strings")
    counts, data_size = {}, size - 8 - length
    for name, entry in header.items():
        counts[name] = _entry_values(entry, data_size, f"{source}, tensor {name!r}")
    return metadata, counts


def _entry_values(entry: Any, data_size: int, where: str) -> int:
    entry = require(entry, "dict[str, Any]", where, "entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _ITEMSIZE:
        raise UntrustedInputError(f"{where}: dtype={dtype!r}; accepted: {sorted(_ITEMSIZE)}")
    shape = require(shape, "tuple[int, ...]", where, "shape")
    offsets = require(offsets, "tuple[int, ...]", where, "data_offsets")
    count = math.prod(shape)
    if (min(shape, default=0) < 0 or len(offsets) != 2
            or not 0 <= offsets[0] <= offsets[1] <= data_size
            or offsets[1] - offsets[0] != count * _ITEMSIZE[dtype]):
        raise UntrustedInputError(f"{where}: shape {list(shape)} of {dtype} does not match its "
                                  f"bytes {list(offsets)} (the file's data has {data_size:,})")
    return count


def load_safetensors(path: str | os.PathLike[str], device: Any = "cpu",
                     what: str = "model file") -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path`` (checked by :func:`safetensors_header`
    first, then as :func:`stored_tensors`) on ``device`` (None: the CPU); every error about
    the file names it.

    Raises
    ------
    ValueError
        ``device`` is not a torch device this machine has (named as ``map_location``, the
        loaders' argument), before the file is opened.
    FileNotFoundError, UntrustedInputError
        As :func:`safetensors_header` and :func:`stored_tensors`; a file that safetensors
        cannot read.
    """
    from safetensors.torch import load_file

    device = torch_device(device, "map_location") or torch.device("cpu")
    if device.type == "meta":  # valid for building layers, but it cannot hold weights
        raise ValueError("map_location='meta' holds no values; load to a device that does "
                         "(e.g. 'cpu'), or build the model on 'meta' without loading")
    safetensors_header(path, what)
    source = f"{what} {str(path)!r}"
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as exc:  # SafetensorError, a truncated copy, ...
        raise UntrustedInputError(f"{source} cannot be read: "
                                  f"{' '.join(str(exc).split())}") from None
    return stored_tensors(tensors, source)


def stored_tensors(state: Any, source: str) -> dict[str, torch.Tensor]:
    """``state`` as ``{name: tensor}``, refused unless every value is a dense tensor that
    holds its own values (not an expanded or overlapping view of a smaller storage) and every
    floating value is finite.

    Raises
    ------
    UntrustedInputError
        ``state`` is not a mapping of string keys to tensors; a sparse, quantized or
        meta tensor; a tensor with more values than its storage holds; NaN or infinite
        values (the message names ``source`` and the first such keys).

    Examples
    --------
    >>> stored_tensors({"w": torch.ones(2), "b": torch.tensor([1.0, float("nan")])}, "'f.pt'")
    Traceback (most recent call last):
    ...
    dirac_core.untrusted.UntrustedInputError: 'f.pt': NaN or infinite values in ['b']; refused
    """
    if not isinstance(state, Mapping):
        raise UntrustedInputError(f"{source}: expected a mapping of names to tensors, got "
                                  f"{type(state).__name__}")
    out = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise UntrustedInputError(f"{source}: key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise UntrustedInputError(f"{source}: entry {key!r} is a {type(value).__name__}, "
                                      "not a tensor")
        if value.layout != torch.strided or value.is_quantized or value.is_meta:
            raise UntrustedInputError(f"{source}: entry {key!r} is not a dense tensor "
                                      f"({value.layout}); refused")
        needed = value.numel() * value.element_size()
        if needed > value.untyped_storage().nbytes():
            raise UntrustedInputError(
                f"{source}: entry {key!r} of shape {tuple(value.shape)} claims {needed:,} bytes "
                f"but stores {value.untyped_storage().nbytes():,} (an expanded or overlapping "
                "tensor); refused")
        out[key] = value
    bad = non_finite_keys(out)
    if bad:
        shown = repr(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise UntrustedInputError(f"{source}: NaN or infinite values in {shown}; refused")
    return out


def non_finite_keys(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The keys of ``state`` whose floating (or complex) tensors hold a NaN or an infinity.

    >>> non_finite_keys({"a": torch.ones(2), "b": torch.tensor(float("inf")),
    ...                  "n": torch.tensor(3)})
    ['b']
    """
    return [key for key, value in state.items()
            if (value.is_floating_point() or value.is_complex())
            and not bool(torch.isfinite(value).all())]


def check_parameter_count(spec: nets.NetSpec, stored: int, source: str,
                          limit: int = MAX_PARAMETERS, *, folded: bool = False) -> int:
    """The parameter count of ``spec`` (:func:`dirac_core.nets.count_parameters`; for a
    ``folded`` network, the conv and linear weights it keeps), refused unless the file stores
    at least that many values (``stored``) and it is at most ``limit``.

    Raises
    ------
    UntrustedInputError
        The described network needs more values than the file stores, or more than ``limit``.
    """
    count = _folded_weights(spec) if folded else nets.count_parameters(spec)
    if count > limit:
        raise UntrustedInputError(f"{source}: the described network has {count:,} parameters; "
                                  f"at most {limit:,} are built")
    if count > stored:
        raise UntrustedInputError(f"{source}: the described network ({spec.name}) has "
                                  f"{count:,} parameters but the file stores {stored:,} values: "
                                  "the weights do not fit the described network; nothing was built")
    return count


def _folded_weights(spec: nets.NetSpec) -> int:
    """The conv and linear weights of ``spec``: what its folded network keeps at least."""
    return sum(layer.out_channels * layer.in_channels * layer.kernel_size**2
               if isinstance(layer, nets.Conv) else layer.num_parameters()
               for _, layer in spec.layers() if isinstance(layer, nets.Conv | nets.Linear))


def check_floating_values(value: torch.Tensor, weight: torch.Tensor, source: str, key: str,
                          into: str | None = None, *,
                          error: type[UntrustedInputError] = UntrustedInputError) -> None:
    """Refuse the file's tensor ``value`` (``key`` of ``source``) for the model's tensor
    ``weight`` (``into``; default ``key``) when the weight is floating-point and the values are
    integers or bools: copied in, they would be cast without a word, and a file holding them
    was not written for this network.

    Raises
    ------
    UntrustedInputError
        (or ``error``, a subclass) The message names the source, the key and the weight.

    Examples
    --------
    >>> check_floating_values(torch.ones(2), torch.zeros(2), "'f'", "b")
    >>> check_floating_values(torch.arange(2), torch.zeros(2), "'f'", "b")
    Traceback (most recent call last):
    ...
    dirac_core.untrusted.UntrustedInputError: 'f': 'b' holds torch.int64 values where the \
model's 'b' is a floating-point weight
    """
    if weight.is_floating_point() and not value.is_floating_point():
        raise error(f"{source}: {key!r} holds {value.dtype} values where the model's "
                    f"{into or key!r} is a floating-point weight")


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` (every key must match), converting the model to the
    weights' floating dtype and device first.

    Raises
    ------
    ValueError
        The weights do not fit the model, or a floating weight of the model would be given
        integer or bool values; the message names ``source``.
    """
    own = model.state_dict()
    for key, value in state.items():
        if key in own:
            check_floating_values(value, own[key], source, key)
    floating = [v for v in state.values() if v.is_floating_point()]
    if floating:
        model.to(device=floating[0].device, dtype=floating[0].dtype)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"the weights in {source} do not fit the described network: "
                         f"{exc}") from None
