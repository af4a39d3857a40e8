"""The strategies reach the cases the suite promises to cover."""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings

from dirac_conformance import strategies as s
from dirac_conformance.case import Case
from dirac_conformance.dtypes import round_to

# Derandomized: what generation reaches is a property of the strategies, checked the same way
# in every run (an unseeded search for a rare case fails now and then).
SEARCH = settings(database=None, max_examples=2000, derandomize=True,
                  suppress_health_check=list(HealthCheck))
FEW = settings(database=None, max_examples=100, phases=[Phase.generate], derandomize=True,
               suppress_health_check=list(HealthCheck))


def _kernel(case: Case) -> tuple[int, ...]:
    return case.operands["w"].values.shape[2:]


def _indivisible(case: Case) -> bool:
    """Per-group output and input counts of a Dirac tensor case, neither dividing the other."""
    out, inp = case.kwargs["shape"][0] // case.kwargs["groups"], case.kwargs["shape"][1]
    return bool(out % inp and inp % out)


def _has_tie(w: np.ndarray, eps: float) -> bool:
    rows = np.abs(w.reshape(len(w), -1))
    return bool(((rows.max(axis=1) == eps) & ((rows > 0).sum(axis=1) == 1)).any()
                or ((rows == eps / 2).sum(axis=1) == 4).any())


COVERAGE: list[tuple[str, Callable[[str], Any], Callable[[Case], bool]]] = [
    ("same padding with an even, dilated kernel", s.conv_cases,
     lambda c: c.kwargs["padding"] == "same" and any(k % 2 == 0 for k in _kernel(c))
     and max(c.kwargs["dilation"]) > 1),
    ("asymmetric (left, right) pairs with stride", s.conv_cases,
     lambda c: isinstance(c.kwargs["padding"], tuple) and any(
         isinstance(p, tuple) and p[0] != p[1] for p in c.kwargs["padding"])
     and max(c.kwargs["stride"]) > 1),
    ("3 spatial dims, groups and a bias", s.conv_cases,
     lambda c: len(_kernel(c)) == 3 and c.kwargs["groups"] > 1
     and c.operands["bias"] is not None),
    ("a plain matrix (0 spatial dims)", s.conv_cases, lambda c: len(_kernel(c)) == 0),
    ("grouped Dirac tensor whose channel counts divide neither way", s.dirac_tensor_cases,
     lambda c: c.kwargs["groups"] > 1 and _indivisible(c)),
    ("an all-zero filter next to a huge one", s.normalize_cases,
     lambda c: (np.abs(c.operands["w"].values).reshape(len(c.operands["w"].values), -1)
                .max(axis=1) == 0).any() and np.abs(c.operands["w"].values).max() > 1e20),
    ("per-channel float64 alpha with normalize=False", s.dirac_weight_cases,
     lambda c: c.operands["alpha"].dtype == "float64" and c.operands["alpha"].values.ndim == 1
     and not c.kwargs["normalize"]),
    ("exact zeros of both signs in an NCReLU input, axis not 1", s.ncrelu_cases,
     lambda c: c.kwargs["axis"] not in (1, -len(c.operands["x"].values.shape) + 1)
     and (np.signbit(c.operands["x"].values) & (c.operands["x"].values == 0)).any()
     and (~np.signbit(c.operands["x"].values) & (c.operands["x"].values == 0)).any()),
    ("zero variance with gamma < 0", s.fold_cases,
     lambda c: (c.operands["var"].values == 0).any() and (c.operands["gamma"].values < 0).any()),
    ("a filter whose norm is exactly eps (the tie)", s.normalize_cases,
     lambda c: _has_tie(c.array("w"), c.kwargs["eps"])),
    ("eps beyond float32's range", s.normalize_cases, lambda c: c.kwargs["eps"] > 3.5e38),
    ("eps below float32's smallest subnormal", s.dirac_weight_cases,
     lambda c: c.kwargs["eps"] < 7e-46),
    ("an empty batch", s.conv_cases, lambda c: c.array("x").shape[0] == 0),
    ("an empty batch in an identity", s.identity_cases, lambda c: c.array("x").shape[0] == 0),
    ("a long sum whose partials overflow float16", s.conv_cases,
     lambda c: c.array("x").size > s.LONG and (c.array("w") < 0).any()
     and np.abs(c.array("x")).max() == 64),
    ("a long filter of equal values", s.normalize_cases,
     lambda c: c.array("w").size >= s.LONG and np.unique(c.array("w")).size == 1),
    ("zero variance with eps below float16's range", s.fold_cases,
     lambda c: (c.array("var") == 0).any() and 0 < c.kwargs["eps"] < 3e-8),
    ("an identity with an even kernel and dilation", s.identity_cases,
     lambda c: any(k % 2 == 0 for k in c.kwargs["kernel"]) and max(c.kwargs["dilation"]) > 1),
]


GENERATE = settings(database=None, max_examples=2000, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck))

REACHED: list[tuple[str, Callable[..., Any], Callable[[Case], bool]]] = [
    ("a batch past a chunk of 8", s.conv_cases, lambda c: c.array("x").shape[0] in (9, 17)),
    ("an output past a tile of 16", s.conv_cases,
     lambda c: c.array("x").ndim > 2 and s.conv_output(
         c.array("x").shape, c.array("w").shape, c.kwargs)[-1] in (17, 33, 65)),
    ("channels per group a multiple of 8", s.conv_cases,
     lambda c: c.array("w").shape[1] in (8, 32)),
    ("a filter one block of 256 and more long", s.normalize_cases,
     lambda c: c.array("w").size // len(c.array("w")) in (257, 509, 1031)),
    ("a filter with NaN or inf next to a finite one", s.normalize_cases,
     lambda c: not np.isfinite(c.array("w")).all()
     and np.isfinite(c.array("w").reshape(len(c.array("w")), -1)).all(axis=1).any()),
    ("NCReLU input with NaN and -inf", s.ncrelu_cases,
     lambda c: np.isnan(c.array("x")).any() and (c.array("x") == -np.inf).any()),
    ("a float16 per-channel alpha of float32 weights", s.dirac_weight_cases,
     lambda c: c.operands["alpha"].dtype == "float16" and c.operands["alpha"].values.ndim == 1),
]


@pytest.mark.parametrize(("what", "strategy", "wanted"), REACHED, ids=[c[0] for c in REACHED])
def test_generation_reaches(what: str, strategy: Callable[..., Any],
                            wanted: Callable[[Case], bool]) -> None:
    """Reached within two thousand generated examples (the first one found, unshrunk), from a
    fixed seed: the rarest of these shows up about once in 400 examples, so an unseeded search
    of a few hundred would miss it in one run of two. The seed does not fix the draws: hypothesis
    also draws integer and float literals it finds in the project's loaded modules, so any new
    literal there changes them (a thousand examples once missed, after such a change)."""
    strategy_ = strategy("float32", declared=("float32", "float16"))
    assert wanted(find(strategy_, wanted, settings=GENERATE, random=Random(0))), what


def test_layouts_reach_every_kind_for_every_array_operand() -> None:
    from dirac_conformance.checks import CHECKS
    from dirac_conformance.layouts import LAYOUTS

    seen = set()

    @FEW
    @given(CHECKS["ncrelu_vjp"].cases("float32", ("float32",)))
    def look(case: Case) -> None:
        seen.update((name, op.layout) for name, op in case.operands.items())

    look()
    assert seen == {(name, layout) for name in ("g", "x") for layout in LAYOUTS}


@pytest.mark.parametrize("declared", [("float32",), ("float32", "float16", "bfloat16")])
def test_scales_come_only_in_declared_dtypes(declared: tuple[str, ...]) -> None:
    seen = set()

    @FEW
    @given(s.dirac_weight_cases("float32", declared=declared))
    def collect(case: Case) -> None:
        for name in ("alpha", "beta"):
            op = case.operands[name]
            if not op.python:
                seen.add(op.dtype)

    collect()
    assert seen == set(declared)


@pytest.mark.parametrize(("what", "strategy", "wanted"), COVERAGE, ids=[c[0] for c in COVERAGE])
def test_strategy_reaches(what: str, strategy: Callable[[str], Any],
                          wanted: Callable[[Case], bool]) -> None:
    assert wanted(find(strategy("float32"), wanted, settings=SEARCH, random=Random(0)))


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_operand_values_are_exact_in_their_dtype(dtype: str) -> None:
    case = find(s.conv_cases(dtype, vjp=True), lambda c: c.operands["x"].values.size > 4,
                settings=SEARCH, random=Random(0))
    for op in case.operands.values():
        if op is not None:
            assert np.array_equal(round_to(op.values, dtype), op.values)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_sliced_layout_has_a_unit_innermost_stride_over_unpacked_rows(backend: str) -> None:
    """The view a kernel checking only ``stride(-1) == 1`` misreads: right values, innermost
    stride one, not contiguous, and NaN right after each row in the buffer."""
    from dirac_conformance.layouts import native
    from dirac_conformance.target import load_target

    if backend == "torch":
        pytest.importorskip("torch")
    target = load_target(backend)
    values = np.arange(24.0).reshape(2, 3, 4)
    x = native(target, values, "float32", "sliced")
    np.testing.assert_array_equal(target.to_numpy(x), values)
    strides = x.stride() if backend == "torch" else tuple(n // x.itemsize for n in x.strides)
    assert strides == (30, 6, 1)
    first_row_and_next = (np.lib.stride_tricks.as_strided(x, (5,), (x.itemsize,))
                          if backend == "numpy" else x.as_strided((5,), (1,)).numpy())
    assert np.isnan(first_row_and_next[4])
