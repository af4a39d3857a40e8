"""Hypothesis strategies for the CuPy backend's tests: weights with scales and NCReLU inputs.

Values come from a seeded NumPy generator (hypothesis draws the seed and the structure), with
whole filters set to zero, to a norm below the clamp, or to huge magnitudes, so that every
branch of the fused maths is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from dirac_conformance.case import Case, Operand
from dirac_conformance.dtypes import round_to

EPS = 1e-12
# In float16, g / eps below the clamp overflows for eps = 1e-12; the half cases clamp at 1e-2.
EPS_BY_DTYPE = {"float64": EPS, "float32": EPS, "float16": 1e-2}


@dataclass
class WeightCase:
    w: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    groups: int
    policy: str
    normalize: bool
    eps: float = EPS

    @property
    def args(self) -> dict:
        return {
            "eps": self.eps, "normalize": self.normalize, "groups": self.groups,
            "policy": self.policy,
        }


def _filters(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    w = rng.normal(size=shape)
    kinds = rng.integers(0, 5, size=shape[0])  # 0..1 plain, 2 zero, 3 below the clamp, 4 huge
    big = 1e200 if dtype == "float64" else 1e3
    w[kinds == 2] = 0.0
    w[kinds == 3] *= EPS * 1e-3
    w[kinds == 4] *= big
    return w.astype(dtype)


def _scale(rng: np.random.Generator, draw, out_channels: int) -> np.ndarray:
    if draw(st.booleans()):
        return np.asarray(rng.normal())
    return rng.normal(size=out_channels)


@st.composite
def weight_cases(draw, dtype: str = "float64") -> WeightCase:
    """A weight ``(O, Ni, K...)`` with 0..2 spatial dims, groups, policy and scales."""
    per_group = draw(st.integers(1, 4))
    groups = draw(st.integers(1, 3))
    in_per_group = draw(st.integers(1, 5))
    kernel = draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    shape = (per_group * groups, in_per_group, *kernel)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return WeightCase(
        w=_filters(rng, shape, dtype),
        alpha=_scale(rng, draw, shape[0]),
        beta=_scale(rng, draw, shape[0]),
        groups=groups,
        policy=draw(st.sampled_from(["tile", "min"])),
        normalize=draw(st.booleans()),
        eps=EPS_BY_DTYPE[dtype],
    )


@st.composite
def ncrelu_cases(draw, dtype: str = "float64") -> tuple[np.ndarray, int]:
    """An array of 1..4 dims with exact zeros among its entries, and an axis."""
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=shape)
    x[rng.random(size=shape) < 0.2] = 0.0
    return x.astype(dtype), draw(st.integers(0, len(shape) - 1))


TOL = {"float64": (1e-12, 1e-300), "float32": (2e-5, 1e-30), "float16": (4e-3, 1e-6)}
"""Per dtype ``(rtol, atol)`` against the reference run at the same dtype."""


def assert_rows_close(actual, expected, dtype="float64", scale=None):
    """Per filter, relative to ``scale`` (default: the filter's largest expected entry), so
    that huge filters set their own scale."""
    rtol, atol = TOL[dtype]
    a, e = (np.asarray(v, dtype=np.float64) for v in (actual, expected))
    assert a.shape == e.shape
    rows = np.abs(e.reshape(e.shape[0], -1)).max(axis=1) if scale is None else scale
    bound = rtol * rows.reshape((-1,) + (1,) * (e.ndim - 1)) + atol
    assert np.all(np.abs(a - e) <= bound), f"max error {np.max(np.abs(a - e) - bound)} over bound"


def gradient_scale(g, case: WeightCase):
    """Per filter ``|beta| max|g| / max(||w||, eps)``: the size of the terms of dW, which may
    cancel to far below it when ``g`` is nearly parallel to the filter."""
    rows = case.w.astype(np.float64).reshape(case.w.shape[0], -1)
    m = np.abs(rows).max(axis=1)
    norm = m * np.linalg.norm(rows / np.where(m > 0, m, 1)[:, None], axis=1)
    factor = 1 / np.maximum(norm, case.eps) if case.normalize else 1.0
    return np.abs(case.beta) * np.abs(g.reshape(rows.shape)).max(axis=1) * factor


# ---------------------------------------------------------------------------- numeric edges


def _edge(op: str, dtype: str, kwargs: dict, **operands) -> tuple[str, Case]:
    values = {}
    for k, v in operands.items():
        if v is None:
            values[k] = None
            continue
        python = k in _PYTHON and op.startswith("dirac_weight")  # fold's beta is a vector
        carrier = "float64" if python else dtype
        values[k] = Operand(round_to(np.asarray(v), carrier), carrier, python=python)
    return op, Case(dtype, values, kwargs)


_PYTHON = ("alpha", "beta")  # scales given as Python floats, as most callers do
_WEIGHT = {"normalize": True, "groups": 1, "policy": "tile"}
_SUBNORMAL = [[1e-39, -2e-39, 5e-40]]
_HUGE_G = np.full((1, 16), 1e38)
_HUGE_G[0, 0] = 5e37

EDGE_CASES: dict[str, tuple[str, Case]] = {
    # eps below float32's range: the smallest subnormal, never 0 (0/0 = NaN for a zero filter).
    "zero filter, eps=1e-50": _edge("normalize_filters", "float32", {"eps": 1e-50},
                                    w=[[0.0, 0.0, 0.0]]),
    "zero filter vjp, eps=1e-50": _edge("normalize_filters_vjp", "float32", {"eps": 1e-50},
                                        g=[[1.0, -2.0, 0.0]], w=[[0.0, 0.0, 0.0]]),
    # Subnormal filters and eps: flush-to-zero must not turn them into zeros (or 0/0).
    "subnormal filter": _edge("normalize_filters", "float32", {"eps": 1e-12}, w=_SUBNORMAL),
    "subnormal filter vjp": _edge("normalize_filters_vjp", "float32", {"eps": 1e-12},
                                  g=[[1.0, 2.0, -3.0]], w=_SUBNORMAL),
    "subnormal eps": _edge("normalize_filters", "float32", {"eps": 1e-40}, w=_SUBNORMAL),
    "subnormal ncrelu": _edge("ncrelu", "float32", {"axis": 1},
                              x=[[1e-40, -1e-40, 0.0, 2.0, -1e-45]]),
    "subnormal ncrelu vjp": _edge("ncrelu_vjp", "float32", {"axis": 1},
                                  g=[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], x=[[1e-40, -1e-40, 0.0]]),
    # s = gamma / sqrt(var + eps) with var = 0: ~1e20 * gamma, not gamma / 0 = inf.
    "fold, subnormal eps": _edge("fold_batchnorm", "float32", {"eps": 1e-40},
                                 weight=np.ones((2, 3)), bias=None, gamma=[2.0, -3.0],
                                 beta=[0.5, 0.0], mean=[1.0, 0.0], var=[0.0, 4.0]),
    # <g, w/m> overflows unless g is scaled by its max-abs first.
    "huge g, float32": _edge("dirac_weight_vjp", "float32", {"eps": 1e-12, **_WEIGHT},
                             g=_HUGE_G, w=np.ones((1, 16)), alpha=1.0, beta=1.0),
    "huge g, float64": _edge("dirac_weight_vjp", "float64", {"eps": 1e-12, **_WEIGHT},
                             g=_HUGE_G * 1e270, w=np.ones((1, 16)), alpha=1.0, beta=1.0),
}
"""Inputs at the numeric edges of the fused kernels, as conformance-suite cases
(``dirac_conformance.checks.CHECKS[op].run(target, case)``)."""

FTZ_CASES = ("subnormal filter", "subnormal eps", "subnormal ncrelu",
             "subnormal ncrelu vjp", "zero filter, eps=1e-50", "zero filter vjp, eps=1e-50",
             "fold, subnormal eps")
"""The edge cases that float32 arithmetic under flush-to-zero gets wrong."""

EPS_ABOVE_RANGE = {"w": np.array([[1e38, -2e38, 0.0]], dtype=np.float32), "eps": 1e39}
"""``eps`` beyond float32: taken as float32's largest value (the spec), never as inf."""
