"""How far outside the tolerance a float16 result rounded twice lands, per op.

For each op with a tolerance (not an exact one), a faulty backend computes the op exactly
(float64) and rounds the result to float16 twice: ``round(round(3 y) / 3)``, an intermediate
rounded to the dtype and rounded again after one more operation, as a kernel that scales,
stores in half and unscales does. The suite's own check runs on it (profile ``ci``, float16)
and reports the worst error as a share of the tolerance: the margin by which a second rounding
fails (a correct backend stays at or below 1). ``docs/conformance.md`` quotes the table.

    python scripts/rounding_margins.py
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dirac_conformance.checks import CHECKS
from dirac_conformance.runner import run_check
from dirac_conformance.target import Target
from dirac_core.reference import NumpyBackend

OPS = ("normalize_filters", "dirac_weight", "conv", "fold_batchnorm", "normalize_filters_vjp",
       "dirac_weight_vjp", "conv_vjp")


def twice(y: Any) -> Any:
    """A float16 result rounded twice; other dtypes and None as they are."""
    if not isinstance(y, np.ndarray) or y.dtype != np.float16:
        return y
    return ((y.astype(np.float64) * 3).astype(np.float16).astype(np.float64) / 3).astype(
        np.float16)


def exact(op: str) -> Any:
    """The op computed in float64 from the (float16) inputs, then rounded twice."""

    def method(self: NumpyBackend, *args: Any, **kwargs: Any) -> Any:
        wide = [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float16
                else a for a in args]
        usual = getattr(NumpyBackend, op)(self, *args, **kwargs)
        out = getattr(NumpyBackend, op)(self, *wide, **kwargs)
        if not isinstance(out, tuple):
            return twice(out.astype(usual.dtype))
        return tuple(None if o is None else (twice if i == 0 else np.asarray)(
            o.astype(u.dtype)) for i, (o, u) in enumerate(zip(out, usual, strict=True)))

    return method


def main() -> None:
    print("| op | worst error of a result rounded twice, x the tolerance |")
    print("|---|---|")
    for op in OPS:
        backend = type(f"RoundedTwice_{op}", (NumpyBackend,), {op: exact(op)})()
        result = run_check(Target(backend, None, op), CHECKS[op], "float16", profile="ci")
        print(f"| `{op}` | {result.worst:.3g} ({result.status}) |")


if __name__ == "__main__":
    main()
