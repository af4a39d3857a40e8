"""The backend under test: found by name, ``module:attribute`` or object, plus a device.

A target spec is ``NAME[@DEVICE]``: ``numpy``, ``torch``, ``torch@cuda``, ``cupy``, a third
party's entry-point name, or ``my_pkg.backend:MyBackend@cuda:1``. A backend that cannot run
here (no GPU, library missing) raises :class:`Unavailable` with the reason, which the pytest
plugin turns into a skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import dirac_core as dc
from dirac_core.backend import Backend

from .dtypes import SUPPORTED, numpy_dtype


class Unavailable(Exception):
    """The backend exists but cannot run on this machine; ``str(exc)`` says why."""


@dataclass(frozen=True)
class Target:
    """A backend and the device its arrays live on.

    Attributes
    ----------
    backend : Backend
        The implementation under test, called through the public API with ``backend=``.
    device : object
        Passed to ``from_numpy`` and ``dirac_tensor`` (``None``: the backend's default).
    label : str
        The spec it was loaded from, for reports.
    """

    backend: Backend
    device: Any
    label: str

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The dtypes the backend declares that the suite knows how to test."""
        return tuple(d for d in self.backend.dtypes if d in SUPPORTED)

    def from_numpy(self, values: np.ndarray, dtype: str) -> Any:
        """``values`` (float64, already rounded) as a native array of ``dtype`` on the device.

        bfloat16 arrives as an ``ml_dtypes.bfloat16`` NumPy array: a backend declaring
        bfloat16 must accept those in ``from_numpy``.
        """
        try:
            return self.backend.from_numpy(values.astype(numpy_dtype(dtype)), self.device)
        except Exception as exc:
            if dtype != "bfloat16":
                raise
            raise TypeError(
                f"{self.label} declares bfloat16 but its from_numpy rejects an "
                f"ml_dtypes.bfloat16 array, the suite's carrier for bfloat16 data: {exc}"
            ) from exc

    def to_numpy(self, x: Any) -> np.ndarray | None:
        """A native result as a float64 NumPy array (``None`` stays ``None``)."""
        return None if x is None else np.asarray(self.backend.to_numpy(x), dtype=np.float64)


def load_target(spec: str | Backend) -> Target:
    """Load the backend a spec names and check it can run here.

    Parameters
    ----------
    spec : str or Backend
        ``NAME[@DEVICE]`` (see the module docstring) or a backend object.

    Raises
    ------
    Unavailable
        The backend is registered but cannot be imported or used here, or the device is not.
    ValueError
        An unknown name.

    Examples
    --------
    >>> load_target("numpy").label
    'numpy'
    """
    if not isinstance(spec, str):
        return _checked(Target(dc.get_backend(spec), None, type(spec).__name__))
    name, _, device = spec.partition("@")
    try:
        backend = dc.get_backend(name, require_available=False)
    except dc.BrokenBackendError as exc:
        raise Unavailable(str(exc)) from exc
    return _checked(Target(backend, device or None, spec))


def _checked(target: Target) -> Target:
    status = target.backend.available()
    if not status:
        raise Unavailable(f"{target.label}: {status.reason}")
    if target.device is not None:
        try:
            target.backend.from_numpy(np.zeros(1), target.device)
        except Exception as exc:  # each framework fails its own way on a missing device
            raise Unavailable(f"{target.label}: device {target.device!r} unusable: {exc}") from exc
    return target
