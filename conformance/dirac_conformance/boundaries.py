"""Boundary examples: fixed cases sized just past the tiles, chunks and blocks of GPU kernels,
which every check meets on every dtype in every run, before hypothesis draws its own.

A kernel that leaves the last partial tile of output rows unwritten, launches one chunk of
batch entries too few or takes a vectorized path for 32 channels and gets 33 wrong fails only
on a size that has such a remainder. The strategies draw those sizes now and then
(:data:`~dirac_conformance.strategies.TILE_LENGTHS` and the like), but which of them a run
meets is up to hypothesis; the cases here are met always (hypothesis' *explicit* phase, which
every profile runs):

- :data:`GEOMETRIES`: convolutions with outputs one past tiles of 8, 16 and 32
  (:data:`LENGTHS`) along every spatial dim of 1-, 2- and 3-d convolutions (and one 4-d
  convolution), batches of
  :data:`BATCHES`, channels per group of :data:`CHANNELS`; the ``conv`` checks, the identities
  (on the input shapes: ``padding="same"`` keeps them) and NCReLU (on the input shapes, every
  other one with subnormal entries) use them;
- :data:`SUBNORMAL_GEOMETRIES`: three of them again, with subnormal inputs, weights or
  cotangents, for the ``conv_subnormal`` check;
- :data:`EMPTY_INPUTS`: convolutions of an input empty along a spatial dim that its padding
  makes valid, for the ``conv`` checks;
- :data:`WEIGHTS`: filter banks of more filters than a tile of 32 and filters longer than a
  block of 256, for the weight ops, batch-norm folding and the Dirac tensor;
- the stateful checks: the ops of :data:`SEQUEL_OPS` they call, each on one of its boundary
  cases.

Every array operand is laid out one of the :data:`~dirac_conformance.layouts.LAYOUTS` in turn,
so the boundary cases also reach the backend through non-contiguous views. Values come from
fixed seeds, so a failure's reproducer rebuilds them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import count
from typing import Any

import numpy as np

from .case import Case, Operand, Sequel
from .dtypes import round_to
from .layouts import LAYOUTS
from .strategies import (
    FILTER_KINDS,
    FILTER_LENGTHS,
    LONG_VALUES,
    WITH_EPS,
    conv_output,
    filter_operand,
    generated,
    long_conv_values,
    operand,
    rewritten,
)

TILES = (8, 16, 32)
"""Tile sizes of GPU kernels (output rows or columns per block, batch entries per chunk)."""

LENGTHS = (9, 17, 33)
"""Output lengths one past a tile of 8, 16 and 32: a multiple of none, so each leaves a partial
last tile for every size of :data:`TILES` (33 is past all three)."""

BATCHES = (9, 17)
"""Batch sizes one past a chunk of 8 and of 16."""

CHANNELS = (8, 9, 32, 33)
"""Channel counts: multiples of 4, 8 and 32 (vectorized loads), and one past them."""


@dataclass(frozen=True)
class Geometry:
    """A convolution given by its output: batch, groups, channels per group in and out, output
    lengths, kernel, stride and dilation; padded (``(left, right)`` pairs that keep the length
    at stride 1, one more tap on the right for an even span) or not."""

    batch: int
    groups: int
    inputs: int
    outputs: int
    lengths: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padded: bool

    def pairs(self) -> tuple[tuple[int, int], ...]:
        spans = (d * (k - 1) for k, d in zip(self.kernel, self.dilation, strict=True))
        return tuple((t // 2, t - t // 2) if self.padded else (0, 0) for t in spans)

    def x_shape(self) -> tuple[int, ...]:
        sizes = ((n - 1) * s + d * (k - 1) + 1 - left - right
                 for n, s, d, k, (left, right) in zip(self.lengths, self.stride, self.dilation,
                                                      self.kernel, self.pairs(), strict=True))
        return (self.batch, self.groups * self.inputs, *sizes)

    def w_shape(self) -> tuple[int, ...]:
        return (self.groups * self.outputs, self.inputs, *self.kernel)

    def kwargs(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.pairs(), "dilation": self.dilation,
                "groups": self.groups}


GEOMETRIES = (
    Geometry(17, 1, 33, 32, (), (), (), (), False),  # a matrix product
    Geometry(9, 1, 9, 8, (17,), (3,), (1,), (1,), True),
    Geometry(2, 1, 32, 33, (33,), (2,), (2,), (1,), False),
    Geometry(1, 1, 8, 9, (33, 17), (3, 2), (1, 1), (1, 2), True),
    Geometry(2, 2, 1, 1, (9, 33), (2, 3), (2, 1), (1, 1), False),
    Geometry(1, 1, 1, 1, (33, 33, 33), (2, 1, 3), (1, 1, 1), (1, 1, 1), True),
    Geometry(2, 33, 1, 1, (9,), (3,), (1,), (1,), True),  # depthwise
    Geometry(2, 1, 3, 8, (9, 9), (7, 7), (2, 2), (1, 1), True),  # a 7x7 stem, stride 2
    Geometry(257, 1, 1, 256, (2, 1), (1, 1), (2, 2), (1, 1), False),  # 1x1 shortcut, stride 2
    Geometry(1, 2, 2, 3, (3, 2, 3, 2), (2, 1, 3, 2), (2, 1, 1, 1), (1, 1, 2, 1), True),  # 4-d
)
"""The boundary convolutions: along every spatial dim of 1-, 2- and 3-d convolutions an output
of 33 (past every tile of :data:`TILES`), and other :data:`LENGTHS`; every batch of
:data:`BATCHES`, every channel count of :data:`CHANNELS` per group, in and out; a depthwise
convolution of 33 groups and a 7x7 kernel at stride 2 (padding 3); a 1x1 kernel at stride 2
(a ResNet shortcut, which a 1x1 fast path may take as a matrix product that drops the stride)
whose batch times filters, 257 x 256, passes 65535 (the most blocks a CUDA launch takes along
its grid's y axis); one of 4 spatial dims, past the 3 that GPU libraries convolve. Few and
small: each new shape costs a compile on a backend that compiles per shape (JAX)."""

WEIGHTS = (
    ((33, 3, 3, 3), 3),
    ((17, 8, 1), 1),
    ((9, FILTER_LENGTHS[-1]), 1),
    ((2, FILTER_LENGTHS[2]), 1),
    ((8, 4, 2, 2, 2), 2),
    ((6, 2, 3, 1, 2, 2), 2),
)
"""The boundary filter banks ``(shape, groups)``: 33, 17, 9 and 8 filters (past a tile of 32, 16
and 8, and a whole one), filters of 1031 and 257 entries (several blocks of 256 and a partial
one, one past a block), 0-4 spatial dims. Sized like the drawn cases' long and many filters, so
that a backend compiling per padded size (JAX) shares their programs."""

SEQUEL_OPS = ("conv", "conv_vjp", "dirac_weight", "dirac_weight_vjp")
"""The ops the stateful checks call twice on a boundary case: the convolutions (the tiles) and
the Dirac weight (the filter banks); the others only on drawn cases (each boundary case costs
a JAX run a few tenths of a second)."""

PURE_SCALES = ((1.0, 0.0), (0.0, 1.0))
"""``(alpha, beta)`` of two more unnormalized boundary cases of the Dirac weight: ``W_hat =
delta`` and ``W_hat = W`` (``dW = g``), where a shortcut may hand back a cached tensor or an
argument itself."""

_EPS = (2.0 ** -10, 1e-5)
"""``eps`` of the boundary weight cases, in turn: a power of two every dtype holds (so the
``tie`` filters tie exactly) and a typical one."""


def _laid_out(cases: list[Case]) -> list[Case]:
    """``cases`` with their array operands laid out the :data:`LAYOUTS` in turn."""
    slot = count()

    def turn(op: Operand | None) -> Operand | None:
        if op is None or op.python:
            return op
        return replace(op, layout=LAYOUTS[next(slot) % len(LAYOUTS)])

    return [replace(c, operands={n: turn(op) for n, op in c.operands.items()}) for c in cases]


EMPTY_INPUTS: tuple[tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]], ...] = (
    ((2, 3, 0), (4, 3, 1), {"padding": ((1, 1),)}),
    ((1, 2, 0, 3), (2, 1, 2, 2), {"stride": (1, 2), "padding": ((1, 1), (0, 0)), "groups": 2}),
    ((1, 1, 0, 0, 2), (1, 1, 1, 2, 1), {"padding": ((1, 0), (1, 1), (0, 0))}),
)
"""Convolutions ``(x shape, w shape, arguments)`` of an input empty along a spatial dim that
its padding makes long enough: the output is the bias (or zeros) alone, ``dx`` is empty and
``dW`` zero. Symmetric and asymmetric padding, 1-3 spatial dims, groups and a stride."""


def conv_examples(dtype: str, vjp: bool = False) -> list[Case]:
    """A case of ``conv`` (or, with ``vjp``, ``conv_vjp``) per :data:`GEOMETRIES` row, a bias
    every other row, and per :data:`EMPTY_INPUTS` row, with a bias, before the last geometry's
    (the stateful ``result`` check takes the last case); ``conv`` also :func:`overflow_example`,
    there too. The cotangent of the second row holds a few NaN and infinities (a port that
    zeroes NaN gradients fails in every run, on every dtype)."""
    rows = [(geo.x_shape(), geo.w_shape(), geo.kwargs(), i % 2 == 1, i)
            for i, geo in enumerate(GEOMETRIES)]
    rows[-1:-1] = [(x, w, {"stride": (1,) * (len(w) - 2), "dilation": (1,) * (len(w) - 2),
                           "groups": 1, **kwargs}, True, 100 + j)
                   for j, (x, w, kwargs) in enumerate(EMPTY_INPUTS)]
    cases = []
    for x_shape, w_shape, kwargs, biased, i in rows:
        operands: dict[str, Operand | None] = {
            "x": operand(x_shape, dtype, "normal", 3 * i),
            "w": operand(w_shape, dtype, "normal", 3 * i + 1),
            "bias": operand((w_shape[0],), dtype, "normal", 3 * i + 2) if biased else None,
        }
        if vjp:
            out = conv_output(x_shape, w_shape, kwargs)
            kind = "spoiled" if i == 1 else "normal"  # a padded one: g meets the padding
            operands = {"g": operand(out, dtype, kind, 1000 + i), **operands}
        cases.append(Case(dtype, operands, kwargs))
    cases = _laid_out(cases)
    if not vjp:
        cases[-1:-1] = [overflow_example(dtype)]
    return cases


def overflow_example(dtype: str) -> Case:
    """``conv`` summing ``LONG + 1`` products ``16 * 1`` into one output, 65552: in float16 the
    correct result is inf (a kernel that saturates at 65504 fails)."""
    value = LONG_VALUES[-1]
    x, w, _ = long_conv_values("forward", "equal", value)
    args = f"'forward', 'equal', {value!r}"
    operands: dict[str, Operand | None] = {
        name: Operand(round_to(a, dtype), dtype, origin=f"long forward equal {value}",
                      recipe=f"round_to(s.long_conv_values({args})[{k}], {dtype!r})")
        for k, (name, a) in enumerate((("x", x), ("w", w)))}
    return Case(dtype, {**operands, "bias": None},
                {"stride": (1,), "padding": 0, "dilation": (1,), "groups": 1})


SUBNORMAL_GEOMETRIES = (1, 4, 6)
"""The :data:`GEOMETRIES` rows of the ``conv_subnormal`` examples: a padded 1-d convolution, a
strided 2-d one of two groups and the depthwise one."""


def conv_subnormal_examples(dtype: str) -> list[Case]:
    """Cases of ``conv_subnormal`` on each :data:`SUBNORMAL_GEOMETRIES` row, one per operand
    that holds the subnormal values (``"subnormal_spread"``), the others normal: ``x`` (with a
    subnormal bias), ``w``, the cotangent ``g``."""
    cases = []
    for i in SUBNORMAL_GEOMETRIES:
        geo = GEOMETRIES[i]
        shapes = {"g": conv_output(geo.x_shape(), geo.w_shape(), geo.kwargs()),
                  "x": geo.x_shape(), "w": geo.w_shape()}
        for j, low in enumerate(shapes):
            operands: dict[str, Operand | None] = {
                name: operand(shape, dtype, "subnormal_spread" if name == low else "normal",
                              10 * i + j) for name, shape in shapes.items()}
            operands["bias"] = operand((geo.w_shape()[0],), dtype, "subnormal_spread",
                                       10 * i + 3) if low == "x" else None
            cases.append(Case(dtype, operands, geo.kwargs()))
    return _laid_out(cases)


def identity_examples(dtype: str, grouped: bool = True) -> list[Case]:
    """A case of the identities per :data:`GEOMETRIES` row: its output shape as ``x`` (padding
    ``"same"`` keeps it), its kernel and dilation, and its groups (one, unless ``grouped``)."""
    cases = []
    for i, geo in enumerate(GEOMETRIES):
        x = operand((geo.batch, geo.groups * geo.inputs, *geo.lengths), dtype, "normal", i)
        kwargs = {"kernel": geo.kernel, "dilation": geo.dilation,
                  "groups": geo.groups if grouped else 1}
        cases.append(Case(dtype, {"x": x}, kwargs))
    return _laid_out(cases)


LARGE_NCRELU = (257, 256, 2)
"""The shape of one more NCReLU boundary input, along the channel axis: 131 584 entries (past
2**16 and 2**17 in the output, where a 16-bit block index wraps) in 131 584 output rows of 2
(past 65535, the most blocks a CUDA launch takes along its grid's y axis)."""


def ncrelu_examples(dtype: str, vjp: bool = False) -> list[Case]:
    """A case of ``ncrelu`` (``ncrelu_vjp``) per :data:`GEOMETRIES` row, on its input's shape,
    along the channel axis or, every third row, the last; then one of :data:`LARGE_NCRELU`.
    Inputs and cotangents hold zeros of both signs."""
    shapes = [geo.x_shape() for geo in GEOMETRIES] + [LARGE_NCRELU]
    cases = []
    for i, shape in enumerate(shapes):
        axis = -1 if i % 3 == 2 and shape != LARGE_NCRELU else 1
        operands: dict[str, Operand | None] = {
            "x": operand(shape, dtype, "subnormal" if i % 2 else "signed_zeros", i)}
        if vjp:
            doubled = list(shape)
            doubled[axis] *= 2
            operands = {"g": operand(tuple(doubled), dtype, "signed_zeros", 1000 + i),
                        **operands}
        cases.append(Case(dtype, operands, {"axis": axis}))
    return _laid_out(cases)


def _filters(i: int, shape: tuple[int, ...], dtype: str) -> tuple[float, Operand]:
    """``(eps, w)`` of :data:`WEIGHTS` row ``i``: its filters take the
    :data:`~dirac_conformance.strategies.FILTER_KINDS` in turn."""
    eps = _EPS[i % len(_EPS)]
    kinds = tuple(FILTER_KINDS[(i + o) % len(FILTER_KINDS)] for o in range(shape[0]))
    return eps, filter_operand(shape, dtype, eps, kinds, i)


def normalize_examples(dtype: str, vjp: bool = False) -> list[Case]:
    """A case of ``normalize_filters`` (``normalize_filters_vjp``) per :data:`WEIGHTS` row."""
    cases = []
    for i, (shape, _) in enumerate(WEIGHTS):
        eps, w = _filters(i, shape, dtype)
        operands: dict[str, Operand | None] = {"w": w}
        if vjp:
            operands = {"g": operand(shape, dtype, "normal", 1000 + i), **operands}
        cases.append(Case(dtype, operands, {"eps": eps}))
    return _laid_out(cases)


def _scale(out_channels: int, dtype: str, centre: float, python: bool, seed: int) -> Operand:
    """A scale around ``centre``: a Python float, or a per-channel vector in ``dtype``."""
    values = centre * (1 + generated((out_channels,), "normal", seed))
    if python:
        return Operand(np.array(values[0]), "float64", python=True)
    return Operand(round_to(values, dtype), dtype, origin=f"{centre} (1 + normal seed={seed})")


def dirac_weight_examples(dtype: str, vjp: bool = False) -> list[Case]:
    """A case of ``dirac_weight`` (``dirac_weight_vjp``) per :data:`WEIGHTS` row, normalized
    but every third row, the policies in turn; then one per :data:`PURE_SCALES`."""
    cases = []
    for i, (shape, groups) in enumerate(WEIGHTS):
        eps, w = _filters(i, shape, dtype)
        operands: dict[str, Operand | None] = {
            "w": w, "alpha": _scale(shape[0], dtype, 2.0, i % 2 == 1, 2000 + i),
            "beta": _scale(shape[0], dtype, 0.5, i % 2 == 0, 2100 + i)}
        if vjp:
            operands = {"g": operand(shape, dtype, "normal", 1000 + i), **operands}
        kwargs = {"eps": eps, "normalize": i % 3 != 2, "groups": groups,
                  "policy": ("tile", "min")[i % 2]}
        cases.append(Case(dtype, operands, kwargs))
    shape, groups = WEIGHTS[1]
    for k, (alpha, beta) in enumerate(PURE_SCALES):
        operands = {"w": operand(shape, dtype, "normal", 2200 + k),
                    "alpha": Operand(np.array(alpha), "float64", python=True),
                    "beta": Operand(np.array(beta), "float64", python=True)}
        if vjp:
            operands = {"g": operand(shape, dtype, "normal", 2300 + k), **operands}
        cases.append(Case(dtype, operands, {"eps": _EPS[0], "normalize": False,
                                            "groups": groups, "policy": "tile"}))
    return _laid_out(cases)


def dirac_tensor_examples(dtype: str) -> list[Case]:
    """A case of ``dirac_tensor`` per :data:`WEIGHTS` row (its shape and groups), the policies
    in turn."""
    return [Case(dtype, {}, {"shape": shape, "groups": groups, "policy": ("tile", "min")[i % 2]})
            for i, (shape, groups) in enumerate(WEIGHTS)]


def fold_examples(dtype: str) -> list[Case]:
    """A case of ``fold_batchnorm`` per :data:`WEIGHTS` row (its shape), a bias every other row,
    channel 0's variance zero."""
    cases = []
    for i, (shape, _) in enumerate(WEIGHTS):
        channels = (shape[0],)
        var = round_to(np.abs(generated(channels, "normal", 100 + i)) + 0.5, dtype)
        var[0] = 0.0
        operands: dict[str, Operand | None] = {
            "weight": operand(shape, dtype, "normal", i),
            "bias": operand(channels, dtype, "normal", 200 + i) if i % 2 else None,
            "gamma": operand(channels, dtype, "normal", 300 + i),
            "beta": operand(channels, dtype, "normal", 400 + i),
            "mean": operand(channels, dtype, "normal", 500 + i),
            "var": Operand(var, dtype, origin=f"|normal seed={100 + i}| + 0.5, channel 0 zero"),
        }
        cases.append(Case(dtype, operands, {"eps": 1e-5}))
    return _laid_out(cases)


def sequel_examples(kind: str, ops: tuple[str, ...], firsts: dict[str, list[Case]]
                    ) -> list[Case]:
    """A case of a stateful check of ``kind`` (:data:`~dirac_conformance.strategies.SEQUELS`)
    per op of ``ops``: the op's boundary case (``firsts[op]``) at the op's position (modulo
    their count), with a second call after new values are written into one of its arrays
    (``input``), on fresh arrays (``result``), or on the same weight with other scales,
    cotangent and ``eps`` (``arguments``). ``result`` takes the op's last boundary case (for the
    Dirac weight ``W_hat = W``, :data:`PURE_SCALES`): a result that is an argument itself shows
    when the caller writes into it."""
    cases = []
    for k, op in enumerate(ops):
        first = firsts[op][-1 if kind == "result" else k % len(firsts[op])]
        if kind == "input":
            names = [n for n, o in first.operands.items()
                     if o is not None and not o.python and o.values.size]
            cases.append(rewritten(op, first, names[k % len(names)], 3000 + k))
        elif kind == "arguments" and op in WITH_EPS:
            w = first.array("w")
            new: dict[str, Operand] = {}
            for name, centre in (("alpha", 2.0), ("beta", 0.5)):
                if name in first.operands:  # of the same form (no new program to compile)
                    old = first.operands[name]
                    assert old is not None
                    new[name] = _scale(w.shape[0], first.dtype, centre, old.python, 3100 + k)
            if "g" in first.operands:
                new["g"] = operand(w.shape, first.dtype, "normal", 3000 + k)
            eps = _EPS[(k + 1) % len(_EPS)]
            cases.append(replace(first, op=op, sequel=Sequel("arguments", new, {"eps": eps})))
        else:
            cases.append(replace(first, op=op, sequel=Sequel("result")))
    return cases
