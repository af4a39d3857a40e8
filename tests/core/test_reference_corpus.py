"""The reference gives, bit for bit, the outputs stored in its corpus.

``tests/core/data/reference_corpus.npz`` holds the NumPy reference's outputs on a few hundred
inputs drawn from every op's conformance strategy, forward and VJP, in float64, float32 and
float16 (``scripts/reference_corpus.py`` wrote it). Any change to the reference's arithmetic,
even one rounding or the sign of a zero, fails here; a change that is meant must regenerate
the corpus in the same commit and say why.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CORPUS = Path(__file__).parent / "data" / "reference_corpus.npz"
# The script that wrote the corpus reads its cases back (stored_inputs) and calls the reference
# (call): the test and a --restate read them by one rule.
_spec = importlib.util.spec_from_file_location(
    "reference_corpus", Path(__file__).parents[2] / "scripts" / "reference_corpus.py")
assert _spec is not None and _spec.loader is not None
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)
OPS = ("dirac_tensor", "normalize_filters", "dirac_weight", "ncrelu", "conv", "fold_batchnorm",
       "normalize_filters_vjp", "dirac_weight_vjp", "ncrelu_vjp", "conv_vjp")


@pytest.fixture(scope="module")
def corpus() -> Any:
    with np.load(CORPUS) as stored:
        return {k: stored[k] for k in stored.files}


def _same_bits(got: Any, want: np.ndarray) -> bool:
    got = np.asarray(got)
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("op", OPS)
def test_reference_outputs_are_bit_identical_to_the_corpus(corpus, op):
    cases = [(i, c) for i, c in enumerate(json.loads(str(corpus["meta"]))) if c["op"] == op]
    assert len(cases) >= 20, f"the corpus holds only {len(cases)} cases of {op}"
    assert {c["dtype"] for _, c in cases} == {"float64", "float32", "float16"}
    for i, case in cases:
        outputs = script.call(op, case["dtype"], *script.stored_inputs(corpus, i, case))
        assert [o is not None for o in outputs] == case["outputs"], (i, case)
        for j, got in enumerate(outputs):
            if got is not None:
                assert _same_bits(got, corpus[f"{i}/out{j}"]), (
                    f"case {i} ({op}, {case['dtype']}, {case['kwargs']}): output {j} differs")


def test_a_changed_bit_is_caught(corpus):
    """The comparison sees a one-ulp change and a zero's sign."""
    want = corpus["0/out0"] if "0/out0" in corpus else next(
        v for k, v in corpus.items() if k.endswith("out0"))
    assert _same_bits(want.copy(), want)
    flipped = want.copy().reshape(-1)
    flipped.view(np.uint8)[0] ^= 1
    assert not _same_bits(flipped.reshape(want.shape), want)
    assert not _same_bits(np.array(-0.0), np.array(0.0))
