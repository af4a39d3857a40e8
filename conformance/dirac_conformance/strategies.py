"""Hypothesis strategies for the inputs of every op, one :class:`Case` per example.

Shapes, arguments and the *kind* of values are drawn by hypothesis (so they shrink); the
values themselves come from a NumPy generator seeded by a drawn integer, which is fast for
arrays and reproducible from the printed seed. Shapes stay small: the bugs that matter show
on a 3x3 kernel as well as on a 64x64 image.

Covered: 0-3 spatial dims, groups, non-square channel counts (dividing each other or not),
even kernels, strides, dilations, every padding form (int, per-dim ints, (left, right) pairs,
"valid", "same" at stride 1), scalar / 0-d / per-channel alpha and beta (in the weight's dtype
or float64), both Dirac policies, ``normalize=False``, and special values: all-zero filters,
filters whose squares overflow or underflow the dtype, filters below the ``eps`` clamp, exact
(and negative) zeros in NCReLU inputs, BN variances of zero and gammas of either sign.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

import dirac_core as dc
from dirac_core.padding import resolve_padding
from dirac_core.validation import canonical_padding

from .case import Case, Operand
from .dtypes import huge, round_to, tiny

seeds = st.integers(0, 2**32 - 1)

VALUE_KINDS = ("normal", "integers", "sparse")
"""``integers``: small integers, whose products and sums are exact in every dtype."""

FILTER_KINDS = ("unit", "small", "zero", "huge", "tiny", "clamped")
"""Per-filter magnitudes for normalization: ~1, ~1e-3, all zeros, squares overflowing the
dtype, squares underflowing it, and norm below ``eps`` (the clamp branch)."""

EPS_CHOICES = (1e-12, 1e-3)


def values(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Unrounded float64 values of one :data:`VALUE_KINDS` kind (or ``"signed_zeros"``)."""
    if kind == "integers":
        return rng.integers(-3, 4, shape).astype(np.float64)
    normal = rng.standard_normal(shape)
    if kind == "sparse":
        return np.where(rng.random(shape) < 0.4, 0.0, normal)
    if kind == "signed_zeros":
        zeros = np.where(rng.random(shape) < 0.5, 0.0, -0.0)
        return np.where(rng.random(shape) < 0.4, zeros, normal)
    return normal


@st.composite
def arrays(draw: Any, shape: tuple[int, ...], dtype: str, kinds: tuple[str, ...] = VALUE_KINDS
           ) -> Operand:
    """An operand of ``shape`` in ``dtype`` with values of a drawn kind."""
    kind = draw(st.sampled_from(kinds))
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    return Operand(round_to(values(rng, shape, kind), dtype), dtype, origin=f"{kind} seed={seed}")


@st.composite
def filters(draw: Any, shape: tuple[int, ...], dtype: str, eps: float) -> Operand:
    """Weights whose filters (``w[o]``) each get one of :data:`FILTER_KINDS` magnitudes."""
    kinds = draw(st.lists(st.sampled_from(FILTER_KINDS), min_size=shape[0], max_size=shape[0]))
    seed = draw(seeds)
    w = np.random.default_rng(seed).standard_normal(shape)
    for o, kind in enumerate(kinds):
        w[o] *= _filter_scale(kind, w[o], dtype, eps)
    return Operand(round_to(w, dtype), dtype, origin=f"filters {kinds} seed={seed}")


def _filter_scale(kind: str, v: np.ndarray, dtype: str, eps: float) -> float:
    if kind == "clamped":
        norm = float(np.linalg.norm(v))
        return 0.3 * eps / norm if norm else 0.0
    return {"unit": 1.0, "small": 1e-3, "zero": 0.0, "huge": huge(dtype), "tiny": tiny(dtype)}[
        kind
    ]


@st.composite
def weight_layout(draw: Any, max_channels: int = 4) -> tuple[tuple[int, ...], int]:
    """``((O, I/groups, K1..KL), groups)`` with 0-3 spatial dims, even and odd kernels, and
    per-group channel counts that may or may not divide each other."""
    ndim = draw(st.integers(0, 3))
    groups = draw(st.integers(1, 3))
    per_group_out = draw(st.integers(1, max_channels))
    per_group_in = draw(st.integers(1, max_channels))
    kernel = draw(st.lists(st.integers(1, 4 if ndim < 3 else 3), min_size=ndim, max_size=ndim))
    return (groups * per_group_out, per_group_in, *kernel), groups


@st.composite
def dirac_tensor_cases(draw: Any, dtype: str) -> Case:
    shape, groups = draw(weight_layout())
    policy = draw(st.sampled_from(("tile", "min")))
    return Case(dtype, {}, {"shape": shape, "groups": groups, "policy": policy})


@st.composite
def normalize_cases(draw: Any, dtype: str, vjp: bool = False) -> Case:
    shape, _ = draw(weight_layout())
    eps = draw(st.sampled_from(EPS_CHOICES))
    operands = {"w": draw(filters(shape, dtype, eps))}
    if vjp:
        operands = {"g": draw(arrays(shape, dtype)), **operands}
    return Case(dtype, operands, {"eps": eps})


@st.composite
def scales(draw: Any, out_channels: int, dtype: str, centre: float) -> Operand:
    """alpha or beta: a Python float, a 0-d array, or a per-channel vector, in the weight's
    dtype or in float64 (the result must still have the weight's dtype)."""
    form = draw(st.sampled_from(("python", "0-d", "vector", "vector-float64")))
    rng = np.random.default_rng(draw(seeds))
    shape = (out_channels,) if form.startswith("vector") else ()
    raw = centre * (1 + rng.standard_normal(shape))
    carrier = "float64" if form in ("python", "vector-float64") else dtype
    return Operand(round_to(raw, carrier), carrier, python=form == "python")


@st.composite
def dirac_weight_cases(draw: Any, dtype: str, vjp: bool = False) -> Case:
    shape, groups = draw(weight_layout())
    eps = draw(st.sampled_from(EPS_CHOICES))
    kwargs = {
        "eps": eps,
        "normalize": draw(st.booleans()),
        "groups": groups,
        "policy": draw(st.sampled_from(("tile", "min"))),
    }
    operands = {
        "w": draw(filters(shape, dtype, eps)),
        "alpha": draw(scales(shape[0], dtype, 2.0)),
        "beta": draw(scales(shape[0], dtype, 0.5)),
    }
    if vjp:
        operands = {"g": draw(arrays(shape, dtype)), **operands}
    return Case(dtype, operands, kwargs)


@st.composite
def ncrelu_cases(draw: Any, dtype: str, vjp: bool = False) -> Case:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    operands = {"x": draw(arrays(shape, dtype, ("signed_zeros", "integers")))}
    if vjp:
        doubled = list(shape)
        doubled[axis] *= 2
        operands = {"g": draw(arrays(tuple(doubled), dtype)), **operands}
    return Case(dtype, operands, {"axis": axis})


PADDING_FORMS = ("int", "ints", "pairs", "valid", "same")


@st.composite
def conv_geometry(draw: Any) -> dict[str, Any]:
    """Shapes and arguments of a convolution whose output is non-empty."""
    ndim = draw(st.integers(0, 3))
    groups = draw(st.integers(1, 3))
    kernel = draw(st.lists(st.integers(1, 4 if ndim < 3 else 2), min_size=ndim, max_size=ndim))
    dilation = draw(st.lists(st.integers(1, 2), min_size=ndim, max_size=ndim))
    form = draw(st.sampled_from(PADDING_FORMS))
    stride = [1] * ndim if form == "same" else draw(
        st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)
    )
    padding, pairs = draw(_padding(form, kernel, dilation))
    sizes = []
    for k, d, (left, right) in zip(kernel, dilation, pairs, strict=True):
        least = max(1, d * (k - 1) + 1 - left - right)
        sizes.append(draw(st.integers(least, least + (3 if ndim < 3 else 1))))
    per_group_in = draw(st.integers(1, 3))
    out_channels = groups * draw(st.integers(1, 3))
    return {
        "x_shape": (draw(st.integers(1, 2)), groups * per_group_in, *sizes),
        "w_shape": (out_channels, per_group_in, *kernel),
        "kwargs": {"stride": tuple(stride), "padding": padding, "dilation": tuple(dilation),
                   "groups": groups},
    }


@st.composite
def _padding(draw: Any, form: str, kernel: list[int], dilation: list[int]) -> Any:
    ndim = len(kernel)
    if form == "same":
        return "same", list(resolve_padding("same", kernel, dilation))
    if form == "valid":
        return "valid", [(0, 0)] * ndim
    if form == "int":
        p = draw(st.integers(0, 2))
        return p, [(p, p)] * ndim
    sides = draw(st.lists(st.integers(0, 2), min_size=2 * ndim, max_size=2 * ndim))
    pairs = list(zip(sides[::2], sides[1::2], strict=True))
    if form == "ints":
        return tuple(sides[::2]), [(p, p) for p in sides[::2]]
    return tuple(pairs), pairs


@st.composite
def conv_cases(draw: Any, dtype: str, vjp: bool = False) -> Case:
    geo = draw(conv_geometry())
    operands = {
        "x": draw(arrays(geo["x_shape"], dtype)),
        "w": draw(arrays(geo["w_shape"], dtype)),
        "bias": draw(st.none() | arrays((geo["w_shape"][0],), dtype)),
    }
    if vjp:
        out = conv_output(geo["x_shape"], geo["w_shape"], geo["kwargs"])
        operands = {"g": draw(arrays(out, dtype)), **operands}
    return Case(dtype, operands, geo["kwargs"])


def conv_output(x_shape: tuple[int, ...], w_shape: tuple[int, ...], kwargs: dict[str, Any]
                ) -> tuple[int, ...]:
    """The output shape of ``conv`` for user-form arguments."""
    padding = canonical_padding(kwargs["padding"], len(w_shape) - 2, kwargs["stride"])
    return dc.conv_output_shape(x_shape, w_shape, kwargs["stride"], padding, kwargs["dilation"])


@st.composite
def fold_cases(draw: Any, dtype: str) -> Case:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    channels = (shape[0],)
    eps = draw(st.sampled_from((1e-5, 1e-3, 0.0)))
    var = draw(arrays(channels, dtype, ("normal", "sparse")))
    # var >= 0, and > 0 where eps == 0 so that var + eps stays positive.
    floor = 0.5 if eps == 0 else 0.0
    var = Operand(round_to(np.abs(var.values) + floor, dtype), dtype, origin=f"|{var.origin}|")
    operands = {
        "weight": draw(arrays(shape, dtype)),
        "bias": draw(st.none() | arrays(channels, dtype)),
        "gamma": draw(arrays(channels, dtype)),
        "beta": draw(arrays(channels, dtype)),
        "mean": draw(arrays(channels, dtype)),
        "var": var,
    }
    return Case(dtype, operands, {"eps": eps})


@st.composite
def identity_cases(draw: Any, dtype: str, grouped: bool = True) -> Case:
    """``x`` and a kernel/dilation/groups for ``conv(x, delta, padding="same") == x``."""
    ndim = draw(st.integers(0, 3))
    kernel = tuple(draw(st.lists(st.integers(1, 5 if ndim < 3 else 3), min_size=ndim,
                                 max_size=ndim)))
    dilation = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    groups = draw(st.integers(1, 3)) if grouped else 1
    channels = groups * draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 6 if ndim < 3 else 3), min_size=ndim, max_size=ndim))
    x = draw(arrays((draw(st.integers(1, 2)), channels, *sizes), dtype))
    return Case(dtype, {"x": x}, {"kernel": kernel, "dilation": dilation, "groups": groups})
