"""Whether the CuPy backend can run here, and if not, the precise reason; which CuPy to install.

Nothing here imports CuPy at module import; :func:`probe` does, once asked. CuPy ships one
wheel per CUDA major version (``cupy-cuda12x``, ``cupy-cuda13x``), all installing the same
``cupy`` package, so exactly one of them must be installed: the one for the CUDA version the
driver supports, which :func:`driver_cuda_major` asks the driver for.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

from dirac_core.backend import Availability

MIN_CUPY = 13  # CuPy 13 is the oldest with the NVRTC name expressions and DLPack we rely on

CUPY_EXTRAS: dict[int, str] = {12: "cupy-cuda12x", 13: "cupy-cuda13x"}
"""CUDA major version -> the extra of this project (named after the CuPy wheel it pulls)."""

_LIBCUDA = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")


def driver_cuda_major(load: Callable[[str], Any] = ctypes.CDLL) -> int | None:
    """The newest CUDA major version the installed driver supports, or None without a driver.

    Asks the driver library itself (``cuDriverGetVersion``: 12040 for CUDA 12.4), so it needs
    neither CuPy nor ``nvidia-smi``.

    Parameters
    ----------
    load : callable
        How to load a shared library (tests pass a fake one).

    Examples
    --------
    >>> def no_driver(name):
    ...     raise OSError(f"{name}: cannot open shared object file")
    >>> driver_cuda_major(no_driver) is None
    True
    """
    for name in _LIBCUDA:
        try:
            lib = load(name)
        except OSError:
            continue
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0:
            return version.value // 1000
    return None


def install_hint(major: int | None) -> str:
    """Which CuPy to install for a driver supporting CUDA ``major`` (None: no driver found).

    Examples
    --------
    >>> print(install_hint(12).split(" (")[0])
    the driver supports CUDA 12: pip install 'diracnets[cupy-cuda12x]'
    """
    both = " or ".join(f"'diracnets[{extra}]' (CUDA {m})" for m, extra in CUPY_EXTRAS.items())
    if major is None:
        return f"no CUDA driver found (libcuda); with one, pip install {both}"
    if major < min(CUPY_EXTRAS):
        return (f"the driver supports CUDA {major} only: update it, then pip install {both} "
                f"(or install CuPy's cupy-cuda11x wheel yourself)")
    extra = CUPY_EXTRAS[min(major, max(CUPY_EXTRAS))]
    return (f"the driver supports CUDA {major}: pip install 'diracnets[{extra}]' "
            f"(one CuPy wheel only: uninstall any other cupy-cuda* first)")


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
        hint = install_hint(driver_cuda_major())
        return Availability(False, f"CuPy is not installed ({exc}); {hint}")
    if getattr(cupy, "__file__", None) is None and hasattr(cupy, "__path__"):
        # A folder named cupy on sys.path (a namespace package), not CuPy.
        where = ", ".join(map(str, cupy.__path__))
        hint = install_hint(driver_cuda_major())
        return Availability(False, f"CuPy is not installed (only a folder named cupy was "
                            f"found, at {where}); {hint}")
    version = getattr(cupy, "__version__", "0")
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_CUPY:
        return Availability(
            False, f"CuPy {version} is too old: the cupy backend needs CuPy >= {MIN_CUPY}; "
            f"{install_hint(driver_cuda_major())}"
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
