"""The boundary examples: every check meets sizes past each tile, chunk and block on every
dtype, in every run, whatever hypothesis draws."""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import numpy as np
import pytest
from hypothesis import Phase, settings

from dirac_conformance import boundaries as b
from dirac_conformance import strategies as s
from dirac_conformance.case import Case
from dirac_conformance.checks import CHECKS
from dirac_conformance.layouts import LAYOUTS
from dirac_conformance.runner import run_check
from dirac_core.reference import NumpyBackend

DTYPES = ("float64", "float32", "float16", "bfloat16")

# One generated example: what a run meets besides it comes from the explicit phase.
ONE = settings(max_examples=1, phases=[Phase.explicit, Phase.generate], derandomize=True,
               database=None, deadline=None)


def _past(n: int, tile: int) -> bool:
    """``n`` leaves a partial last tile after at least one whole one."""
    return n > tile and n % tile != 0


def _conv_outputs(case: Case) -> tuple[int, ...]:
    return s.conv_output(case.array("x").shape, case.array("w").shape, case.kwargs)[2:]


def _spatial_lengths(check: str, case: Case) -> tuple[int, ...]:
    """The output lengths of the convolution a case runs (an identity keeps its input's)."""
    if check.startswith("conv"):
        return _conv_outputs(case)
    return case.array("x").shape[2:]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("check", ["conv", "conv_vjp", "identity_eq1", "identity_eq11"])
def test_convolutions_pass_every_tile_along_every_spatial_dim(check: str, dtype: str) -> None:
    lengths = [_spatial_lengths(check, c) for c in CHECKS[check].examples(dtype)]
    missing = [(ndim, dim, tile) for ndim in (1, 2, 3) for dim in range(ndim)
               for tile in b.TILES
               if not any(len(out) == ndim and _past(out[dim], tile) for out in lengths)]
    assert not missing, f"{check}/{dtype}: no output past (ndim, dim, tile) {missing}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("check", ["conv", "conv_vjp"])
def test_convolutions_pass_batch_chunks_and_channel_paths(check: str, dtype: str) -> None:
    cases = CHECKS[check].examples(dtype)
    batches = {c.array("x").shape[0] for c in cases}
    assert all(any(_past(n, chunk) for n in batches) for chunk in (8, 16)), batches
    per_group_in = {c.array("w").shape[1] for c in cases}
    per_group_out = {c.array("w").shape[0] // c.kwargs["groups"] for c in cases}
    for counts in (per_group_in, per_group_out):
        assert set(b.CHANNELS) <= counts, counts
        assert any(n % 32 == 0 for n in counts) and any(_past(n, 32) for n in counts)
    # A depthwise path (many groups of one input channel) and a generic loop over long
    # kernels are chosen by size: each needs a case of its own.
    assert any(c.kwargs["groups"] > 32 and c.array("w").shape[1] == 1 for c in cases)
    assert any(max(c.array("w").shape[2:], default=0) >= 7 and max(c.kwargs["stride"]) > 1
               for c in cases)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("check", ["normalize_filters", "normalize_filters_vjp",
                                   "dirac_weight", "dirac_weight_vjp", "fold_batchnorm"])
def test_filter_banks_pass_every_tile_and_a_block(check: str, dtype: str) -> None:
    weights = [c.array("weight" if check == "fold_batchnorm" else "w")
               for c in CHECKS[check].examples(dtype)]
    counts = {len(w) for w in weights}
    lengths = {w.size // len(w) for w in weights}
    assert all(any(_past(n, tile) for n in counts) for tile in b.TILES), counts
    assert any(_past(n, 256) for n in lengths) and any(_past(n, 512) for n in lengths), lengths


@pytest.mark.parametrize("dtype", DTYPES)
def test_dirac_tensors_and_ncrelu_pass_the_tiles(dtype: str) -> None:
    shapes = [c.kwargs["shape"] for c in CHECKS["dirac_tensor"].examples(dtype)]
    assert all(any(_past(shape[0], tile) for shape in shapes) for tile in b.TILES), shapes
    for check in ("ncrelu", "ncrelu_vjp"):
        sizes = [c.array("x").shape for c in CHECKS[check].examples(dtype)]
        assert all(any(_past(n, tile) for shape in sizes for n in shape) for tile in b.TILES)
        assert any(shape[0] > 8 for shape in sizes), sizes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("check", list(CHECKS))
def test_every_check_has_boundary_examples_in_every_layout(check: str, dtype: str) -> None:
    cases = CHECKS[check].examples(dtype)
    assert cases and all(c.dtype == dtype for c in cases)
    if check == "dirac_tensor":
        return  # no array operands
    slots = [op.layout for c in cases for op in c.operands.values()
             if op is not None and not op.python]
    if check.startswith("state_"):  # its ops' cases, a few of them: some non-contiguous
        assert set(slots) - {"contiguous"}, slots
    else:  # the layouts in turn
        assert len(set(slots)) == min(len(LAYOUTS), len(slots)), slots


@pytest.mark.parametrize("check", ["state_input", "state_result", "state_arguments"])
def test_stateful_checks_call_every_op_they_cover_on_a_boundary_case(check: str) -> None:
    cases = CHECKS[check].examples("float32")
    ops = [c.op for c in cases]
    assert len(set(ops)) == len(ops) and all(c.sequel is not None for c in cases)
    for case in cases:
        first = repr(replace(case, op="", sequel=None))
        assert first in {repr(c) for c in CHECKS[case.op].examples("float32")}, case


class RowTileDropped(NumpyBackend):
    """``conv`` of 2 or 3 spatial dims in tiles of 8 output rows, launched for ``H // 8`` of
    them: the last partial tile of an output more than 8 rows high stays zero."""

    def conv(self, x, w, bias, **kw):  # type: ignore[no-untyped-def]
        y = super().conv(x, w, bias, **kw)
        rows = y.shape[-2] if y.ndim > 3 else 0
        if rows > 8 and rows % 8:
            y = y.copy()
            y[..., rows // 8 * 8:, :] = 0
        return y


def test_the_boundary_examples_run_first_in_every_run() -> None:
    """A conv that drops its last partial tile of 8 rows passes on one small generated example
    but fails on the boundary examples, which the runner evaluates before it."""
    result = run_check(RowTileDropped(), "conv", "float32", ONE)
    assert result.status == "fail" and "y" in result.message, result
    passing = run_check("numpy", "conv", "float32", ONE)
    assert passing.status == "pass"
    assert passing.examples == len(CHECKS["conv"].examples("float32")) + 1


def test_without_the_explicit_phase_the_search_alone_runs() -> None:
    only_drawn = settings(ONE, phases=[Phase.generate])
    assert run_check("numpy", "conv", "float32", only_drawn).examples == 1


def test_boundary_operands_rebuild_from_their_recipes() -> None:
    """A failing boundary example's reproducer rebuilds large operands from their recipes."""
    import numpy as np

    from dirac_conformance.dtypes import round_to

    namespace = {"np": np, "s": s, "round_to": round_to}
    for check, dtype in product(("conv_vjp", "dirac_weight_vjp", "ncrelu_vjp"), DTYPES[:3]):
        for case in CHECKS[check].examples(dtype):
            for op in case.operands.values():
                if op is not None and not op.python and op.recipe:
                    rebuilt = eval(op.recipe, namespace)
                    assert np.array_equal(rebuilt, op.values, equal_nan=True), op.recipe


def test_a_result_that_is_no_tuple_is_quoted_on_one_line():
    # A multi-output op that returns one array: the message shows it, shortened, on one line.
    from dirac_conformance.checks import _outs
    from dirac_conformance.tolerance import Mismatch

    with pytest.raises(Mismatch) as raised:
        _outs(None, ("dw", "dalpha", "dbeta"), np.ones((4, 4, 3, 3)), (), (), "float64", ())
    message = str(raised.value)
    assert "\n" not in message and "got array([[[[1., 1., 1.], [1., 1., 1.]," in message
