"""The backend under test: found by name, ``module:attribute``, file or object, plus a device.

A target spec is ``NAME[@DEVICE]``: ``numpy``, ``torch``, ``torch@cuda``, ``cupy``, a third
party's entry-point name, ``my_pkg.backend:MyBackend@cuda:1``, or a Python file holding the
backend, ``path/to/my_backend.py[:MyBackend]`` (without ``:ATTR``, the one backend class or
object the file defines). A backend that reports it cannot run here (``available()`` gives
``Availability(False, reason)``: no GPU, library missing) raises :class:`Unavailable` with the
reason, which the pytest plugin turns into a skip; one that crashes while loading or answering
``available()`` raises :class:`Broken`, a failure. Something that is not a backend is refused
(``TypeError``) before any of its methods runs.

A device is tried with ``from_numpy``. A device the backend refuses with
:class:`dirac_core.DeviceUnavailableError` is one it knows that this machine lacks
(``torch@cuda`` without CUDA, ``jax@cuda`` without JAX's CUDA plugin): :class:`Unavailable`.
A mistake is a ``ValueError``: a device name that is not ``KIND[:INDEX]``
(:func:`dirac_core.validation.device_name`), an empty one (``numpy@``), or one the backend
refuses with another ``ValueError`` or ``TypeError`` *exactly as it refuses a made-up name*
(same exception types and messages, down the chain of causes, the name aside: ``torch@gpu``,
``numpy@gpu``, ``array_api@gpu``, array-api-strict having no such device). Any other refusal
reads as :class:`Unavailable` (a backend whose words for "unknown" and "missing" are the same
must raise ``DeviceUnavailableError`` for the second). Each message names the target, the
device given and, in the backend's words, the devices it accepts or has.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import dirac_core as dc
from dirac_core.backend import Backend
from dirac_core.registry import availability, instantiate, missing_methods
from dirac_core.validation import device_name

from .dtypes import SUPPORTED, numpy_dtype


class Unavailable(Exception):
    """The backend exists but reports that it cannot run on this machine (``available()``
    gave ``Availability(False, reason)``, or the device is unusable); ``str(exc)`` says why.
    The only reason a run may skip a backend."""


class Broken(Exception):
    """The backend crashed before any check: importing its module, constructing it or
    ``available()`` raised, or ``available()`` returned no ``Availability``. A failure, never a
    skip; ``str(exc)`` says what happened, in one line."""


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
    spec : str or None
        The spec string that loads it again (``None`` for a backend given as an object).
    """

    backend: Backend
    device: Any
    label: str
    spec: str | None = None

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
        """A native result as a float64 NumPy array of its own (``None`` stays ``None``)."""
        return None if x is None else np.array(self.backend.to_numpy(x), dtype=np.float64)


def load_target(spec: str | Backend, *, device: Any = None) -> Target:
    """Load the backend a spec names and check it can run here.

    Parameters
    ----------
    spec : str, Backend or Backend class
        ``NAME[@DEVICE]``, ``module:attr[@DEVICE]``, ``file.py[:attr][@DEVICE]`` (see the
        module docstring), a backend object or a class (instantiated with no arguments).
    device : object, optional
        The device, for a backend object or a spec without ``@DEVICE``.

    Raises
    ------
    Unavailable
        The backend reports that it cannot run here, or this machine lacks the device.
    Broken
        Importing, constructing or asking the backend whether it is available crashed.
    ValueError
        An unknown name, a file that does not exist, a malformed device (see the module
        docstring), or a spec's ``@DEVICE`` and ``device`` that differ.
    TypeError
        The spec names something that is not a backend.

    Examples
    --------
    >>> load_target("numpy").label
    'numpy'
    """
    if not isinstance(spec, str):
        label = spec.__name__ if isinstance(spec, type) else type(spec).__name__
        try:
            backend = instantiate(spec, label)
        except dc.BrokenBackendError as exc:
            raise Broken(str(exc)) from exc
        return _checked(Target(backend, device, label))
    name, sign, at = spec.partition("@")
    if sign and not at:
        raise ValueError(f"backend spec {spec!r} names no device after '@'; give one "
                         f"(NAME@cuda, NAME@cuda:1) or leave '@' out for the default")
    if at and device is not None and device != at:
        raise ValueError(f"backend spec {spec!r} names device {at!r} and device={device!r} "
                         f"another; give the device once")
    device = at or device
    if is_file_spec(name):
        return _checked(Target(_from_file(name), device, spec, spec))
    try:
        backend = dc.get_backend(name, require_available=False)
    except dc.BrokenBackendError as exc:
        raise Broken(str(exc)) from exc
    return _checked(Target(backend, device, spec, spec))


def is_file_spec(name: str) -> bool:
    """Whether a spec (without ``@DEVICE``) names a Python file rather than a module."""
    path = name.partition(":")[0] if name.count(":") == 1 else name
    return path.endswith(".py") or "/" in path or "\\" in path


def _from_file(name: str) -> Backend:
    """The backend a ``file.py[:attr]`` spec names; the file is imported as a module of its
    own (its name derived from its resolved path, so two files never collide)."""
    path_text, _, attr = name.partition(":") if name.count(":") == 1 else (name, "", "")
    path = Path(path_text).resolve()
    if not path.is_file():
        raise ValueError(f"backend file {path_text!r} does not exist")
    module = import_file(path)
    if attr:
        obj: Any = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise TypeError(f"{path_text} defines no {attr!r}")
            obj = getattr(obj, part)
        return _instance(obj, name)
    own = [v for k, v in vars(module).items()
           if not k.startswith("_") and getattr(v, "__module__", None) == module.__name__
           and not isinstance(v, ModuleType)]
    found = [v for v in own if not missing_methods(v)]
    # A class with some of the protocol's methods is a backend in the making: say what it lacks.
    every = len(missing_methods(object))
    near = [f"{v.__name__} lacks {', '.join(missing_methods(v))}" for v in own
            if isinstance(v, type) and 0 < len(missing_methods(v)) < every]
    if not found and near:
        raise TypeError(f"{path_text} defines no backend: {'; '.join(near)} (inherit what "
                        f"you do not implement from dirac_core.reference.NumpyBackend)")
    if len(found) != 1:
        names = [getattr(v, "__name__", type(v).__name__) for v in found]
        what = f"several backends ({', '.join(names)})" if found else "no backend"
        raise TypeError(f"{path_text} defines {what}; name one as {path_text}:NAME")
    return _instance(found[0], name)


def _instance(obj: Any, label: str) -> Backend:
    try:
        return instantiate(obj, label)
    except dc.BrokenBackendError as exc:
        raise Broken(str(exc)) from exc


def import_file(path: Path) -> ModuleType:
    """Import the Python file ``path`` as a module of its own (once per resolved path).

    Raises
    ------
    Broken
        Importing it raised (a mistake in the file, or a library it needs is missing: a
        backend that may lack a library imports it lazily and says so in ``available()``).
    """
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = f"dirac_conformance_file_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TypeError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a crash, not a reason to skip: one line, not a traceback
        del sys.modules[name]
        raise Broken(f"{path} could not be imported: {exc!r}") from exc
    return module


def _checked(target: Target) -> Target:
    try:
        status = availability(target.backend, target.label)
    except dc.BrokenBackendError as exc:
        raise Broken(str(exc)) from exc
    if not status:
        raise Unavailable(f"{target.label}: {status.reason}")
    if target.device is not None:
        _check_device(target)
    return target


_MADE_UP = "dirac_conformance_no_such_device"


def _check_device(target: Target) -> None:
    """Whether the target's device can hold its arrays here (the module docstring's rule).

    Raises
    ------
    ValueError
        A malformed device, or one the backend does not know at all.
    Unavailable
        A device the backend knows that this machine cannot reach.
    """
    device = target.device
    if isinstance(device, str):
        try:
            device_name(device)
        except ValueError as exc:
            raise ValueError(f"{target.label}: {exc}") from None
    # In a dtype the backend declares: JAX without 64-bit mode refuses float64 on any device.
    probe = np.zeros(1, numpy_dtype(target.dtypes[0] if target.dtypes else "float64"))
    try:
        target.backend.from_numpy(probe, device)
        return
    except Exception as exc:  # each framework fails its own way on a missing device
        refusal = exc
    if isinstance(refusal, dc.DeviceUnavailableError):  # the backend's own word
        raise Unavailable(f"{target.label}: device {device!r} is not available here: "
                          f"{refusal}") from refusal
    # Out of the except block: the made-up name's refusal must not chain to this one.
    if isinstance(refusal, ValueError | TypeError) and _refused_as_made_up(target, probe,
                                                                          refusal):
        raise ValueError(f"{target.label}: device {device!r} is not a device of this "
                         f"backend: {refusal}") from refusal
    raise Unavailable(f"{target.label}: device {device!r} is not available here: "
                      f"{refusal}") from refusal


def _refused_as_made_up(target: Target, probe: np.ndarray, refusal: Exception) -> bool:
    """Whether the backend refuses a made-up device of the same shape (its kind replaced)
    with the same exceptions, word for word once the made-up kind reads as the device's."""
    if not isinstance(target.device, str):
        return False
    kind, colon, index = target.device.partition(":")  # well-formed: device_name read it
    try:
        target.backend.from_numpy(probe, f"{_MADE_UP}{colon}{index}")
    except Exception as other:
        return _story(other).replace(_MADE_UP, kind) == _story(refusal)
    return False  # it takes any name: the refusal was about this one


def _story(exc: BaseException) -> str:
    """An exception and its causes, as types and messages."""
    links: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(links) < 8:
        links.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(links)
