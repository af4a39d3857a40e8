"""Finding backends: the ``dirac_core.backends`` entry-point group, loaded lazily.

A third party registers a backend by installing a package that declares, in its
``pyproject.toml``::

    [project.entry-points."dirac_core.backends"]
    mybackend = "my_package.module:MyBackend"

The attribute may be a class (instantiated with no arguments) or a ready instance. Nothing is
imported until a backend is asked for, so ``import dirac_core`` imports no framework.

This repository's own backends are also listed in :data:`SOURCE_TREE`, so that a source
checkout that is not installed (only ``PYTHONPATH`` pointing at the repository root,
``backends/`` and ``conformance/``, no distribution metadata, hence no entry points) finds
them by the same names, and infers them from their arrays. An installed entry point of the
same name wins. A backend added to this repository gets one line there and the same line in
``pyproject.toml`` (``tests/core/test_registry.py`` checks that the two lists agree)::

    SOURCE_TREE = {
        ...
        "mybackend": "dirac_mybackend.backend:MyBackend",
    }
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from .backend import OPS, Availability, Backend
from .errors import BackendUnavailableError, BrokenBackendError, UnknownBackendError
from .validation import is_python_or_numpy_scalar

GROUP = "dirac_core.backends"

SOURCE_TREE: dict[str, str] = {
    "numpy": "dirac_core.reference:NumpyBackend",
    "torch": "dirac_torch.backend:TorchBackend",
    "cupy": "dirac_cupy.backend:CupyBackend",
    "jax": "dirac_jax.backend:JaxBackend",
    "array_api": "dirac_array_api.backend:ArrayApiBackend",
}
"""This repository's backends by name, as its ``pyproject.toml`` registers them: found even
where the distribution metadata is not (a source tree on ``PYTHONPATH``)."""

_loaded: dict[str, Backend] = {}

# Top-level modules of array types owned by a backend registered under another name.
_ARRAY_MODULES = {"jaxlib": "jax", "array_api_strict": "array_api"}


@cache
def _entry_points() -> dict[str, Any]:
    eps: dict[str, Any] = {ep.name: ep for ep in entry_points(group=GROUP)}
    for name, target in SOURCE_TREE.items():
        # Only packages present on the path: a checkout without backends/ on it lists the
        # reference alone, as an install without the extras would.
        if name not in eps and _findable(target):
            eps[name] = target
    return eps


def _findable(target: str) -> bool:
    """Whether the top-level package of ``module:attribute`` can be imported (not importing
    it: finding ``dirac_torch`` must not import torch)."""
    return importlib.util.find_spec(target.partition(".")[0].partition(":")[0]) is not None


_PROTOCOL_METHODS = ("available", "owns", "from_numpy", "to_numpy", "device", *OPS)


def missing_methods(obj: Any) -> list[str]:
    """The methods of the :class:`~dirac_core.backend.Backend` protocol that ``obj`` (a class
    or an instance) lacks; empty for a backend.

    Examples
    --------
    >>> from dirac_core.reference import NumpyBackend
    >>> missing_methods(NumpyBackend), missing_methods(object)[:2]
    ([], ['available', 'owns'])
    """
    return [m for m in _PROTOCOL_METHODS if not callable(getattr(obj, m, None))]


def instantiate(obj: Any, target: str) -> Backend:
    """A backend from a class (instantiated with no arguments) or an instance.

    Raises
    ------
    TypeError
        ``obj`` does not implement the protocol; checked before anything of it runs.
    BrokenBackendError
        Instantiating the class, or reading its ``name`` or ``dtypes``, raised.
    """
    missing = missing_methods(obj)
    if missing:
        what = f"class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise TypeError(
            f"backend={target!r} is {what}, not a Backend: it lacks {', '.join(missing)} "
            f"(a backend with only some ops can inherit the others from "
            f"dirac_core.reference.NumpyBackend)"
        )
    try:
        backend = obj() if isinstance(obj, type) else obj
    except Exception as exc:  # a third party's constructor can raise anything
        raise BrokenBackendError(f"backend={target!r} could not be instantiated: {exc!r}") from exc
    try:
        if isinstance(backend, Backend):  # reads name and dtypes: a property may raise
            return backend
    except Exception as exc:
        raise BrokenBackendError(
            f"backend={target!r} raised reading its name or dtypes: {exc!r}"
        ) from exc
    raise TypeError(f"backend={target!r} lacks the name or dtypes attribute of a Backend")


def _load_target(target: str) -> Backend:
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # a broken install can raise anything (OSError: missing libcudart)
        raise BrokenBackendError(f"backend={target!r} could not be loaded: {exc!r}") from exc
    return instantiate(obj, target)


def backend_names() -> list[str]:
    """Names of every registered backend, usable or not, sorted."""
    return sorted(_entry_points())


def get_backend(name: str | Backend, *, require_available: bool = True) -> Backend:
    """Return the backend registered as ``name``.

    Parameters
    ----------
    name : str or Backend
        An entry-point name (``"numpy"``, ``"torch"``, ``"cupy"``, or a third party's), a
        ``"module:attribute"`` path, or a backend object (returned as is).
    require_available : bool
        If true (default), raise when the backend is installed but cannot run here.

    Raises
    ------
    UnknownBackendError
        Unknown name (the message lists the known ones).
    BrokenBackendError
        A registered backend whose import or construction raised.
    BackendUnavailableError
        A backend that cannot run here (the message gives its reason, e.g. "CuPy found no CUDA
        device"). All three subclass ``ValueError``.
    TypeError
        ``name`` is neither a string nor a backend.
    """
    if not isinstance(name, str):
        if isinstance(name, Backend):
            return name
        raise TypeError(
            f"backend must be a backend name (str) or a Backend object, got "
            f"{type(name).__name__}: {name!r}"
        )
    backend = _loaded.get(name)
    if backend is None:
        backend = _load(name)
        _loaded[name] = backend
    if require_available:
        status = availability(backend, name)
        if not status:
            raise BackendUnavailableError(
                f"backend={name!r} is installed but not usable here: {status.reason}"
            )
    return backend


def availability(backend: Backend, name: str) -> Availability:
    """``backend.available()``, checked: an :class:`Availability`, or a one-line error.

    Raises
    ------
    BrokenBackendError
        ``available()`` raised, or returned something other than an ``Availability``
        (``None``, a bare bool): the backend is broken, not unavailable.

    Examples
    --------
    >>> availability(get_backend("numpy"), "numpy")
    Availability(ok=True, reason='')
    """
    try:
        status = backend.available()
    except Exception as exc:  # a third party's check can raise anything
        raise BrokenBackendError(f"backend={name!r}: available() raised {exc!r}") from exc
    if not isinstance(status, Availability):
        raise BrokenBackendError(
            f"backend={name!r}: available() returned {status!r}, not a "
            f"dirac_core.Availability(ok, reason)")
    return status


def _load(name: str) -> Backend:
    eps = _entry_points()
    if name in eps:
        target = eps[name]
        if isinstance(target, str):
            return _load_target(target)
        try:
            obj = target.load()
        except Exception as exc:  # a broken install can raise anything on import
            raise BrokenBackendError(
                f"backend={name!r} is registered but could not be imported: {exc}"
            ) from exc
        return instantiate(obj, name)
    if ":" in name:
        return _load_target(name)
    raise UnknownBackendError(
        f"backend={name!r} is not known; known backends: {', '.join(backend_names())}"
    )


def available_backends() -> dict[str, str]:
    """Every registered backend and whether it runs here.

    Returns
    -------
    dict
        ``{name: ""}`` for a usable backend, ``{name: reason}`` for one that is not.
    """
    report = {}
    for name in backend_names():
        try:
            status = availability(get_backend(name, require_available=False), name)
            report[name] = "" if status else status.reason
        except Exception as exc:  # report every broken backend instead of failing the listing
            report[name] = str(exc)
    return report


def infer_backend(*arrays: Any) -> Backend:
    """The backend that owns the given arrays (``None`` entries are skipped).

    NumPy arrays belong to the reference. Python and NumPy scalars (``2.0``, ``np.float32(2)``)
    belong to no backend: they go with the arrays beside them. Other arrays are matched by the
    top-level module of their type against the registered names (``torch.Tensor`` -> "torch"),
    then by asking each loaded backend's ``owns``.

    Raises
    ------
    TypeError
        Arrays from two different backends, or an array no backend owns.
    """
    found: dict[str, Backend] = {}
    for x in arrays:
        if x is None or is_python_or_numpy_scalar(x):
            continue
        backend = _owner(x)
        found.setdefault(backend.name, backend)
    if len(found) > 1:
        raise TypeError(
            f"inputs mix arrays of backends {sorted(found)}; convert them to one kind or pass "
            f"backend= explicitly"
        )
    return next(iter(found.values())) if found else get_backend("numpy")


def _owner(x: Any) -> Backend:
    import numpy as np

    if isinstance(x, (np.ndarray, np.generic)):
        return get_backend("numpy")
    root = type(x).__module__.split(".")[0]
    root = _ARRAY_MODULES.get(root, root)
    if root in _entry_points():
        backend = get_backend(root, require_available=False)
        if backend.owns(x):
            return backend
    for backend in list(_loaded.values()):
        if backend.owns(x):
            return backend
    raise TypeError(
        f"no backend owns an array of type {type(x).__module__}.{type(x).__qualname__}; "
        f"known backends: {', '.join(backend_names())}"
    )
