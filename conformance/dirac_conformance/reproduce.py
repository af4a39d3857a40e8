"""A failing case as a Python snippet the backend's author can paste and run.

The snippet rebuilds every operand from its exact float64 values (``repr`` round-trips), hands
them to the backend in the tested dtype exactly as the suite did, and prints the backend's
result next to the float64 reference's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .case import Case, Operand
from .target import Target

_INLINE = 32  # larger operands with a recipe are rebuilt from it, not printed

_IDENTITY = {
    "identity_eq1": (
        "delta = dc.dirac_tensor(({c}, {c} // {groups}, *{kernel}), groups={groups}, "
        "dtype={dtype!r}, backend=b, device=target.device)\n"
        "got = dc.conv(x_native, delta, padding=\"same\", dilation={dilation}, "
        "groups={groups}, backend=b)\n"
    ),
    "identity_eq11": (
        "delta = dc.dirac_tensor(({c}, 2 * {c}, *{kernel}), dtype={dtype!r}, backend=b, "
        "device=target.device)\n"
        "got = dc.conv(dc.ncrelu(x_native, axis=1, backend=b), delta, padding=\"same\", "
        "dilation={dilation}, backend=b)\n"
    ),
}


def snippet(check: str, case: Case, target: Target) -> str:
    """Python source that reruns ``case`` of ``check`` on ``target`` and on the reference.

    Examples
    --------
    >>> from dirac_conformance.case import Case, Operand
    >>> from dirac_conformance.target import load_target
    >>> case = Case("float32", {"x": Operand(np.array([[-1.0, 0.5]]), "float32")}, {"axis": 1})
    >>> print(snippet("ncrelu", case, load_target("numpy")).splitlines()[-2])
    want = dc.ncrelu(x=x, axis=1)
    """
    loader = (f"target = load_target({target.spec!r})" if target.spec else
              f"target = load_target(YourBackend())  # the backend reported as {target.label}")
    lines = ["import numpy as np", "import dirac_core as dc",
             "from dirac_conformance import load_target",
             "from dirac_conformance import strategies as s",
             "from dirac_conformance.dtypes import round_to", "", loader, "b = target.backend"]
    names = []
    for name, op in case.operands.items():
        names.append(name)
        lines.append(f"{name} = {_literal(op)}")
    if check in _IDENTITY:
        kw = case.kwargs
        lines.append(f"x_native = target.from_numpy(x, {case.dtype!r})")
        x = case.operands["x"]
        channels = 0 if x is None else x.values.shape[1]
        lines.append(_IDENTITY[check].format(c=channels, dtype=case.dtype, **kw).rstrip())
        lines += ["want = x", "print(target.to_numpy(got), want)"]
        return "\n".join(lines) + "\n"
    kwargs = ", ".join(f"{k}={v!r}" for k, v in case.kwargs.items())
    if check == "dirac_tensor":
        shape = case.kwargs["shape"]
        rest = ", ".join(f"{k}={v!r}" for k, v in case.kwargs.items() if k != "shape")
        lines += [f"got = dc.dirac_tensor({shape!r}, {rest}, dtype={case.dtype!r}, backend=b, "
                  f"device=target.device)", f"want = dc.dirac_tensor({shape!r}, {rest})",
                  "print(target.to_numpy(got), want)"]
        return "\n".join(lines) + "\n"
    native = ", ".join(f"{n}={_native(n, case.operands[n])}" for n in names)
    plain = ", ".join(f"{n}={n}" for n in names)
    sep = ", " if kwargs else ""
    lines += [f"got = dc.{check}({native}{sep}{kwargs}, backend=b)",
              f"want = dc.{check}({plain}{sep}{kwargs})",
              "print(got, want, sep='\\n')"]
    return "\n".join(lines) + "\n"


def _native(name: str, op: Operand | None) -> str:
    if op is None or op.python:
        return name
    return f"target.from_numpy({name}, {op.dtype!r})"


def _literal(op: Operand | None) -> str:
    """The operand's float64 values as an exact Python expression."""
    if op is None:
        return "None"
    values = op.values
    if op.python:
        return repr(float(values))
    if values.size == 0:
        return f"np.zeros({values.shape!r})"
    first = values.reshape(-1)[0]
    if values.size > 1 and bool(np.all(values == first)) and not _has_signed_zero(values):
        return f"np.full({values.shape!r}, {float(first)!r})"
    if op.recipe and values.size > _INLINE:
        return op.recipe
    body: Any = values.tolist()
    return f"np.array({body!r})"


def _has_signed_zero(values: np.ndarray) -> bool:
    return bool(np.any((values == 0) & np.signbit(values)))
