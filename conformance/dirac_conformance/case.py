"""One generated example: the inputs of an op, held in float64 and handed out three ways.

Every array operand is stored as float64 values that are exactly representable in the dtype
it is handed to the backend in, so the backend (``native``, in the operand's memory layout),
the float64 reference (``reference``) and the error model (``absolute``) all see the same
numbers. A case of a stateful check also carries the op it calls and what changes before the
second call (:class:`Sequel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .layouts import native as laid_out
from .target import Target


@dataclass(frozen=True)
class Operand:
    """An input array: its float64 values and the dtype the backend receives it in.

    ``python=True`` hands a 0-d value over as a Python float (the API then passes the backend
    a float64 0-d array whatever the weight's dtype). ``recipe`` is a Python expression that
    rebuilds ``values`` exactly (with ``np``, ``s`` = :mod:`dirac_conformance.strategies` and
    ``round_to`` in scope), for reproducers of large operands.
    """

    values: np.ndarray
    dtype: str
    python: bool = False
    origin: str = ""
    recipe: str = ""
    layout: str = "contiguous"

    def __repr__(self) -> str:
        if self.python:
            return repr(float(self.values))
        where = "" if self.layout == "contiguous" else f" {self.layout}"
        if self.values.size <= 8:
            return f"{self.dtype}({self.values.tolist()!r}{where})"
        return f"{self.dtype}{list(self.values.shape)}<{self.origin}{where}>"


@dataclass(frozen=True)
class Sequel:
    """What a stateful check changes between two calls of the same op.

    ``kind``: ``"input"`` (``operands`` written into the first call's arrays in place),
    ``"result"`` (NaN written into the first call's results, then the op called again on fresh
    arrays) or ``"arguments"`` (the same weight array, with the new ``operands`` and
    ``kwargs``: other scales, ``eps`` or cotangent).
    """

    kind: str
    operands: dict[str, Operand] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, repr=False)
class Case:
    """The inputs of one call: named operands (``None`` allowed) and keyword arguments.

    Its printed form names each operand's values (small ones) or their origin (value kind
    and generator seed), enough to rebuild a failing example by hand.
    """

    dtype: str
    operands: dict[str, Operand | None]
    kwargs: dict[str, Any] = field(default_factory=dict)
    op: str = ""
    sequel: Sequel | None = None

    def array(self, name: str) -> np.ndarray:
        """The float64 values of operand ``name`` (which must not be None)."""
        op = self.operands[name]
        if op is None:
            raise KeyError(f"operand {name!r} is None in {self!r}")
        return op.values

    def native(self, target: Target) -> dict[str, Any]:
        """The operands as the backend's arrays (Python floats where so marked)."""
        return {name: _native(op, target) for name, op in self.operands.items()}

    def reference(self) -> dict[str, Any]:
        """The operands as float64 NumPy arrays for the reference."""
        return {name: None if op is None else op.values for name, op in self.operands.items()}

    def absolute(self, negate: tuple[str, ...] = ()) -> dict[str, Any]:
        """``|operand|`` (``-|operand|`` for names in ``negate``): inputs of the condition
        magnitude, the op evaluated without cancellation."""
        out = {}
        for name, op in self.operands.items():
            if op is not None:
                out[name] = -np.abs(op.values) if name in negate else np.abs(op.values)
            else:
                out[name] = None
        return out

    def then(self) -> Case:
        """The case of the second call of a stateful check: the sequel's operands and kwargs
        in place of the first call's."""
        if self.sequel is None:
            raise ValueError(f"{self!r} has no second call")
        return replace(self, operands={**self.operands, **self.sequel.operands},
                       kwargs={**self.kwargs, **self.sequel.kwargs}, sequel=None)

    def __repr__(self) -> str:
        ops = ", ".join(f"{k}={v!r}" for k, v in self.operands.items())
        kw = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        head = f"{self.op} " if self.op else ""
        tail = "" if self.sequel is None else f"; then {self.sequel!r}"
        return f"Case({head}{self.dtype}: {ops}; {kw}{tail})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # hypothesis prints falsifying examples with this hook; keep them one line.
        printer.text(repr(self))


def _native(op: Operand | None, target: Target) -> Any:
    if op is None:
        return None
    if op.python:
        return float(op.values)
    return laid_out(target, op.values, op.dtype, op.layout)
