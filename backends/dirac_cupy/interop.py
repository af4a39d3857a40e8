"""Zero-copy exchange of CUDA arrays between CuPy and PyTorch through DLPack.

Both directions share the memory: no copy, no transfer, and a write through one is seen
through the other. DLPack's stream handshake orders the producer's pending work before the
consumer's, so no explicit synchronisation is needed on the default streams.

>>> import dirac_cupy
>>> callable(dirac_cupy.to_torch) and callable(dirac_cupy.from_torch)
True
"""

from __future__ import annotations

from typing import Any


def to_torch(x: Any) -> Any:
    """A ``torch.Tensor`` on the same CUDA device sharing ``x``'s memory (``torch.from_dlpack``).

    Parameters
    ----------
    x : cupy.ndarray

    Returns
    -------
    torch.Tensor
        Same shape, dtype, strides and device as ``x``; ``t.data_ptr() == x.data.ptr``.
    """
    from torch.utils.dlpack import from_dlpack  # what torch.from_dlpack is

    return from_dlpack(x)


def from_torch(t: Any) -> Any:
    """A ``cupy.ndarray`` sharing the memory of the CUDA tensor ``t`` (``cupy.from_dlpack``).

    Parameters
    ----------
    t : torch.Tensor
        On a CUDA device. A CPU tensor is refused with a ValueError: DLPack cannot move memory
        between devices, and a silent copy would break the sharing this function promises.

    Returns
    -------
    cupy.ndarray
    """
    if getattr(t, "device", None) is not None and getattr(t.device, "type", "cuda") != "cuda":
        raise ValueError(
            f"t is on device {t.device}; from_torch shares CUDA memory only: move it with "
            f"t.cuda() first, or use cupy.asarray(t.numpy()) for a copy"
        )
    import cupy

    return cupy.from_dlpack(t)
