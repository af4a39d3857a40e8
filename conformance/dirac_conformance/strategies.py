"""Hypothesis strategies for the inputs of every op, one :class:`Case` per example.

Shapes, arguments and the *kind* of values are drawn by hypothesis (so they shrink); the
values themselves come from a NumPy generator seeded by a drawn integer, which is fast for
arrays and reproducible from the printed seed. Shapes stay small: the bugs that matter show
on a 3x3 kernel as well as on a 64x64 image.

Covered: 0-3 spatial dims, groups, non-square channel counts (dividing each other or not),
even kernels, strides, dilations, every padding form (int, per-dim ints, (left, right) pairs,
"valid", "same" at stride 1), empty batches, scalar / 0-d / per-channel alpha and beta (in the
weight's dtype or float64), both Dirac policies, ``normalize=False``, ``eps`` over the whole
range the API accepts (including values that underflow or overflow the working dtype), and
special values: all-zero filters, filters whose squares overflow or underflow the dtype,
filters below the ``eps`` clamp and filters whose norm *equals* ``eps`` exactly (the tie the
spec sends to the norm branch), exact (and negative) zeros and subnormals in NCReLU inputs,
BN variances of zero or below the dtype's normal range and gammas of either sign, NaN and
infinities in convolution inputs (:data:`CONV_INPUT_KINDS`), and convolutions whose input,
weight or cotangent is subnormal throughout (:func:`conv_subnormal_cases`).

Long sums (:data:`LONG`): some cases of the accumulating ops reduce over 4096 terms of equal
values, or of values whose partial sums pass float16's largest number although the total does
not. Accumulated in float32 they come out exact; accumulated in half precision they come out
wrong by orders of magnitude beyond the tolerance (see :mod:`dirac_conformance.tolerance`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

import dirac_core as dc
from dirac_core.padding import resolve_padding
from dirac_core.validation import canonical_padding

from .case import Case, Operand, Sequel
from .dtypes import huge, round_to, smallest_normal, tiny
from .layouts import LAYOUTS

seeds = st.integers(0, 2**32 - 1)

DECLARED = ("float64", "float32", "float16")
"""The dtypes a backend is assumed to declare when a strategy is not told (the reference's)."""

VALUE_KINDS = ("normal", "integers", "sparse")
"""``integers``: small integers, whose products and sums are exact in every dtype."""

CONV_INPUT_KINDS = (*VALUE_KINDS, "spoiled")
"""Inputs of ``conv``: ``spoiled`` puts NaN or an infinity in a few entries (one in twenty, at
least one), which must make every output whose window holds them non-finite, whatever the
weight there (``0 * inf`` is NaN): a kernel skipping zero weights gives finite ones."""

COTANGENT_KINDS = (*VALUE_KINDS, "ones", "nonfinite")
"""Cotangents of the weight ops and the convolution: a non-finite entry must make every result
it reaches non-finite (a port that zeroes NaN gradients gives finite ones)."""

FILTER_KINDS = ("unit", "small", "zero", "huge", "tiny", "clamped", "tie", "tie4", "nonfinite")
"""Per-filter magnitudes for normalization: ~1, ~1e-3, all zeros, squares overflowing the
dtype, squares underflowing it, norm below ``eps`` (the clamp branch), norm exactly ``eps``:
one entry ``+-eps`` (``tie``) or four entries ``+-eps/2`` (``tie4``), exact whenever ``eps``
is a power of two the dtype holds; and ``nonfinite``, a filter with NaN or infinite entries
(NaN throughout after normalization, docs/spec.md)."""

LONG = 4096
"""The length of the suite's long sums: twice the count at which a float16 sum of ones stops
growing (2048 + 1 rounds back to 2048)."""

_FINFO_RANGE = {  # log2 of the smallest subnormal and of the largest finite number
    "float64": (-1074, 1023), "float32": (-149, 127), "float16": (-24, 15),
    "bfloat16": (-133, 127),
}


@st.composite
def eps_values(draw: Any, dtype: str) -> float:
    """``eps`` from the whole range the API accepts (any finite float > 0).

    Typical values; powers of two the dtype holds (so filters can tie with ``eps``), down to
    its subnormals; values that underflow or overflow the dtype or its working dtype
    (``1e-50``, ``1e-8`` for float16, ``1e300``); and log-uniform draws over every decade
    from ``5e-324`` to ``1.8e308``.
    """
    kind = draw(st.sampled_from(("typical", "power of two", "extreme", "any")))
    if kind == "typical":
        return float(draw(st.sampled_from((1e-12, 1e-5, 1e-3))))
    if kind == "power of two":
        low, high = _FINFO_RANGE[dtype]
        return float(2.0 ** draw(st.integers(low, high)))
    if kind == "extreme":
        return float(draw(st.sampled_from((5e-324, 1e-300, 1e-50, 1e-40, 1e-8, 1e30, 1e39,
                                           1e300, float(np.finfo(np.float64).max)))))
    return float(10.0 ** draw(st.floats(-323.0, 308.0)))


def values(rng: np.random.Generator, shape: tuple[int, ...], kind: str,
           dtype: str = "float64") -> np.ndarray:
    """Unrounded float64 values of one kind: :data:`VALUE_KINDS`, ``"ones"``,
    ``"signed_zeros"``, ``"nonfinite"`` (NaN or an infinity in about 30 % of the entries),
    ``"spoiled"`` (about 5 % of the entries) or ``"subnormal"`` (about 60 % of the entries
    ``k`` times ``dtype``'s smallest subnormal, ``k`` in -4..4, zeros of both signs among
    them: a backend that flushes subnormals reads them as zeros) or ``"subnormal_spread"``
    (every entry subnormal in ``dtype``, about 10 % zeros, magnitudes log-uniform over its
    whole subnormal range, either sign: sums of them stand far above the tolerance's floor,
    which a few multiples of the smallest subnormal do not)."""
    if kind == "integers":
        return rng.integers(-3, 4, shape).astype(np.float64)
    if kind == "ones":
        return np.ones(shape)
    normal = rng.standard_normal(shape)
    if kind == "subnormal":
        steps = rng.integers(0, 5, shape) * rng.choice(np.array([-1.0, 1.0]), shape)
        return np.where(rng.random(shape) < 0.6, steps * 2.0 ** _FINFO_RANGE[dtype][0], normal)
    if kind == "subnormal_spread":
        low, high = _FINFO_RANGE[dtype][0], np.log2(smallest_normal(dtype))
        spread = np.sign(normal) * 2.0 ** rng.uniform(low, high, shape)
        return np.where(rng.random(shape) < 0.1, 0.0, spread)
    if kind == "sparse":
        return np.where(rng.random(shape) < 0.4, 0.0, normal)
    if kind == "signed_zeros":
        zeros = np.where(rng.random(shape) < 0.5, 0.0, -0.0)
        return np.where(rng.random(shape) < 0.4, zeros, normal)
    if kind == "nonfinite":
        return _spoiled(rng, normal, 0.3)
    if kind == "spoiled":
        return _spoiled(rng, normal, 0.05)
    return normal


def _spoiled(rng: np.random.Generator, v: np.ndarray, share: float) -> np.ndarray:
    """``v`` with about ``share`` of its entries (at least one) NaN, +inf or -inf."""
    out = v.copy().reshape(-1)
    if out.size:
        hit = rng.random(out.size) < share
        hit[rng.integers(out.size)] = True
        out[hit] = rng.choice(np.array([np.nan, np.inf, -np.inf]), int(hit.sum()))
    return out.reshape(v.shape)


@st.composite
def arrays(draw: Any, shape: tuple[int, ...], dtype: str, kinds: tuple[str, ...] = VALUE_KINDS
           ) -> Operand:
    """An operand of ``shape`` in ``dtype`` with values of a drawn kind."""
    kind = draw(st.sampled_from(kinds))
    return operand(shape, dtype, kind, draw(seeds))


def operand(shape: tuple[int, ...], dtype: str, kind: str, seed: int) -> Operand:
    """An operand of ``shape`` in ``dtype``: :func:`generated` values of ``kind``, rounded."""
    return Operand(round_to(generated(shape, kind, seed, dtype), dtype), dtype,
                   origin=f"{kind} seed={seed}",
                   recipe=f"round_to(s.generated({shape!r}, {kind!r}, {seed}, {dtype!r}), "
                          f"{dtype!r})")


def generated(shape: tuple[int, ...], kind: str, seed: int, dtype: str = "float64"
              ) -> np.ndarray:
    """:func:`values` of ``kind`` for ``dtype`` from a generator seeded with ``seed``
    (reproducible)."""
    return values(np.random.default_rng(seed), shape, kind, dtype)


@st.composite
def filters(draw: Any, shape: tuple[int, ...], dtype: str, eps: float) -> Operand:
    """Weights whose filters (``w[o]``) each get one of :data:`FILTER_KINDS` magnitudes."""
    kinds = draw(st.lists(st.sampled_from(FILTER_KINDS), min_size=shape[0], max_size=shape[0]))
    return filter_operand(shape, dtype, eps, tuple(kinds), draw(seeds))


def filter_operand(shape: tuple[int, ...], dtype: str, eps: float, kinds: tuple[str, ...],
                   seed: int) -> Operand:
    """Weights in ``dtype`` whose filter ``o`` has the magnitude ``kinds[o]``
    (:func:`filter_values`, rounded)."""
    w = filter_values(shape, dtype, eps, kinds, seed)
    args = f"{shape!r}, {dtype!r}, {eps!r}, {kinds!r}, {seed}"
    recipe = f"round_to(s.filter_values({args}), {dtype!r})"
    return Operand(round_to(w, dtype), dtype, origin=f"filters {list(kinds)} seed={seed}",
                   recipe=recipe)


def filter_values(shape: tuple[int, ...], dtype: str, eps: float, kinds: tuple[str, ...],
                  seed: int) -> np.ndarray:
    """Weights whose filter ``o`` has the magnitude ``kinds[o]`` (unrounded, reproducible)."""
    w = np.random.default_rng(seed).standard_normal(shape)
    for o, kind in enumerate(kinds):
        if kind == "nonfinite":
            w[o] = _spoiled(np.random.default_rng([seed, o]), w[o], 0.2)
        else:
            w[o] = _filter(kind, w[o], dtype, eps)
    return w


LONG_KINDS = ("equal", "alternating", "normal")
"""Values of a long filter: one value repeated (a float16 sum of its squares stalls), the same
value with alternating signs, or standard normal."""


@st.composite
def long_filters(draw: Any, dtype: str) -> Operand:
    """One or two filters of about :data:`LONG` entries each (exactly, or one block more),
    laid out with 1-3 trailing dims."""
    out = draw(st.integers(1, 2))
    shape = draw(st.sampled_from(((out, LONG + 1), (out, 64, 64), (out, 16, 16, 17))))
    kind = draw(st.sampled_from(LONG_KINDS))
    seed = draw(seeds)
    w = long_values(shape, kind, seed)
    return Operand(round_to(w, dtype), dtype, origin=f"long {kind} seed={seed}",
                   recipe=f"round_to(s.long_values({shape!r}, {kind!r}, {seed}), {dtype!r})")


def long_values(shape: tuple[int, ...], kind: str, seed: int) -> np.ndarray:
    """Long filters of a :data:`LONG_KINDS` kind (unrounded, reproducible)."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal(shape)
    w = np.full(shape, rng.uniform(0.5, 2.0))
    if kind == "alternating":
        w.reshape(shape[0], -1)[:, 1::2] *= -1
    return w


@st.composite
def weights_and_eps(draw: Any, dtype: str) -> tuple[tuple[int, ...], int, float, Operand]:
    """``(shape, groups, eps, w)`` for the normalizing ops; one case in eight is long."""
    eps = draw(eps_values(dtype))
    size = draw(st.integers(0, 7))
    if size == 0:
        w = draw(long_filters(dtype))
        return w.values.shape, 1, eps, w
    shape, groups = draw(tile_weight_layout() if size <= 2 else weight_layout())
    return shape, groups, eps, draw(filters(shape, dtype, eps))


TILE_LENGTHS = (15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 257, 509)
"""Lengths around the tile, chunk and block sizes of GPU kernels (powers of two, one either
side, primes): a kernel that drops the last partial tile gets the tail wrong."""


@st.composite
def tile_weight_layout(draw: Any) -> tuple[tuple[int, ...], int]:
    """A weight whose filter count or filter length passes a tile boundary (the other small)."""
    if draw(st.booleans()):  # many filters, short ones
        return (draw(st.sampled_from(TILE_LENGTHS)), draw(st.integers(1, 3)), 3), 1
    length = draw(st.sampled_from(FILTER_LENGTHS))
    return (draw(st.integers(1, 3)), length, *draw(st.sampled_from(((), (1,))))), 1


FILTER_LENGTHS = (33, 255, 257, 509, 1031)
"""Filter lengths around the block sizes of per-filter reductions (one block of 256 threads,
one more entry, several blocks and a partial one)."""


def _filter(kind: str, v: np.ndarray, dtype: str, eps: float) -> np.ndarray:
    """Filter ``v`` (standard normal values) brought to the magnitude ``kind`` names."""
    if kind in ("tie", "tie4"):
        tie = _tie(kind, v, dtype, eps)
        if tie is not None:
            return tie
        kind = "clamped"  # eps is not a power of two the dtype holds: no exact tie exists
    if kind == "clamped":
        norm, peak = float(np.linalg.norm(v)), float(np.abs(v).max(initial=0.0))
        # 0.3 eps, unless that would overflow the dtype (eps beyond its range)
        top = 2.0 ** _FINFO_RANGE[dtype][1] / 4
        return v * min(0.3 * eps / norm, top / peak) if norm else v * 0.0
    scale = {"unit": 1.0, "small": 1e-3, "zero": 0.0, "huge": huge(dtype), "tiny": tiny(dtype)}
    return v * scale[kind]


def _tie(kind: str, v: np.ndarray, dtype: str, eps: float) -> np.ndarray | None:
    """A filter of norm exactly ``eps``, or None if ``eps`` (or ``eps/2``) is not exact."""
    count, value = (1, eps) if kind == "tie" else (4, eps / 2)
    flat = v.reshape(-1)
    with np.errstate(over="ignore"):  # an eps beyond the dtype's range rounds to inf: no tie
        exact = float(round_to(np.array(value), dtype)) == value
    if flat.size < count or not exact:
        return None
    out = np.zeros_like(flat)
    out[:count] = np.where(flat[:count] < 0, -value, value)
    return np.roll(out, int(np.argmax(np.abs(flat)))).reshape(v.shape)


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
def normalize_cases(draw: Any, dtype: str, vjp: bool = False,
                    declared: tuple[str, ...] = DECLARED) -> Case:
    shape, _, eps, w = draw(weights_and_eps(dtype))
    operands = {"w": w}
    if vjp:
        operands = {"g": draw(arrays(shape, dtype, COTANGENT_KINDS)), **operands}
    return Case(dtype, operands, {"eps": eps})


@st.composite
def scales(draw: Any, out_channels: int, dtype: str, centre: float,
           declared: tuple[str, ...] = DECLARED, exact: float | None = None) -> Operand:
    """alpha or beta: a Python float, a 0-d array or a per-channel vector, in the weight's dtype
    or in any other dtype the backend declares, narrower or wider (the result must still have
    the weight's dtype, each scale's gradient the scale's dtype); random around ``centre``, or
    every entry ``exact``."""
    form = draw(st.sampled_from(("python", "0-d", "vector")))
    rng = np.random.default_rng(draw(seeds))
    shape = (out_channels,) if form == "vector" else ()
    raw = centre * (1 + rng.standard_normal(shape)) if exact is None else np.full(shape, exact)
    if form == "python":
        return Operand(round_to(raw, "float64"), "float64", python=True)
    carrier = draw(st.sampled_from((dtype, *(d for d in declared if d != dtype))))
    return Operand(round_to(raw, carrier), carrier)


@st.composite
def dirac_weight_cases(draw: Any, dtype: str, vjp: bool = False,
                       declared: tuple[str, ...] = DECLARED) -> Case:
    shape, groups, eps, w = draw(weights_and_eps(dtype))
    kwargs = {
        "eps": eps,
        "normalize": draw(st.booleans()),
        "groups": groups,
        "policy": draw(st.sampled_from(("tile", "min"))),
    }
    # Now and then the scales of a pure term, drawn on purpose: alpha = 0, beta = 1 gives
    # W_hat = W (or normalize(W)), alpha = 1, beta = 0 the Dirac tensor, where a port's shortcut
    # may return (an alias of) its input or a shared constant.
    pure = draw(st.sampled_from((None,) * 4 + ((0.0, 1.0), (1.0, 0.0))))
    operands = {
        "w": w,
        "alpha": draw(scales(shape[0], dtype, 2.0, declared, None if pure is None else pure[0])),
        "beta": draw(scales(shape[0], dtype, 0.5, declared, None if pure is None else pure[1])),
    }
    if vjp:
        operands = {"g": draw(arrays(shape, dtype, COTANGENT_KINDS)), **operands}
    return Case(dtype, operands, kwargs)


@st.composite
def ncrelu_cases(draw: Any, dtype: str, vjp: bool = False,
                 declared: tuple[str, ...] = DECLARED) -> Case:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    if len(shape) > 1 and draw(st.integers(0, 9)) == 0:
        shape = (0, *shape[1:])  # an empty batch
    elif draw(st.integers(0, 7)) == 0:  # past tile and grid-stride boundaries
        shape = (draw(st.sampled_from((1, 2, 9, 17))), draw(st.sampled_from((3, 8, 33))),
                 draw(st.sampled_from(TILE_LENGTHS)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    kinds = ("signed_zeros", "integers", "nonfinite", "subnormal")
    operands = {"x": draw(arrays(shape, dtype, kinds))}
    if vjp:
        doubled = list(shape)
        doubled[axis] *= 2
        g = draw(arrays(tuple(doubled), dtype, (*VALUE_KINDS, "signed_zeros")))
        operands = {"g": g, **operands}
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
        "x_shape": (draw(st.integers(0, 2)), groups * per_group_in, *sizes),
        "w_shape": (out_channels, per_group_in, *kernel),
        "kwargs": {"stride": tuple(stride), "padding": padding, "dilation": tuple(dilation),
                   "groups": groups},
    }


TILE_COUNTS = (7, 8, 9, 16, 17, 32, 33)
"""Batch sizes around the chunk sizes of batched launches."""

TILE_CHANNELS = (4, 8, 32, 3, 5, 9, 33)
"""Channels per group: multiples of 4, 8 and 32 (vectorized loads) and odd counts."""

TILE_GROUPS = (4, 8, 9, 33)
"""Group counts of depthwise convolutions (one input channel per group): a whole tile of 4 and
8 channels, and one past 8 and 32, for a kernel that takes a depthwise path by group count."""

LONG_KERNELS = (6, 7, 11)
"""Kernel lengths past the small ones drawn elsewhere (a 7x7 stem, an 11-tap 1-d filter), for
a kernel whose generic loop over taps differs from its unrolled 3x3 one."""


@st.composite
def tile_conv_geometry(draw: Any) -> dict[str, Any]:
    """A convolution with one size past a tile boundary and the others small: the batch
    (:data:`TILE_COUNTS`), the output length along one axis (:data:`TILE_LENGTHS`, up to 65),
    the channels per group (:data:`TILE_CHANNELS`), the groups of a depthwise convolution
    (:data:`TILE_GROUPS`) or the kernel along one axis (:data:`LONG_KERNELS`)."""
    focus = draw(st.sampled_from(("batch", "length", "channels", "groups", "kernel")))
    ndim = draw(st.integers(1 if focus in ("length", "kernel") else 0, 2))
    depthwise = focus == "groups"
    groups = draw(st.sampled_from(TILE_GROUPS)) if depthwise else draw(st.integers(1, 2))
    kernel = draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim))
    if focus == "kernel":
        kernel[draw(st.integers(0, ndim - 1))] = draw(st.sampled_from(LONG_KERNELS))
    dilation = draw(st.lists(st.integers(1, 2), min_size=ndim, max_size=ndim))
    stride = draw(st.lists(st.integers(1, 2), min_size=ndim, max_size=ndim))
    outputs = draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim))
    if focus == "length":
        outputs[draw(st.integers(0, ndim - 1))] = draw(st.sampled_from(
            tuple(n for n in TILE_LENGTHS if n <= 65)))
    pairs = [(draw(st.integers(0, 1)), draw(st.integers(0, 1))) for _ in range(ndim)]
    sizes = [max(1, (p - 1) * s + d * (k - 1) + 1 - left - right)
             for p, s, d, k, (left, right) in zip(outputs, stride, dilation, kernel, pairs,
                                                  strict=True)]
    wide = focus == "channels"
    if depthwise:
        per_group_in = 1
    else:
        per_group_in = draw(st.sampled_from(TILE_CHANNELS) if wide else st.integers(1, 3))
    per_group_out = draw(st.sampled_from(TILE_CHANNELS[:4]) if wide else st.integers(1, 2))
    batch = draw(st.sampled_from(TILE_COUNTS)) if focus == "batch" else draw(st.integers(1, 2))
    return {
        "x_shape": (batch, groups * per_group_in, *sizes),
        "w_shape": (groups * per_group_out, per_group_in, *kernel),
        "kwargs": {"stride": tuple(stride), "padding": tuple(pairs),
                   "dilation": tuple(dilation), "groups": groups},
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
def conv_cases(draw: Any, dtype: str, vjp: bool = False,
               declared: tuple[str, ...] = DECLARED) -> Case:
    pick = draw(st.integers(0, 7))
    if pick == 0:
        long: Case = draw(long_conv_cases(dtype, vjp))
        return long
    geo = draw(tile_conv_geometry() if pick == 1 else conv_geometry())
    operands = {
        "x": draw(arrays(geo["x_shape"], dtype, VALUE_KINDS if vjp else CONV_INPUT_KINDS)),
        "w": draw(arrays(geo["w_shape"], dtype)),
        "bias": draw(st.none() | arrays((geo["w_shape"][0],), dtype)),
    }
    if vjp:
        out = conv_output(geo["x_shape"], geo["w_shape"], geo["kwargs"])
        operands = {"g": draw(arrays(out, dtype, COTANGENT_KINDS)), **operands}
    return Case(dtype, operands, geo["kwargs"])


SUBNORMAL_OPERANDS = ("x", "w", "g")
"""The operands of the ``conv_subnormal`` check that may hold the subnormal values."""


@st.composite
def conv_subnormal_cases(draw: Any, dtype: str) -> Case:
    """A convolution and its cotangent ``g`` in which one or more of ``x``, ``w`` and ``g``
    (:data:`SUBNORMAL_OPERANDS`) hold only subnormal values (``"subnormal_spread"``) and the
    others ordinary ones; the bias is None or subnormal. The products of a subnormal operand
    with an ordinary one are below the normal range, so a backend that reads subnormals as
    zero (a flush to zero) returns zeros there, far outside the tolerance."""
    geo = draw(conv_geometry())
    shapes = {"g": conv_output(geo["x_shape"], geo["w_shape"], geo["kwargs"]),
              "x": geo["x_shape"], "w": geo["w_shape"]}
    low = draw(st.sets(st.sampled_from(SUBNORMAL_OPERANDS), min_size=1))
    operands: dict[str, Operand | None] = {
        name: draw(arrays(shape, dtype, ("subnormal_spread",) if name in low else VALUE_KINDS))
        for name, shape in shapes.items()}
    operands["bias"] = draw(st.none() | arrays((geo["w_shape"][0],), dtype,
                                               ("subnormal_spread",)))
    return Case(dtype, operands, geo["kwargs"])


LONG_VALUES = (1.0, 0.75, 1.5, 16.0)
"""The values of a long sum's equal terms; ``LONG + 1`` terms of 16 make 65552, exact in float32
but past float16's range: there the correct result is inf (a kernel that saturates at 65504
fails)."""

LONG_SUMS = ("forward", "weight", "input")
"""Which reduction of a convolution is long: the forward sum over input channels, the sum over
output positions (``dw``, ``dbias``), or the sum over output channels (``dx``)."""


@st.composite
def long_conv_cases(draw: Any, dtype: str, vjp: bool = False) -> Case:
    """A convolution with one reduction of about :data:`LONG` terms (:data:`LONG_SUMS`), all
    equal, or split in a positive first half and a negative second half (``"partials"``): the
    partial sums reach ``LONG / 2 * 64 > 65504`` although the total is ``64``."""
    which = draw(st.sampled_from(LONG_SUMS if vjp else LONG_SUMS[:1]))
    pattern = draw(st.sampled_from(("equal", "partials")))
    value = draw(st.sampled_from(LONG_VALUES))
    x, w, g = long_conv_values(which, pattern, value)
    args = f"{which!r}, {pattern!r}, {value!r}"

    def exact(a: np.ndarray, index: int) -> Operand:
        return Operand(round_to(a, dtype), dtype, origin=f"long {which} {pattern}",
                       recipe=f"round_to(s.long_conv_values({args})[{index}], {dtype!r})")

    bias = exact(np.zeros(w.shape[0]), 0)
    operands = {"x": exact(x, 0), "w": exact(w, 1),
                "bias": draw(st.none() | st.just(Operand(bias.values, dtype)))}
    if vjp:
        operands = {"g": exact(g, 2), **operands}
    kwargs = {"stride": (1,), "padding": 0, "dilation": (1,), "groups": 1}
    return Case(dtype, operands, kwargs)


def long_conv_values(which: str, pattern: str, value: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, w, g)`` of a convolution whose ``which`` reduction (:data:`LONG_SUMS`) sums
    ``LONG + 1`` terms: all ``value`` (``"equal"``), or ``+-64`` with the signs split in two
    halves (``"partials"``: the total is ``64``, the partial sums reach ``131136``)."""
    n = LONG + 1  # odd, so that the "partials" total is one term
    x_shape, w_shape = {"forward": ((1, n, 1), (1, n, 1)), "weight": ((1, 1, n), (1, 1, 1)),
                        "input": ((1, 1, 1), (n, 1, 1))}[which]
    x, w, g = np.ones(x_shape), np.ones(w_shape), np.ones((1, w_shape[0], x_shape[2]))
    if pattern == "equal":
        x *= value
    else:
        big = w if which == "input" else x
        big *= 64
        signed = {"forward": w[:, n // 2 + 1:], "weight": g[..., n // 2 + 1:],
                  "input": w[n // 2 + 1:]}[which]
        signed *= -1
    return x, w, g


def conv_output(x_shape: tuple[int, ...], w_shape: tuple[int, ...], kwargs: dict[str, Any]
                ) -> tuple[int, ...]:
    """The output shape of ``conv`` for user-form arguments."""
    padding = canonical_padding(kwargs["padding"], len(w_shape) - 2, kwargs["stride"])
    return dc.conv_output_shape(x_shape, w_shape, kwargs["stride"], padding, kwargs["dilation"])


@st.composite
def fold_cases(draw: Any, dtype: str) -> Case:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    channels = (shape[0],)
    eps = draw(st.sampled_from((0.0, 1e-8)) | eps_values(dtype))
    var = draw(arrays(channels, dtype, ("normal", "sparse")))
    # Variances of order 1, or below float16's normal range (1e-6), or zero (sparse).
    size = draw(st.sampled_from((1.0, 1e-6)))
    # var >= 0, and > 0 where eps is 0 in the working dtype, so that var + eps stays positive.
    floor = 0.5 if _underflows(eps, "float64" if dtype == "float64" else "float32") else 0.0
    recipe = f"round_to(np.abs({var.recipe}) * {size!r} + {floor!r}, {dtype!r})"
    var = Operand(round_to(np.abs(var.values) * size + floor, dtype), dtype,
                  origin=f"|{var.origin}| * {size}", recipe=recipe)
    if draw(st.booleans()):
        # On purpose, not by luck: eps subnormal in the working dtype and var = 0 in channel 0,
        # so s = gamma / sqrt(eps) (about 1e20 * gamma in float32), which arithmetic flushing
        # subnormals to zero (CuPy's own kernels) turns into gamma / 0 = inf.
        eps = 1e-310 if dtype == "float64" else 1e-40
        zeroed = var.values.copy()
        zeroed[0] = 0.0
        var = Operand(zeroed, dtype, origin=f"{var.origin}, channel 0 zero",
                      recipe=f"np.where(np.arange({channels[0]}) == 0, 0.0, {var.recipe})")
    operands = {
        "weight": draw(arrays(shape, dtype)),
        "bias": draw(st.none() | arrays(channels, dtype)),
        "gamma": draw(arrays(channels, dtype)),
        "beta": draw(arrays(channels, dtype)),
        "mean": draw(arrays(channels, dtype)),
        "var": var,
    }
    return Case(dtype, operands, {"eps": eps})


def _underflows(value: float, dtype: str) -> bool:
    """Whether ``value`` rounds to zero in ``dtype`` (below half its smallest subnormal)."""
    return value <= 2.0 ** (_FINFO_RANGE[dtype][0] - 1)


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
    x = draw(arrays((draw(st.integers(0, 2)), channels, *sizes), dtype))
    return Case(dtype, {"x": x}, {"kernel": kernel, "dilation": dilation, "groups": groups})


@st.composite
def laid_out(draw: Any, cases: SearchStrategy[Case]) -> Case:
    """``cases`` with a memory layout (:data:`~dirac_conformance.layouts.LAYOUTS`) drawn for
    every array operand, forward and VJP alike (shrinking towards contiguous)."""
    case: Case = draw(cases)
    operands = {name: op if op is None or op.python else replace(
        op, layout=draw(st.sampled_from(LAYOUTS))) for name, op in case.operands.items()}
    return replace(case, operands=operands)


SEQUELS = ("input", "result", "arguments")
"""What a stateful check changes between its two calls (:class:`~dirac_conformance.case.Sequel`)."""

WITH_EPS = ("normalize_filters", "dirac_weight", "normalize_filters_vjp", "dirac_weight_vjp")
"""The ops whose other arguments change around one weight array in the ``arguments`` sequel."""


@st.composite
def sequel_cases(draw: Any, kind: str, op: str, first: Case,
                 declared: tuple[str, ...] = DECLARED) -> Case:
    """``first`` (a case of ``op``) with a second call of the ``kind`` of :data:`SEQUELS`.

    ``input``: new values for one array operand (written into it in place); ``result``: none
    (the first results are overwritten); ``arguments``: a new ``eps`` and new scales and
    cotangent around the same weight.
    """
    dtype = first.dtype
    arrays_ = [n for n, o in first.operands.items() if o is not None and not o.python
               and o.values.size]
    if kind == "input" and arrays_:
        return rewritten(op, first, draw(st.sampled_from(arrays_)), draw(seeds))
    if kind == "arguments" and op in WITH_EPS:
        w = first.operands["w"]
        assert w is not None
        new_ops: dict[str, Operand] = {}
        if "alpha" in first.operands:
            new_ops["alpha"] = draw(scales(w.values.shape[0], dtype, 2.0, declared))
            new_ops["beta"] = draw(scales(w.values.shape[0], dtype, 0.5, declared))
        if "g" in first.operands:
            new_ops["g"] = draw(arrays(w.values.shape, dtype))
        eps = draw(eps_values(dtype))
        return replace(first, op=op, sequel=Sequel("arguments", new_ops, {"eps": eps}))
    return replace(first, op=op, sequel=Sequel("result"))


def rewritten(op: str, first: Case, name: str, seed: int) -> Case:
    """``first`` (a case of ``op``) with a second call after new values (normal, from ``seed``;
    a variance stays >= 0) are written into its operand ``name`` in place."""
    old = first.operands[name]
    assert old is not None
    fresh = generated(old.values.shape, "normal", seed)
    recipe = f"round_to(s.generated({old.values.shape!r}, 'normal', {seed}), {old.dtype!r})"
    if name == "var":
        fresh, recipe = np.abs(fresh) + 0.5, f"np.abs({recipe}) + 0.5"
    new = Operand(round_to(fresh, old.dtype), old.dtype, origin=f"normal seed={seed}",
                  recipe=recipe)
    return replace(first, op=op, sequel=Sequel("input", {name: new}))
