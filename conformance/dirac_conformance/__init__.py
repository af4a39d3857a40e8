"""dirac_conformance: the hypothesis conformance suite for ``dirac_core`` backends.

Every op of the :class:`dirac_core.Backend` protocol, forward and vector-Jacobian product, is
checked against the float64 NumPy reference under a per-dtype tolerance model, together with
the defining identities (paper eq. 1 and 11) evaluated on the backend itself, and every call is
checked to leave its arguments untouched. Three ways in:

- ``dirac-conformance BACKEND [--profile ci|thorough] [--json FILE]`` (:mod:`.cli`);
- ``pytest --pyargs dirac_conformance --dirac-backend NAME`` (:mod:`.plugin`);
- from Python: ``run_suite("torch")`` returns a :class:`~.runner.Report` of
  :class:`~.runner.Result` objects; ``run_check(backend, "conv", "float32")`` runs one.

``dirac-conformance --mutants`` runs the suite against deliberately faulty backends
(:mod:`.mutants`) and reports how many it catches; :func:`~.meta.hunt_all` does the same for
your own faulty backends and checks. Importing this package is cheap: the suite loads on first
use.
"""

from __future__ import annotations

from dirac_core.lazy import lazy_getattr

_LAZY = {
    "run_suite": "runner",
    "run_check": "runner",
    "profile_settings": "runner",
    "format_table": "runner",
    "Result": "runner",
    "Report": "runner",
    "load_target": "target",
    "Target": "target",
    "Unavailable": "target",
    "CHECKS": "checks",
    "Check": "checks",
    "Case": "case",
    "Operand": "case",
    "Output": "tolerance",
    "Mismatch": "tolerance",
    "RTOL": "tolerance",
    "hunt": "meta",
    "hunt_all": "meta",
    "Kill": "meta",
    "load_xfails": "xfails",
    "Xfail": "xfails",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
