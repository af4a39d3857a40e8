"""Hypothesis strategies for the CuPy backend's tests: weights with scales and NCReLU inputs.

Values come from a seeded NumPy generator (hypothesis draws the seed and the structure), with
whole filters set to zero, to a norm below the clamp, or to huge magnitudes, so that every
branch of the fused maths is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

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
