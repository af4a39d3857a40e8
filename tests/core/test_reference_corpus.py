"""The reference gives, bit for bit, the outputs stored in its corpus.

``tests/core/data/reference_corpus.npz`` holds the NumPy reference's outputs on a few hundred
inputs drawn from every op's conformance strategy, forward and VJP, in float64, float32 and
float16 (``scripts/reference_corpus.py`` wrote it). Any change to the reference's arithmetic,
even one rounding or the sign of a zero, fails here; a change that is meant must regenerate
the corpus in the same commit and say why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dirac_core as dc

CORPUS = Path(__file__).parent / "data" / "reference_corpus.npz"
OPS = ("dirac_tensor", "normalize_filters", "dirac_weight", "ncrelu", "conv", "fold_batchnorm",
       "normalize_filters_vjp", "dirac_weight_vjp", "ncrelu_vjp", "conv_vjp")


@pytest.fixture(scope="module")
def corpus() -> Any:
    with np.load(CORPUS) as stored:
        return {k: stored[k] for k in stored.files}


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the API was called with."""
    return tuple(map(_tuples, value)) if isinstance(value, list) else value


def _outputs(op: str, dtype: str, operands: dict[str, Any], kwargs: dict[str, Any]) -> list:
    if op == "dirac_tensor":
        return [dc.dirac_tensor(kwargs["shape"], groups=kwargs["groups"],
                                policy=kwargs["policy"], dtype=dtype)]
    with np.errstate(all="ignore"):  # intermediate overflow is part of what is pinned
        out = getattr(dc, op)(**operands, **kwargs)
    return list(out) if isinstance(out, tuple) else [out]


def _same_bits(got: Any, want: np.ndarray) -> bool:
    got = np.asarray(got)
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("op", OPS)
def test_reference_outputs_are_bit_identical_to_the_corpus(corpus, op):
    cases = [(i, c) for i, c in enumerate(json.loads(str(corpus["meta"]))) if c["op"] == op]
    assert len(cases) >= 20, f"the corpus holds only {len(cases)} cases of {op}"
    assert {c["dtype"] for _, c in cases} == {"float64", "float32", "float16"}
    for i, case in cases:
        operands = {}
        for name, kind in case["operands"].items():
            operands[name] = {"none": None, "python": case["python"].get(name),
                              "array": corpus.get(f"{i}/{name}")}[kind]
        kwargs = {k: _tuples(v) for k, v in case["kwargs"].items()}
        outputs = _outputs(op, case["dtype"], operands, kwargs)
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
