"""The checks: for every op of the ``Backend`` protocol, forward and VJP, and for the two
defining identities, how to draw inputs and what to compare.

Each check calls the backend through the public API (``dc.op(..., backend=b)``), so the
backend receives canonical arguments exactly as it would from a user, and compares the result
with the float64 reference on the same (rounded) inputs under the tolerance model of
:mod:`dirac_conformance.tolerance`. Every native result must also have the expected dtype.
The identities are evaluated on the backend alone:

- paper eq. 1: ``conv(x, delta, padding="same") == x`` for every kernel size, even ones
  included, every dilation and grouping;
- paper eq. 11: ``conv(ncrelu(x), delta of shape (C, 2C, K...), padding="same") == x``;

both bit for bit, as the spec says they hold exactly. ``conv_subnormal`` holds the
convolution, its VJP and eq. 1 to the same rules on inputs, weights or cotangents that are
subnormal throughout (a flush to zero reads them as 0). Every call is also checked to leave its
arguments as they were: no op may modify its inputs (``docs/spec.md``), so each input array is
compared, bit for bit, before and after each call, forward and VJP.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

import dirac_core as dc
from dirac_core.normalize import working_eps
from dirac_core.validation import describe, dtype_name

from . import boundaries as b
from . import magnitudes
from . import strategies as s
from .case import Case
from .layouts import native as laid_out
from .target import Target
from .tolerance import Mismatch, Output, check_outputs

Natives = dict[str, Any] | None
"""The backend's arrays of a case's operands, when a stateful check reuses them."""


@dataclass(frozen=True)
class Check:
    """One op (or identity) under test.

    Attributes
    ----------
    name : str
        The op's name in :data:`dirac_core.OPS`, or ``identity_eq1`` / ``identity_eq11``.
    strategy : callable
        ``strategy(dtype)`` -> hypothesis strategy of :class:`Case`.
    evaluate : callable
        ``evaluate(target, case)`` -> the outputs to compare.
    examples : callable
        ``examples(dtype)`` -> the cases every run evaluates first, whatever hypothesis draws
        (:mod:`dirac_conformance.boundaries`); none by default.
    """

    name: str
    strategy: Callable[..., SearchStrategy[Case]]
    evaluate: Callable[..., list[Output]]
    examples: Callable[[str], list[Case]] = lambda dtype: []

    def cases(self, dtype: str, declared: tuple[str, ...]) -> SearchStrategy[Case]:
        """The strategy for ``dtype``, told which dtypes the backend declares (as
        ``strategy(dtype, declared=...)`` when it takes that keyword, else ``strategy(dtype)``),
        every array operand in a drawn memory layout."""
        try:
            params = list(inspect.signature(self.strategy).parameters.values())
        except (TypeError, ValueError):  # a callable without a signature: one parameter
            params = []
        takes = any(p.name == "declared" or p.kind == p.VAR_KEYWORD for p in params)
        base = self.strategy(dtype, declared=declared) if takes else self.strategy(dtype)
        return s.laid_out(base)

    def run(self, target: Target, case: Case) -> float:
        """Evaluate one case; return its worst error or raise :class:`Mismatch`."""
        return check_outputs(self.evaluate(target, case), case.dtype)


def _call(t: Target, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """``fn(**kwargs, backend=t.backend)``, raising :class:`Mismatch` if the backend changed
    any of the array arguments in place (no op may modify its arguments)."""
    before = _snapshots(t, kwargs)
    result = fn(**kwargs, backend=t.backend)
    _check_unchanged(t, kwargs, before, f"{fn.__name__} modified its argument {{name!r}} in "
                     "place{where}: no op may modify its arguments")
    return result


def _is_array(t: Target, value: Any) -> bool:
    return value is not None and not isinstance(value, float | int) and t.backend.owns(value)


def _snapshot(t: Target, value: Any) -> np.ndarray:
    return np.array(t.backend.to_numpy(value), dtype=np.float64, copy=True)


def _snapshots(t: Target, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    """float64 copies of the backend's arrays among ``arrays``."""
    return {k: _snapshot(t, v) for k, v in arrays.items() if _is_array(t, v)}


def _check_unchanged(t: Target, arrays: dict[str, Any], before: dict[str, np.ndarray],
                     message: str) -> None:
    """Raise :class:`Mismatch` with ``message`` (formatted with ``name`` and ``where``) if an
    array of ``arrays`` no longer holds, bit for bit, its snapshot in ``before``."""
    for name, old in before.items():
        new = _snapshot(t, arrays[name])
        if new.shape != old.shape or new.tobytes() != old.tobytes():
            changed: Any = np.flatnonzero(new.reshape(-1).view(np.int64) != old.reshape(-1).view(
                np.int64)) if new.shape == old.shape else []
            where = f" (first at flat index {int(changed[0])})" if len(changed) else ""
            raise Mismatch(message.format(name=name, where=where))


def _out(t: Target, name: str, native: Any, ref: Any, magnitude: Any, dtype: str,
         terms: int = 1, tolerance_dtype: str | None = None) -> Output:
    """An :class:`Output` from a native result, after checking its type and dtype
    (``tolerance_dtype``: the precision it is held to, when not the case's dtype)."""
    if native is not None and ref is not None:
        if not t.backend.owns(native):
            raise Mismatch(f"{name}: result is a {type(native).__name__}, not the backend's "
                           f"array", output=name)
        got_dtype = dtype_name(native.dtype)
        if got_dtype != dtype:
            raise Mismatch(f"{name}: result has dtype {got_dtype}, expected {dtype}", output=name)
    return Output(name, t.to_numpy(native), ref, magnitude, terms, tolerance_dtype, native)


def _outs(t: Target, names: tuple[str, ...], natives: Any, refs: Any, mags: Any,
          dtype: str | tuple[str, ...], terms: tuple[int, ...],
          tolerance: tuple[str | None, ...] | None = None) -> list[Output]:
    """:func:`_out` for each result of a multi-output op (a VJP, batch-norm folding);
    ``dtype`` is one expected dtype for all results or one per result."""
    if not isinstance(natives, tuple | list) or len(natives) != len(names):
        raise Mismatch(f"expected a tuple of {len(names)} results {names}, got "
                       f"{describe(natives, 200)}", output=", ".join(names))
    dtypes = (dtype,) * len(names) if isinstance(dtype, str) else dtype
    held = tolerance if tolerance is not None else (None,) * len(names)
    rows = zip(names, natives, refs, mags, dtypes, terms, held, strict=True)
    return [_out(t, name, got, ref, mag, dt, n, tol)
            for name, got, ref, mag, dt, n, tol in rows]


def _work(dtype: str) -> str:
    """The working dtype of data in ``dtype``: float64 for float64, else float32."""
    return "float64" if dtype == "float64" else "float32"


def _ref_kwargs(case: Case) -> dict[str, Any]:
    """The case's keyword arguments with ``eps`` as the spec says a backend takes it: in the
    working dtype, clamped into its positive finite range (``eps = 1e300`` on float32 data
    is float32's largest number). The float64 reference then computes what the spec says."""
    kw = dict(case.kwargs)
    kw["eps"] = working_eps(kw["eps"], _work(case.dtype))
    return kw


def _fold_eps(case: Case) -> float:
    """``eps`` of batch-norm folding as the spec takes it: rounded to the working dtype (it
    may round to 0; beyond the range it is inf, and the largest float64 gives the same zero
    scale)."""
    with np.errstate(over="ignore"):
        rounded = float(np.dtype(_work(case.dtype)).type(case.kwargs["eps"]))
    return min(rounded, float(np.finfo(np.float64).max))


def _scale_dtype(value: Any, dtype: str) -> str:
    """The dtype of a scale's gradient: the scale's own, or for a Python scalar the weight's
    working dtype (float64 for float64 weights, else float32), as ``dirac_core`` converts it."""
    if hasattr(value, "dtype"):
        return dtype_name(value.dtype)
    return "float64" if dtype == "float64" else "float32"


# ---------------------------------------------------------------------------- forward ops


def _dirac_tensor(t: Target, case: Case, native: Natives = None) -> list[Output]:
    kw = case.kwargs
    got = dc.dirac_tensor(kw["shape"], groups=kw["groups"], policy=kw["policy"],
                          dtype=case.dtype, backend=t.backend, device=t.device)
    ref = dc.dirac_tensor(kw["shape"], groups=kw["groups"], policy=kw["policy"])
    return [_out(t, "delta", got, ref, None, case.dtype)]


def _filter_size(case: Case) -> int:
    w = case.array("w")
    return max(1, int(w.size) // int(w.shape[0]))


def _normalize(t: Target, case: Case, native: Natives = None) -> list[Output]:
    native, ref, mag = native or case.native(t), case.reference(), case.absolute()
    got = _call(t, dc.normalize_filters, w=native["w"], eps=case.kwargs["eps"])
    eps = _ref_kwargs(case)["eps"]
    expected = dc.normalize_filters(ref["w"], eps=eps)
    magnitude = dc.normalize_filters(mag["w"], eps=eps)
    return [_out(t, "u", got, expected, magnitude, case.dtype, _filter_size(case))]


def _dirac_weight(t: Target, case: Case, native: Natives = None) -> list[Output]:
    native, ref, mag = native or case.native(t), case.reference(), case.absolute()
    got = _call(t, dc.dirac_weight, **native, **case.kwargs)
    expected = dc.dirac_weight(**ref, **_ref_kwargs(case))
    magnitude = dc.dirac_weight(**mag, **_ref_kwargs(case))
    return [_out(t, "w_hat", got, expected, magnitude, case.dtype, _filter_size(case) + 1)]


def _ncrelu(t: Target, case: Case, native: Natives = None) -> list[Output]:
    native, ref = native or case.native(t), case.reference()
    got = _call(t, dc.ncrelu, x=native["x"], **case.kwargs)
    y = _out(t, "y", got, dc.ncrelu(ref["x"], **case.kwargs), None, case.dtype)
    return [replace(y, signed_zeros=True)]


def _conv_terms(case: Case) -> int:
    w = case.array("w")
    return int(w.size) // int(w.shape[0]) + 1


def _conv(t: Target, case: Case, native: Natives = None) -> list[Output]:
    native, ref, mag = native or case.native(t), case.reference(), case.absolute()
    got = _call(t, dc.conv, **native, **case.kwargs)
    spoiled = ~np.isfinite(ref["x"])
    if not spoiled.any():
        expected = dc.conv(**ref, **case.kwargs)
        magnitude = dc.conv(**mag, **case.kwargs)
        return [_out(t, "y", got, expected, magnitude, case.dtype, _conv_terms(case))]
    # Non-finite input entries: every output whose window holds one must be non-finite,
    # whatever the weights there (0 * inf is NaN); the others are held as for finite input
    # (or may be non-finite: FFT and Winograd convolutions spread it).
    finite = {**ref, "x": np.where(spoiled, 0.0, ref["x"])}
    expected = dc.conv(**finite, **case.kwargs)
    reached = dc.conv(spoiled.astype(np.float64), np.ones_like(ref["w"]), **case.kwargs) > 0
    expected[reached] = np.nan
    magnitude = dc.conv(**{**mag, "x": np.where(spoiled, 0.0, mag["x"])}, **case.kwargs)
    out = _out(t, "y", got, expected, magnitude, case.dtype, _conv_terms(case))
    return [replace(out, nonfinite="any")]


def _fold(t: Target, case: Case, native: Natives = None) -> list[Output]:
    native, ref = native or case.native(t), case.reference()
    # b - mean with mean negated: |b| + |mean|, the bias magnitude without cancellation.
    mag = case.absolute(negate=("mean",))
    mag["var"] = ref["var"]
    got = _call(t, dc.fold_batchnorm, **native, **case.kwargs)
    expected = dc.fold_batchnorm(**ref, eps=_fold_eps(case))
    magnitude = dc.fold_batchnorm(**mag, eps=_fold_eps(case))
    return _outs(t, ("weight", "bias"), got, expected, magnitude, case.dtype, (1, 3))


# ---------------------------------------------------------------------------- VJPs


def _normalize_vjp(t: Target, case: Case, native: Natives = None) -> list[Output]:
    native, ref = native or case.native(t), case.reference()
    got = _call(t, dc.normalize_filters_vjp, g=native["g"], w=native["w"],
                eps=case.kwargs["eps"])
    eps = _ref_kwargs(case)["eps"]
    expected = dc.normalize_filters_vjp(ref["g"], ref["w"], eps=eps)
    magnitude = magnitudes.normalize_vjp(ref["g"], ref["w"], eps)
    out = _out(t, "dw", got, expected, magnitude, case.dtype, _filter_size(case))
    return [replace(out, nonfinite=_reached(ref["g"]))]


def _reached(g: np.ndarray) -> str:
    """How a result held to a cotangent ``g`` is checked where the reference is non-finite:
    a non-finite entry of ``g`` must make what it reaches non-finite, inf or NaN (which one
    depends on the order of arithmetic)."""
    return "ieee" if np.isfinite(g).all() else "any"


def _dirac_weight_vjp(t: Target, case: Case, native: Natives = None) -> list[Output]:
    native, ref, mag = native or case.native(t), case.reference(), case.absolute()
    got = _call(t, dc.dirac_weight_vjp, **native, **case.kwargs)
    kw = _ref_kwargs(case)
    expected = dc.dirac_weight_vjp(**ref, **kw)
    _, dalpha_mag, dbeta_mag = dc.dirac_weight_vjp(**mag, **kw)
    beta = magnitudes.per_channel(mag["beta"], ref["w"].ndim)
    dw_mag = beta * (
        magnitudes.normalize_vjp(ref["g"], ref["w"], kw["eps"]) if kw["normalize"] else mag["g"]
    )
    size = ref["w"].size
    dtypes = (case.dtype, *(_scale_dtype(native[k], case.dtype) for k in ("alpha", "beta")))
    held = (None, *(_coarser(d, _work(case.dtype)) for d in dtypes[1:]))
    outs = _outs(t, ("dw", "dalpha", "dbeta"), got, expected, (dw_mag, dalpha_mag, dbeta_mag),
                 dtypes, (_filter_size(case), size, size), held)
    # dalpha sums g at the taps: whether a non-finite g elsewhere (times delta's 0) reaches it
    # is left open by the spec, so only its finite elements are held.
    reached = _reached(ref["g"])
    loose = (reached, "free" if reached == "any" else "ieee", reached)
    return [replace(o, nonfinite=k) for o, k in zip(outs, loose, strict=True)]


_PRECISION = ("float64", "float32", "float16", "bfloat16")  # finest first


def _coarser(a: str, b: str) -> str:
    """The less precise of two dtypes: a scale's gradient is summed in the weight's working
    dtype and rounded to the scale's."""
    return max(a, b, key=_PRECISION.index)


def _ncrelu_vjp(t: Target, case: Case, native: Natives = None) -> list[Output]:
    native, ref = native or case.native(t), case.reference()
    got = _call(t, dc.ncrelu_vjp, g=native["g"], x=native["x"], **case.kwargs)
    expected = dc.ncrelu_vjp(ref["g"], ref["x"], **case.kwargs)
    return [replace(_out(t, "dx", got, expected, None, case.dtype), signed_zeros=True)]


def _conv_vjp(t: Target, case: Case, native: Natives = None) -> list[Output]:
    native, ref, mag = native or case.native(t), case.reference(), case.absolute()
    got = _call(t, dc.conv_vjp, **native, **case.kwargs)
    g, w = ref["g"], ref["w"]
    spoiled = ~np.isfinite(g)
    finite = {**ref, "g": np.where(spoiled, 0.0, g)}
    expected = list(dc.conv_vjp(**finite, **case.kwargs))
    magnitude = dc.conv_vjp(**{**mag, "g": np.abs(finite["g"])}, **case.kwargs)
    if spoiled.any():
        # A non-finite g[n, o, p] reaches dbias[o], the dx entries of its window and the dw
        # taps that meet an entry of x: not those that meet only padding, which a kernel
        # need not multiply (the reference's zero padding gives 0 * inf = NaN there).
        ones = {name: None if a is None else np.ones_like(a) for name, a in ref.items()}
        reach = dc.conv_vjp(**{**ones, "g": spoiled.astype(np.float64)}, **case.kwargs)
        for got_ref, count in zip(expected, reach, strict=True):
            if got_ref is not None:
                got_ref[count > 0] = np.nan
    reduced = g.size // g.shape[1]  # terms of dw and dbias: batch x output positions
    dx_terms = w.shape[0] // case.kwargs["groups"] * max(1, math.prod(w.shape[2:]))
    outs = _outs(t, ("dx", "dw", "dbias"), got, tuple(expected), magnitude, case.dtype,
                 (dx_terms, reduced, reduced))
    return [replace(o, nonfinite=_reached(g)) for o in outs]


# ---------------------------------------------------------------------------- identities


def _identity_eq1(t: Target, case: Case, native: Natives = None) -> list[Output]:
    x = case.array("x")
    kw = case.kwargs
    channels = x.shape[1]
    delta = dc.dirac_tensor((channels, channels // kw["groups"], *kw["kernel"]),
                            groups=kw["groups"], dtype=case.dtype, backend=t.backend,
                            device=t.device)
    arguments = {"x": (native or case.native(t))["x"], "w": delta}
    y = _call(t, dc.conv, **arguments, padding="same", dilation=kw["dilation"],
              groups=kw["groups"])
    out = _out(t, "conv(x, delta)", y, x, None, case.dtype)
    _check_detached(t, "conv", y, arguments)
    return [out]


def _identity_eq11(t: Target, case: Case, native: Natives = None) -> list[Output]:
    x = case.array("x")
    kw = case.kwargs
    channels = x.shape[1]
    delta = dc.dirac_tensor((channels, 2 * channels, *kw["kernel"]), dtype=case.dtype,
                            backend=t.backend, device=t.device)
    x_native = (native or case.native(t))["x"]
    doubled = _call(t, dc.ncrelu, x=x_native, axis=1)
    y = _call(t, dc.conv, x=doubled, w=delta, padding="same", dilation=kw["dilation"])
    out = _out(t, "conv(ncrelu(x), delta)", y, x, None, case.dtype)
    _check_detached(t, "conv(ncrelu(x), delta)", y, {"x": x_native, "ncrelu(x)": doubled,
                                                     "w": delta})
    return [out]


def _conv_subnormal(t: Target, case: Case, native: Natives = None) -> list[Output]:
    """``conv``, ``conv_vjp`` and the eq. 1 identity (on ``x``, with the convolution's kernel
    size, dilation and groups) on one case whose ``x``, ``w``, ``bias`` or ``g`` holds
    subnormal values: each held as its own check holds it."""
    arrays = native or case.native(t)
    forward = {name: a for name, a in arrays.items() if name != "g"}
    kw = case.kwargs
    identity = Case(case.dtype, {"x": case.operands["x"]},
                    {"kernel": case.array("w").shape[2:], "dilation": kw["dilation"],
                     "groups": kw["groups"]})
    parts = (("conv", _conv(t, replace(case, operands={n: o for n, o in case.operands.items()
                                                         if n != "g"}), forward)),
             ("conv_vjp", _conv_vjp(t, case, arrays)),
             ("identity_eq1", _identity_eq1(t, identity, {"x": arrays["x"]})))
    return [replace(o, name=f"{part}: {o.name}") for part, outs in parts for o in outs]


def _check_detached(t: Target, op: str, result: Any, arguments: dict[str, Any]) -> None:
    """Raise :class:`Mismatch` if writing NaN into ``result`` changes one of ``arguments``:
    a conv that hands back ``x`` itself for the Dirac tensor passes the identity bit for bit,
    and the stateful checks never call it with that weight."""
    before = _snapshots(t, arguments)
    _overwrite(result)
    _check_unchanged(t, arguments, before, f"writing NaN into the result of {op} changed its "
                     "argument {name!r}{where}: a result must not share memory with an "
                     "argument")


def _vjp_of(strategy: Callable[..., SearchStrategy[Case]]) -> Callable[..., Any]:
    return lambda dtype, declared=s.DECLARED: strategy(dtype, vjp=True, declared=declared)


def _declaring(strategy: Callable[..., SearchStrategy[Case]]) -> Callable[..., Any]:
    return lambda dtype, declared=s.DECLARED: strategy(dtype, declared=declared)


# ---------------------------------------------------------------------------- state


STATE_OPS = ("dirac_tensor", "normalize_filters", "dirac_weight", "ncrelu", "conv",
             "fold_batchnorm", "normalize_filters_vjp", "dirac_weight_vjp", "ncrelu_vjp",
             "conv_vjp")
"""The ops the stateful checks call twice."""


def _sequel_ops(kind: str) -> tuple[str, ...]:
    """The ops a stateful check of ``kind`` calls twice."""
    return {"input": STATE_OPS[1:], "result": STATE_OPS, "arguments": s.WITH_EPS}[kind]


def _sequel_examples(kind: str) -> Callable[[str], list[Case]]:
    def cases(dtype: str) -> list[Case]:
        ops = tuple(op for op in _sequel_ops(kind) if op in b.SEQUEL_OPS)
        return b.sequel_examples(kind, ops, {op: CHECKS[op].examples(dtype) for op in ops})
    return cases


def _sequel_strategy(kind: str) -> Callable[..., SearchStrategy[Case]]:
    ops = _sequel_ops(kind)

    def cases(dtype: str, declared: tuple[str, ...] = s.DECLARED) -> SearchStrategy[Case]:
        def of(op: str) -> SearchStrategy[Case]:
            first = CHECKS[op].cases(dtype, declared)
            return first.flatmap(lambda c: s.sequel_cases(kind, op, c, declared))
        return st.sampled_from(ops).flatmap(of)

    return cases


def _stateful(t: Target, case: Case, native: Natives = None) -> list[Output]:
    """Call ``case.op`` twice around the change ``case.sequel`` describes; every result of
    both calls must match the reference."""
    check, sequel = CHECKS[case.op], case.sequel
    assert sequel is not None
    arrays = dict(native or case.native(t))
    first = check.evaluate(t, case, arrays)
    if sequel.kind == "input":
        for name, op in sequel.operands.items():
            fresh = laid_out(t, op.values, op.dtype)
            try:
                arrays[name][...] = fresh
            except (TypeError, ValueError, AttributeError, NotImplementedError):
                arrays[name] = fresh  # immutable arrays (JAX): a new array of the same shape
        then = f"after writing new values into {', '.join(sequel.operands)}: "
        second = check.evaluate(t, case.then(), arrays)
    elif sequel.kind == "arguments":
        weight = arrays["w"]
        arrays.update(case.then().native(t))
        arrays["w"] = weight  # the very array of the first call
        then = "on the same w, with other " + ", ".join([*sequel.operands, *sequel.kwargs]) + ": "
        second = check.evaluate(t, case.then(), arrays)
    else:
        before = _snapshots(t, arrays)
        for out in first:
            _overwrite(out.native)
        # A result that is a view of an argument (``dw`` returned as ``g`` itself) passes
        # every comparison until the caller writes into it.
        _check_unchanged(t, arrays, before, f"writing NaN into the results of {case.op} "
                         "changed its argument {name!r}{where}: a result must not share memory "
                         "with an argument")
        then = "after writing NaN into the first call's results: "
        second = check.evaluate(t, case)
    # Read the first results again: a result must stay the caller's, not a buffer the second
    # call reuses (after "result", the caller itself wrote NaN into them).
    again = [] if sequel.kind == "result" else [
        replace(o, name=f"first call's result, read after the second call: {o.name}",
                got=t.to_numpy(o.native))
        for o in first if o.native is not None
    ]
    return ([replace(o, name=f"first call: {o.name}") for o in first]
            + [replace(o, name=f"second call, {then}{o.name}") for o in second] + again)


def _overwrite(result: Any) -> None:
    """NaN into a result the caller owns (immutable arrays, JAX's, cannot be written)."""
    if result is None:
        return
    with contextlib.suppress(TypeError, ValueError, AttributeError, NotImplementedError,
                             IndexError):
        result[...] = float("nan")


CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check("dirac_tensor", s.dirac_tensor_cases, _dirac_tensor, b.dirac_tensor_examples),
        Check("normalize_filters", s.normalize_cases, _normalize, b.normalize_examples),
        Check("dirac_weight", _declaring(s.dirac_weight_cases), _dirac_weight,
              b.dirac_weight_examples),
        Check("ncrelu", s.ncrelu_cases, _ncrelu, b.ncrelu_examples),
        Check("conv", s.conv_cases, _conv, b.conv_examples),
        Check("fold_batchnorm", s.fold_cases, _fold, b.fold_examples),
        Check("normalize_filters_vjp", _vjp_of(s.normalize_cases), _normalize_vjp,
              partial(b.normalize_examples, vjp=True)),
        Check("dirac_weight_vjp", _vjp_of(s.dirac_weight_cases), _dirac_weight_vjp,
              partial(b.dirac_weight_examples, vjp=True)),
        Check("ncrelu_vjp", _vjp_of(s.ncrelu_cases), _ncrelu_vjp,
              partial(b.ncrelu_examples, vjp=True)),
        Check("conv_vjp", _vjp_of(s.conv_cases), _conv_vjp, partial(b.conv_examples, vjp=True)),
        Check("identity_eq1", s.identity_cases, _identity_eq1, b.identity_examples),
        Check("identity_eq11", lambda d: s.identity_cases(d, grouped=False), _identity_eq11,
              partial(b.identity_examples, grouped=False)),
        Check("conv_subnormal", s.conv_subnormal_cases, _conv_subnormal,
              b.conv_subnormal_examples),
        Check("state_input", _sequel_strategy("input"), _stateful, _sequel_examples("input")),
        Check("state_result", _sequel_strategy("result"), _stateful,
              _sequel_examples("result")),
        Check("state_arguments", _sequel_strategy("arguments"), _stateful,
              _sequel_examples("arguments")),
    )
}
"""Every check, in the order the spec lists the ops, then the identities, then
``conv_subnormal`` (the convolution, its VJP and eq. 1 on subnormal values: a check of its own,
so that a backend that flushes subnormals, as XLA does on a CPU, lists it as a known failure
without hiding the other convolution checks), then the stateful checks (an op called twice:
around an input written in place, around its results written into, and on one weight array
with other scales, ``eps`` or cotangent)."""
