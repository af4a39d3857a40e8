"""Write the reference corpus: the NumPy reference's outputs on the conformance suite's inputs.

``tests/core/test_reference_corpus.py`` recomputes every stored case and compares the result
with the stored one bit for bit, so a rewrite of the reference's maths (a new array namespace,
a memory-bounded convolution) must give exactly the numbers it gave before. The cases are
drawn from every op's conformance strategy (forward and VJP), in every dtype the reference
declares, with a fixed hypothesis seed (at most two of the suite's long sums per op and
dtype, to keep the file small); only cases whose inputs and outputs are all finite are
kept (the corpus pins arithmetic, not the handling of inf and NaN, which the spec may refine).

Regenerate it only when the reference is *meant* to change, from the commit before the change:

    python scripts/reference_corpus.py --write

When a rule of the spec changes what the reference gives on the stored inputs (the sign of a
zero, say), ``--restate`` keeps the cases and recomputes their outputs, printing how many
entries of each op changed and whether any changed beyond the sign of a zero; with
``--write`` it stores them:

    python scripts/reference_corpus.py --restate [--write]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings

import dirac_core as dc
from dirac_conformance.case import Case
from dirac_conformance.checks import CHECKS
from dirac_core.reference import NumpyBackend

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "core" / "data" / "reference_corpus.npz"
OPS = ("dirac_tensor", "normalize_filters", "dirac_weight", "ncrelu", "conv", "fold_batchnorm",
       "normalize_filters_vjp", "dirac_weight_vjp", "ncrelu_vjp", "conv_vjp")
PER_OP_AND_DTYPE = 12
LONG_PER_OP_AND_DTYPE = 2  # the suite's long sums are large: a few of them pin accumulation
LARGE = 2000  # elements: a case this large counts as long


def draw_cases(op: str, dtype: str, count: int) -> list[Case]:
    """``count`` cases of ``op``'s strategy in ``dtype``, the same ones on every run."""
    found: list[Case] = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(CHECKS[op].strategy(dtype))
    def collect(case: Case) -> None:
        found.append(case)

    collect()
    return found


def call(op: str, dtype: str, operands: dict[str, Any], kwargs: dict[str, Any]) -> list[Any]:
    """The reference's outputs of ``op`` as a list (``None`` kept)."""
    if op == "dirac_tensor":
        return [dc.dirac_tensor(kwargs["shape"], groups=kwargs["groups"],
                                policy=kwargs["policy"], dtype=dtype)]
    with np.errstate(all="ignore"):  # intermediate overflow is part of what is pinned
        out = getattr(dc, op)(**operands, **kwargs)
    return list(out) if isinstance(out, tuple) else [out]


def _finite(values: list[Any]) -> bool:
    return all(v is None or isinstance(v, float) or bool(np.isfinite(v).all()) for v in values)


def _jsonable(value: Any) -> Any:
    return list(map(_jsonable, value)) if isinstance(value, tuple | list) else value


def build() -> dict[str, np.ndarray]:
    """Every case as arrays ``"<i>/<operand>"`` and ``"<i>/out<j>"``, plus ``"meta"``."""
    arrays: dict[str, np.ndarray] = {}
    meta = []
    target_dtypes = NumpyBackend.dtypes
    for op in OPS:
        for dtype in target_dtypes:
            long = 0
            for case in draw_cases(op, dtype, PER_OP_AND_DTYPE):
                size = sum(o.values.size for o in case.operands.values() if o is not None)
                if size > LARGE:
                    long += 1
                    if long > LONG_PER_OP_AND_DTYPE:
                        continue
                operands = {name: None if o is None else (
                    float(o.values) if o.python else o.values.astype(o.dtype))
                    for name, o in case.operands.items()}
                outputs = call(op, dtype, operands, case.kwargs)
                if not _finite([*operands.values(), *outputs]):
                    continue
                i = len(meta)
                for name, value in operands.items():
                    if value is not None and not isinstance(value, float):
                        arrays[f"{i}/{name}"] = value
                for j, value in enumerate(outputs):
                    if value is not None:
                        arrays[f"{i}/out{j}"] = np.asarray(value)
                meta.append({
                    "op": op, "dtype": dtype, "kwargs": _jsonable(case.kwargs),
                    "operands": {k: ("none" if v is None else "python" if isinstance(v, float)
                                     else "array") for k, v in operands.items()},
                    "python": {k: v for k, v in operands.items() if isinstance(v, float)},
                    "outputs": [v is not None for v in outputs],
                })
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def restate() -> dict[str, np.ndarray]:
    """The stored cases with their outputs recomputed; prints what changed, per op."""
    with np.load(CORPUS) as stored:
        arrays = {k: stored[k] for k in stored.files}
    changed: dict[str, list[int]] = {}  # op -> [entries changed, of which beyond a zero's sign]
    for i, case in enumerate(json.loads(str(arrays["meta"]))):
        outputs = call(case["op"], case["dtype"], *stored_inputs(arrays, i, case))
        for j, value in enumerate(outputs):
            if value is None:
                continue
            new, old = np.asarray(value), arrays[f"{i}/out{j}"]
            bits = new.view(f"u{new.itemsize}") != old.view(f"u{old.itemsize}")
            count = changed.setdefault(case["op"], [0, 0])
            count[0] += int(bits.sum())
            count[1] += int((new[bits] != old[bits]).sum())  # -0.0 == 0.0
            arrays[f"{i}/out{j}"] = new
    for op, (entries, values) in changed.items():
        if entries:
            print(f"{op}: {entries} entries changed, {values} of them beyond the sign of a zero")
    return arrays


def stored_inputs(arrays: dict[str, np.ndarray], i: int,
                  case: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operands and keyword arguments of stored case ``i`` (its entry ``case`` of the
    metadata), as :func:`call` takes them."""
    operands = {name: {"none": None, "python": case["python"].get(name),
                       "array": arrays.get(f"{i}/{name}")}[kind]
                for name, kind in case["operands"].items()}
    return operands, {k: _tuples(v) for k, v in case["kwargs"].items()}


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the API was called with."""
    return tuple(map(_tuples, value)) if isinstance(value, list) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {CORPUS.name}")
    parser.add_argument("--restate", action="store_true",
                        help="keep the stored cases, recompute their outputs")
    args = parser.parse_args()
    arrays = restate() if args.restate else build()
    count = len(json.loads(str(arrays["meta"])))
    if args.write:
        np.savez_compressed(CORPUS, **arrays)
        print(f"wrote {count} cases to {CORPUS} ({CORPUS.stat().st_size // 1024} KiB)")
    else:
        print(f"{count} cases (not written; --write writes them)")


if __name__ == "__main__":
    main()
