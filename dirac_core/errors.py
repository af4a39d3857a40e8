"""Why a backend could not be had: one exception type per failure, raised alike everywhere.

Each subclasses the built-in type raised before these existed, so ``except ValueError`` keeps
working, while a caller that needs to tell the failures apart (the conformance loader, a CI
script) catches the specific type.

>>> from dirac_core import get_backend
>>> try:
...     get_backend("no-such-backend")
... except UnknownBackendError as exc:
...     print(type(exc).__name__, isinstance(exc, ValueError))
UnknownBackendError True
"""

from __future__ import annotations


class BackendError(Exception):
    """Base class of the backend failures below."""


class UnknownBackendError(BackendError, ValueError):
    """No backend is registered under that name (and it is no ``module:attr`` path)."""


class BrokenBackendError(BackendError, ValueError):
    """The backend is registered but importing or instantiating it raised."""


class BackendUnavailableError(BackendError, ValueError, RuntimeError):
    """The backend is installed but cannot run here (no device, missing runtime, ...)."""


class DeviceUnavailableError(BackendUnavailableError):
    """A device the backend knows that this machine lacks: ``"cuda"`` without a GPU, a JAX
    platform whose plugin is not installed, an index beyond the devices present. A backend's
    ``from_numpy`` raises it so that callers (the conformance suite's skip) can tell it from a
    device name the backend does not know at all, which is a plain ``ValueError``; the
    message names the device given and the devices there are."""
