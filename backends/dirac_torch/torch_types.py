"""The torch dtypes and devices the Dirac ops work in, shared by the functional ops, the
autograd node, the kernels, the layers and the conformance backend.

- :func:`torch_dtype`, :func:`torch_device`: a user's ``dtype=``/``device=`` argument checked
  and turned into torch's objects;
- :func:`work_dtype`: the dtype the arithmetic runs in (float32 for half precision);
- :func:`working_eps`: ``eps`` in that dtype, kept inside its positive finite range.
"""

from __future__ import annotations

from typing import Any

import torch

from dirac_core import validation as ck
from dirac_core.errors import DeviceUnavailableError
from dirac_core.normalize import working_eps as _working_eps

_HALF = (torch.float16, torch.bfloat16)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the arithmetic runs in: float32 for half-precision inputs, else ``dtype``."""
    return torch.float32 if dtype in _HALF else dtype


def working_eps(eps: float, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """``eps`` as the spec takes it: in the working dtype ``dtype`` and inside its positive
    finite range (:func:`dirac_core.normalize.working_eps`), as a 0-d tensor on ``device``.
    A tensor, not a Python float: a float beyond the dtype's range cannot be mixed with its
    tensors, and CUDA divides by a scalar through its reciprocal, which overflows."""
    value = _working_eps(eps, str(dtype).rpartition(".")[2])
    return torch.full((), value, dtype=dtype, device=device)


def torch_dtype(dtype: Any) -> torch.dtype:
    """A floating ``torch.dtype`` from a dtype object, a name like ``"float32"``, or None.

    None gives ``torch.get_default_dtype()``.

    Raises
    ------
    TypeError
        ``dtype`` is not one of ``float64, float32, float16, bfloat16``.
    """
    if dtype is None:
        return torch.get_default_dtype()
    return getattr(torch, ck.float_dtype_name(dtype))


def torch_device(device: Any, name: str = "device") -> torch.device | None:
    """``device`` as a ``torch.device`` this process can allocate tensors on (None stays
    None: torch's default device). ``"meta"`` is accepted: a Dirac layer holds nothing but
    its parameters, so ``Module.to_empty`` followed by ``reset_parameters`` (or loading a
    ``state_dict``) makes a meta-built model whole.

    Raises
    ------
    ValueError
        Not a device name torch knows (the message names the argument ``name``).
    dirac_core.DeviceUnavailableError
        (a ``ValueError``) A CUDA device this machine lacks.
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{name}={device!r} is not a torch device; use e.g. 'cpu', 'cuda' or 'cuda:1'"
        ) from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            raise DeviceUnavailableError(
                f"{name}={device!r} is not available: this machine has {count} CUDA "
                f"device(s) (torch.cuda.is_available() is {torch.cuda.is_available()})"
            )
    return dev
