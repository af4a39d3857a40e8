"""Whether the CuPy backend can run here, and if not, the precise reason.

Nothing here imports CuPy at module import; :func:`probe` does, once asked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from types import ModuleType

from dirac_core.backend import Availability

MIN_CUPY = 13  # CuPy 13 is the oldest with the NVRTC name expressions and DLPack we rely on
INSTALL_HINT = "install a CuPy wheel matching the CUDA driver, e.g. pip install 'diracnets[cupy]'"


def probe(import_module: Callable[[str], ModuleType] = importlib.import_module) -> Availability:
    """Import CuPy and ask the CUDA runtime for a device.

    Parameters
    ----------
    import_module : callable
        How to import ``cupy`` (tests pass a fake one).

    Returns
    -------
    Availability
        ``ok`` when CuPy >= 13 imports and sees at least one CUDA device; otherwise ``reason``
        says which step failed: CuPy not installed (or broken), too old, a CUDA driver or
        runtime error, or no device.

    Examples
    --------
    >>> def without_cupy(name):
    ...     raise ImportError(f"No module named {name!r}")
    >>> probe(without_cupy).reason[:30]
    'CuPy is not installed (No modu'
    """
    try:
        cupy = import_module("cupy")
    except ImportError as exc:
        return Availability(False, f"CuPy is not installed ({exc}); {INSTALL_HINT}")
    version = getattr(cupy, "__version__", "0")
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_CUPY:
        return Availability(
            False, f"CuPy {version} is too old: the cupy backend needs CuPy >= {MIN_CUPY}"
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, or a missing libcuda surfacing as another type
        return Availability(
            False, f"CUDA driver error while looking for a device: {type(exc).__name__}: {exc}"
        )
    if count < 1:
        return Availability(False, "CuPy found no CUDA device (getDeviceCount() == 0)")
    return Availability(True)


@cache
def cached_probe() -> Availability:
    """:func:`probe`, run once per process (devices do not come and go under a process)."""
    return probe()
