"""dirac_conformance: the hypothesis conformance suite for ``dirac_core`` backends.

Every op of the :class:`dirac_core.Backend` protocol, forward and vector-Jacobian product, is
checked against the float64 NumPy reference under a per-dtype tolerance model, together with
the defining identities (paper eq. 1 and 11) evaluated on the backend itself. Three ways in:

- ``dirac-conformance BACKEND [--profile ci|thorough] [--json FILE]`` (:mod:`.cli`);
- ``pytest --pyargs dirac_conformance --dirac-backend NAME`` (:mod:`.plugin`);
- from Python: ``run_suite(load_target("torch"))``.

``dirac-conformance --mutants`` runs the suite against deliberately faulty backends
(:mod:`.mutants`) and reports how many it catches. Importing this package is cheap: the suite
loads on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "run_suite": "runner",
    "run_check": "runner",
    "format_table": "runner",
    "load_target": "target",
    "Target": "target",
    "Unavailable": "target",
    "CHECKS": "checks",
    "RTOL": "tolerance",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dirac_conformance' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
