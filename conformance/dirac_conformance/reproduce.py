"""A failing case as a Python snippet the backend's author can paste and run.

The snippet rebuilds every operand from its exact float64 values (``repr`` round-trips) as the
suite's :class:`~dirac_conformance.case.Case`, hands them to the backend in the tested dtype and
memory layout exactly as the check did, calls the op and the float64 reference the way the check
calls them (``eps`` brought into the working dtype's range first, as the spec says), asserts
that the call left its inputs unchanged, and finally reruns the check itself, which raises with
the worst element, ``|got - expected|`` and the tolerance.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

import dirac_core as dc
from dirac_core.normalize import working_eps

from .case import Case, Operand

_INLINE = 32  # larger operands with a recipe are rebuilt from it, not printed

_IDENTITY = {
    "identity_eq1": (
        "delta = dc.dirac_tensor(({c}, {c} // {groups}, *{kernel}), groups={groups}, "
        "dtype={dtype!r}, backend=target.backend, device=target.device)\n"
        "got = dc.conv(native['x'], delta, padding=\"same\", dilation={dilation}, "
        "groups={groups}, backend=target.backend)\n"
    ),
    "identity_eq11": (
        "delta = dc.dirac_tensor(({c}, 2 * {c}, *{kernel}), dtype={dtype!r}, "
        "backend=target.backend, device=target.device)\n"
        "got = dc.conv(dc.ncrelu(native['x'], axis=1, backend=target.backend), delta, "
        "padding=\"same\", dilation={dilation}, backend=target.backend)\n"
    ),
}

_WORKING_EPS = ("normalize_filters", "normalize_filters_vjp", "dirac_weight",
                "dirac_weight_vjp")


def snippet(check: str, case: Case, target: Any) -> str:
    """Python source that reruns ``case`` of ``check`` on ``target`` and on the reference.

    Examples
    --------
    >>> from dirac_conformance.target import load_target
    >>> case = Case("float32", {"x": Operand(np.array([[-1.0, 0.5]]), "float32")}, {"axis": 1})
    >>> print(snippet("ncrelu", case, load_target("numpy")).splitlines()[-3])
    want = dc.ncrelu(x, axis=1)
    """
    loader = (f"target = load_target({target.spec!r})" if target.spec else
              f"target = load_target(YourBackend())  # the backend reported as {target.label}")
    body = [loader]
    for name, op in case.operands.items():
        body.append(f"{name} = {_literal(op)}")
    body.append(f"case = {_case(case)}")
    explicit = _explicit(check, case)
    if explicit:
        body.append("native = case.native(target)  # the backend's arrays, in the check's layouts")
        body += explicit
        body.append("print('got:', got, 'want:', want, sep='\\n')")
    body.append(f"CHECKS[{check!r}].run(target, case)  # the suite's comparison: raises with "
                f"|got - want| and the tolerance")
    code = "\n".join(body)
    return "\n".join(_imports(code, case)) + "\n\n" + code + "\n"


def _imports(code: str, case: Case) -> list[str]:
    """The import lines the snippet uses, and no others."""
    lines = ["import numpy as np"] if "np." in code else []
    if "dc." in code:
        lines += ["", "import dirac_core as dc"] if lines else ["import dirac_core as dc"]
    names = ["CHECKS", "load_target"]
    lines.append(f"from dirac_conformance import {', '.join(names)}")
    case_names = ["Case", "Operand"] + (["Sequel"] if case.sequel is not None else [])
    lines.append(f"from dirac_conformance.case import {', '.join(case_names)}")
    if re.search(r"(?<![\w.])s\.", code):
        lines.append("from dirac_conformance import strategies as s")
    if "round_to(" in code:
        lines.append("from dirac_conformance.dtypes import round_to")
    return lines


def _explicit(check: str, case: Case) -> list[str]:
    """The backend call and the reference call, written out (none for a stateful or a
    composite check)."""
    if case.sequel is not None or check not in (*dc.OPS, *_IDENTITY):
        return []  # a stateful or composite check: the check's own run below reproduces it
    if check in _IDENTITY:
        x = case.operands["x"]
        channels = 0 if x is None else x.values.shape[1]
        kw = case.kwargs
        lines = _IDENTITY[check].format(c=channels, dtype=case.dtype, **kw).splitlines()
        return [*lines, *_unchanged(case), "want = x"]
    if check == "dirac_tensor":
        kw = dict(case.kwargs)
        shape = kw.pop("shape")
        rest = "".join(f", {k}={v!r}" for k, v in kw.items())
        return [f"got = dc.dirac_tensor({shape!r}{rest}, dtype={case.dtype!r}, "
                f"backend=target.backend, device=target.device)",
                f"want = dc.dirac_tensor({shape!r}{rest})"]
    names = list(case.operands)
    native = ", ".join(f"{n}" if _python(case.operands[n]) else f"native[{n!r}]"
                       for n in names)
    plain = ", ".join(names)
    kwargs = "".join(f", {k}={v!r}" for k, v in case.kwargs.items())
    ref_kwargs, note = kwargs, ""
    if check in _WORKING_EPS:
        work = "float64" if case.dtype == "float64" else "float32"
        eps = working_eps(case.kwargs["eps"], work)
        ref_kwargs = "".join(f", {k}={(eps if k == 'eps' else v)!r}"
                             for k, v in case.kwargs.items())
        note = f"  # eps as the {work} working dtype takes it"
    elif check == "fold_batchnorm":
        work = "float64" if case.dtype == "float64" else "float32"
        eps = float(np.dtype(work).type(case.kwargs["eps"]))
        ref_kwargs, note = f", eps={eps!r}", f"  # eps rounded to {work}, as the spec takes it"
    return [f"got = dc.{check}({native}{kwargs}, backend=target.backend)",
            *_unchanged(case), f"want = dc.{check}({plain}{ref_kwargs}){note}"]


def _unchanged(case: Case) -> list[str]:
    """Asserts that the call left every array operand as it was."""
    return [f"assert np.array_equal(target.to_numpy(native[{n!r}]), {n}, equal_nan=True), "
            f"'{n} was modified in place'"
            for n, op in case.operands.items() if op is not None and not op.python]


def _python(op: Operand | None) -> bool:
    return op is None or op.python


def _case(case: Case) -> str:
    operands = ", ".join(f"{n!r}: {_operand(n, op)}" for n, op in case.operands.items())
    args = [repr(case.dtype), f"{{{operands}}}", repr(case.kwargs)]
    if case.op:
        args.append(f"op={case.op!r}")
    if case.sequel is not None:
        seq = case.sequel
        ops = ", ".join(f"{n!r}: Operand({_literal(o)}, {o.dtype!r})"
                        for n, o in seq.operands.items())
        args.append(f"sequel=Sequel({seq.kind!r}, {{{ops}}}, {seq.kwargs!r})")
    return f"Case({', '.join(args)})"


def _operand(name: str, op: Operand | None) -> str:
    if op is None:
        return "None"
    extra = ", python=True" if op.python else ""
    if op.layout != "contiguous":
        extra += f", layout={op.layout!r}"
    return f"Operand(np.asarray({name}), {op.dtype!r}{extra})"


def _literal(op: Operand | None) -> str:
    """The operand's float64 values as an exact Python expression."""
    if op is None:
        return "None"
    values = op.values
    if op.python:
        return repr(float(values))
    if values.size == 0:
        return f"np.zeros({values.shape!r})"
    flat = values.reshape(-1)
    first = flat[0]
    if values.size > 1 and bool(np.all((flat == first) | (np.isnan(flat) & np.isnan(first)))) \
            and not _has_signed_zero(values):
        return f"np.full({values.shape!r}, {_float(float(first))})"
    if op.recipe and values.size > _INLINE:
        return op.recipe
    return f"np.array({_nested(values.tolist())})"


def _nested(values: Any) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    return _float(float(values))


def _float(value: float) -> str:
    """``value`` as Python source: ``repr``, except the non-finite ones, which need NumPy."""
    if value != value:
        return "np.nan"
    if value in (float("inf"), float("-inf")):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(value)


def _has_signed_zero(values: np.ndarray) -> bool:
    return bool(np.any((values == 0) & np.signbit(values)))
