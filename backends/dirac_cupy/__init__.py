"""dirac_cupy: the CuPy GPU backend of the Dirac weight parameterization (DiracNets).

Registered as ``cupy`` in the ``dirac_core.backends`` entry-point group, so
``dirac_core.conv(x, w)`` with CuPy arrays, or ``backend="cupy"`` with any arrays, runs here.
Importing this package never imports CuPy: without CuPy or a CUDA device,
``CupyBackend().available()`` is false and says why.

>>> import dirac_cupy
>>> isinstance(dirac_cupy.CupyBackend().available().ok, bool)
True
"""

from .availability import probe
from .backend import CupyBackend
from .interop import from_torch, to_torch

__all__ = ["CupyBackend", "from_torch", "probe", "to_torch"]
