"""Lazy package attributes (PEP 562): public names defined in submodules, imported on first use.

The packages use it to keep ``import package`` cheap (no torch, no hypothesis) while offering
their main names at the top level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str],
                 namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping
        Each public name -> the submodule (relative to ``package``) that defines it.
    namespace : dict
        The package's ``globals()``: a name, once imported, is stored there, so later accesses
        do not come back here.

    Returns
    -------
    callable
        ``__getattr__(name)``, raising ``AttributeError`` for a name not in ``names``.

    Examples
    --------
    >>> namespace: dict = {}
    >>> getattr_ = lazy_getattr("dirac_core", {"dirac_tensor": "delta"}, namespace)
    >>> getattr_("dirac_tensor").__name__, "dirac_tensor" in namespace
    ('dirac_tensor', True)
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        namespace[name] = value
        return value

    return __getattr__
