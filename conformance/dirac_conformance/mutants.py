"""Deliberately faulty backends: proof that the suite has teeth.

Each mutant is the reference backend with one realistic bug, written as a small subclass of
:class:`dirac_core.reference.NumpyBackend` that overrides a single method. The meta-suite
(``dirac-conformance --mutants`` and ``tests/conformance``) runs the checks against every
mutant and requires each one to be caught ("killed"); the kill rate is the share caught.

Each carries ``first`` (the check expected to catch it) and ``fault`` (the fault class of
:data:`FAULT_CLASSES` it belongs to), so the meta-suite can show every class is covered.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dirac_core.normalize import working_eps
from dirac_core.padding import resolve_padding
from dirac_core.reference import NumpyBackend
from dirac_core.validation import FLOAT_DTYPES
from dirac_core.xp import work_dtype

FAULT_CLASSES: dict[str, str] = {
    "geometry": "the Dirac tensor, padding, axes or reductions laid out wrongly",
    "formula": "a term, a factor or a branch of a formula wrong",
    "dtype": "results in the wrong dtype or precision",
    "in-place": "an input array modified in place",
    "tie": "a norm exactly equal to eps sent to the clamp branch",
    "eps-range": "eps outside about 1e-12..1e-3 mishandled (underflow, overflow)",
    "empty-batch": "an empty batch (N = 0) refused",
    "half-accumulation": "half-precision inputs accumulated in half precision",
    "inexact-identity": "conv(x, delta) within rounding of x but not bit-exact",
    "layout": "an input read as if C-contiguous (strides, offsets, views ignored)",
    "tile": "the last partial tile, chunk or block dropped, or a vectorized channel path wrong",
    "grid": "work past a launch limit left undone (65535 blocks along y, a 16-bit block index)",
    "state": "a cache or a shared result that is wrong on the second call",
    "scale-dtype": "scale gradients in the promoted dtype, not the scale's",
    "non-finite": "NaN or inf not propagated, or an overflow not inf, as the spec decides",
    "signed-zero": "a zero of the other sign where the spec fixes it",
    "flush": "subnormal inputs read as zero (a flush to zero)",
    "double-rounding": "a half-precision result rounded twice",
    "broken": "the backend crashes on loading or in available()",
    "hang": "an op that never returns",
}
"""The fault classes the project's mutants cover, each by at least one mutant."""


class Mutant(NumpyBackend):
    """A reference backend with one bug. ``first`` names the check expected to catch it (the
    meta-suite runs that check first, then the others, and stops at the first failure);
    ``fault`` is its class in :data:`FAULT_CLASSES`."""

    first = ""
    fault = ""


def _work(x: Any) -> Any:
    return x.astype(work_dtype(x.dtype))


def _filter_rows(w: Any) -> Any:
    return _work(w).reshape(w.shape[0], -1)


def _norms(w: Any) -> Any:
    """Per-filter L2 norms ``(O,)``, scaled by the max-abs so they cannot overflow."""
    rows = _filter_rows(w)
    scale = np.abs(rows).max(axis=1, initial=0.0)
    safe = np.where(scale > 0, scale, 1)[:, None]
    return scale * np.sqrt(np.sum((rows / safe) ** 2, axis=1))


def _per_filter(values: Any, w: Any) -> Any:
    """``(O, 1)`` per-filter values broadcast back to ``w``'s shape."""
    return np.broadcast_to(values.reshape((-1,) + (1,) * (w.ndim - 1)), w.shape)


class MinFillDelta(Mutant):
    """Non-square Dirac tensor filled like ``torch.nn.init.dirac_`` (``o == i`` only) instead
    of tiling ``[I I ... I]``."""

    first = "dirac_tensor"
    fault = "geometry"

    def dirac_tensor(self, shape: tuple[int, ...], *, groups: int, policy: str,
                     dtype: str | None, device: Any) -> Any:
        return super().dirac_tensor(shape, groups=groups, policy="min", dtype=dtype,
                                    device=device)


class OtherMiddleDelta(Mutant):
    """For even kernels the one sits at ``(K - 1) // 2``, the other middle, not ``K // 2``."""

    first = "dirac_tensor"
    fault = "geometry"

    def dirac_tensor(self, shape: tuple[int, ...], *, groups: int, policy: str,
                     dtype: str | None, device: Any) -> Any:
        delta = super().dirac_tensor(shape, groups=groups, policy=policy, dtype=dtype,
                                     device=device)
        even = [axis for axis, k in enumerate(shape) if axis >= 2 and k % 2 == 0]
        return np.roll(delta, -1, axis=even) if even else delta


class GroupsIgnoredDelta(Mutant):
    """The Dirac tensor built as if ``groups == 1``: not block-diagonal per group."""

    first = "dirac_tensor"
    fault = "geometry"

    def dirac_tensor(self, shape: tuple[int, ...], *, groups: int, policy: str,
                     dtype: str | None, device: Any) -> Any:
        return super().dirac_tensor(shape, groups=1, policy=policy, dtype=dtype, device=device)


class TorchSamePadding(Mutant):
    """``padding="same"`` resolved PyTorch's way (extra element on the right for even K)."""

    first = "conv"
    fault = "geometry"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        if padding == "same":
            padding = tuple(
                (d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                for k, d in zip(w.shape[2:], dilation, strict=True)
            )
        return super().conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                            groups=groups)


class Float32Accumulation(Mutant):
    """float64 convolution computed in float32 (a "fast path" that drops precision)."""

    first = "conv"
    fault = "dtype"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        def low(a: Any) -> Any:
            return None if a is None else a.astype(np.float32)

        y = super().conv(low(x), low(w), low(bias), stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
        return y.astype(x.dtype)


class AsymmetricPaddingDropped(Mutant):
    """(left, right) padding pairs read as symmetric: the left amount used on both sides (as
    when forwarding to a framework whose ``padding=`` takes one number per dim)."""

    first = "conv"
    fault = "geometry"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        pairs = resolve_padding(padding, w.shape[2:], dilation)
        return super().conv(x, w, bias, stride=stride, padding=tuple((p, p) for p, _ in pairs),
                            dilation=dilation, groups=groups)


class BiasGradFirstSample(Mutant):
    """``dbias`` summed over space but taken from the first sample only (batch not reduced)."""

    first = "conv_vjp"
    fault = "geometry"

    def conv_vjp(self, g: Any, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any,
                 dilation: Any, groups: int) -> Any:
        dx, dw, dbias = super().conv_vjp(g, x, w, bias, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups)
        if dbias is not None:
            dbias = g[:1].sum(axis=(0, *range(2, g.ndim))).astype(dbias.dtype)
        return dx, dw, dbias


class EpsInsideSqrt(Mutant):
    """``v / sqrt(sum(v**2) + eps)`` instead of ``v / max(||v||, eps)``."""

    first = "normalize_filters"
    fault = "formula"

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        rows = _filter_rows(w)
        norm = np.sqrt(np.sum(rows * rows, axis=1) + eps)
        return (_work(w) / _per_filter(norm, w)).astype(w.dtype)


class NaiveNorm(Mutant):
    """The norm formed as ``sqrt(sum(v**2))`` without scaling: overflows and underflows."""

    first = "normalize_filters"
    fault = "formula"

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        rows = _filter_rows(w)
        with np.errstate(over="ignore", under="ignore"):
            norm = np.maximum(np.sqrt(np.sum(rows * rows, axis=1)), eps)
        return (_work(w) / _per_filter(norm, w)).astype(w.dtype)


class WrongAxesNorm(Mutant):
    """Normalizes per *input* channel (axes mixed up for an ``(I, O, K)`` layout)."""

    first = "normalize_filters"
    fault = "geometry"

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        swapped = np.swapaxes(w, 0, 1)
        return np.swapaxes(super().normalize_filters(swapped, eps=eps), 0, 1)


class NoProjectionVjp(Mutant):
    """The normalization VJP forgets the projection: ``dv = g / ||v||``."""

    first = "normalize_filters_vjp"
    fault = "formula"

    def normalize_filters_vjp(self, g: Any, w: Any, *, eps: float) -> Any:
        return (_work(g) / _per_filter(np.maximum(_norms(w), eps), w)).astype(w.dtype)


class ClampBranchIgnored(Mutant):
    """The VJP of ``v / max(||v||, eps)`` always takes the norm branch (as if eps were the
    smallest float): wrong below the clamp, overflowing for all-zero filters."""

    first = "normalize_filters_vjp"
    fault = "formula"

    def normalize_filters_vjp(self, g: Any, w: Any, *, eps: float) -> Any:
        return super().normalize_filters_vjp(g, w, eps=np.finfo(np.float64).tiny)


class NormalizeFlagIgnored(Mutant):
    """``dirac_weight(normalize=False)`` still normalizes ``W``."""

    first = "dirac_weight"
    fault = "formula"

    def dirac_weight(self, w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool,
                     groups: int, policy: str) -> Any:
        return super().dirac_weight(w, alpha, beta, eps=eps, normalize=True, groups=groups,
                                    policy=policy)


class PromotedResult(Mutant):
    """``W_hat`` takes the promoted dtype of ``w`` and ``alpha`` (float64 for a Python float)
    instead of the weight's dtype."""

    first = "dirac_weight"
    fault = "dtype"

    def dirac_weight(self, w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool,
                     groups: int, policy: str) -> Any:
        out = super().dirac_weight(w, alpha, beta, eps=eps, normalize=normalize, groups=groups,
                                   policy=policy)
        return out.astype(np.result_type(w, alpha, beta))


class AlphaGradNotPerChannel(Mutant):
    """``dalpha`` summed over every axis even for a per-channel ``alpha``."""

    first = "dirac_weight_vjp"
    fault = "geometry"

    def dirac_weight_vjp(self, g: Any, w: Any, alpha: Any, beta: Any, *, eps: float,
                         normalize: bool, groups: int, policy: str) -> Any:
        dw, dalpha, dbeta = super().dirac_weight_vjp(
            g, w, alpha, beta, eps=eps, normalize=normalize, groups=groups, policy=policy
        )
        return dw, np.asarray(dalpha.sum(), dtype=dalpha.dtype), dbeta


class BetaMissingInWeightGrad(Mutant):
    """``dW = normalize_vjp(g, W)``: the chain rule through ``beta`` forgotten."""

    first = "dirac_weight_vjp"
    fault = "formula"

    def dirac_weight_vjp(self, g: Any, w: Any, alpha: Any, beta: Any, *, eps: float,
                         normalize: bool, groups: int, policy: str) -> Any:
        kw: dict[str, Any] = {"eps": eps, "normalize": normalize, "groups": groups,
                              "policy": policy}
        _, dalpha, dbeta = super().dirac_weight_vjp(g, w, alpha, beta, **kw)
        dw, _, _ = super().dirac_weight_vjp(g, w, alpha, np.ones_like(beta), **kw)
        return dw, dalpha, dbeta


class NcreluAxisIgnored(Mutant):
    """NCReLU always concatenates along axis 1, whatever ``axis`` says."""

    first = "ncrelu"
    fault = "geometry"

    def ncrelu(self, x: Any, *, axis: int) -> Any:
        return super().ncrelu(x, axis=1)


class NcreluGradAtZero(Mutant):
    """The NCReLU VJP passes the positive half's gradient at ``x == 0`` (``x >= 0``)."""

    first = "ncrelu_vjp"
    fault = "formula"

    def ncrelu_vjp(self, g: Any, x: Any, *, axis: int) -> Any:
        positive, negative = np.split(g, 2, axis=axis)
        return np.where(x >= 0, positive, 0) + np.where(x < 0, negative, 0)


class FoldWithoutEps(Mutant):
    """Batch-norm folding with ``g / sqrt(var)``: the eps forgotten."""

    first = "fold_batchnorm"
    fault = "formula"

    def fold_batchnorm(self, weight: Any, bias: Any, gamma: Any, beta: Any, mean: Any,
                       var: Any, *, eps: float) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return super().fold_batchnorm(weight, bias, gamma, beta, mean, var, eps=0.0)


class NormalizeInPlace(Mutant):
    """``normalize_filters`` writes its result into ``w`` and returns it (saving an
    allocation): the caller's weights are destroyed."""

    first = "normalize_filters"
    fault = "in-place"

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        w[...] = super().normalize_filters(w, eps=eps)
        return w


class NcreluVjpInPlace(Mutant):
    """The NCReLU VJP masks the two halves of ``g`` in place before adding them."""

    first = "ncrelu_vjp"
    fault = "in-place"

    def ncrelu_vjp(self, g: Any, x: Any, *, axis: int) -> Any:
        positive, negative = np.split(g, 2, axis=axis)
        positive *= x > 0
        negative *= x < 0
        return positive + negative


class TieToClamp(Mutant):
    """The normalization VJP sends ``||v|| == eps`` to the clamp branch (``<=`` for ``<``);
    the spec sends the tie to the norm branch."""

    first = "normalize_filters_vjp"
    fault = "tie"

    def normalize_filters_vjp(self, g: Any, w: Any, *, eps: float) -> Any:
        out = super().normalize_filters_vjp(g, w, eps=eps)
        grad = _work(g)
        tie = _norms(w) == working_eps(eps, grad.dtype)
        return np.where(_per_filter(tie, w), grad / working_eps(eps, grad.dtype), out).astype(
            w.dtype)


class EpsNotClamped(Mutant):
    """``eps`` cast straight to the working dtype: ``1e-50`` becomes 0 in float32 (an all-zero
    filter gives 0/0 = NaN) and ``1e300`` becomes inf (every filter gives 0)."""

    first = "normalize_filters"
    fault = "eps-range"

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        rows = _filter_rows(w)
        with np.errstate(all="ignore"):
            clamp = np.maximum(_norms(w), rows.dtype.type(eps))
            return (_work(w) / _per_filter(clamp, w)).astype(w.dtype)


class EmptyBatchRefused(Mutant):
    """``conv`` runs one sample at a time and stacks the results: an empty batch raises."""

    first = "conv"
    fault = "empty-batch"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        return np.stack([super(EmptyBatchRefused, self).conv(x[n:n + 1], w, bias, **kw)[0]
                         for n in range(x.shape[0])])


class HalfAccumulationConv(Mutant):
    """float16 and bfloat16 ``conv`` accumulated in that dtype over the input channels (a
    half-precision accumulator per output element, as a naive half kernel keeps)."""

    first = "conv"
    fault = "half-accumulation"
    dtypes = FLOAT_DTYPES  # bfloat16 via ml_dtypes

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        if x.dtype.itemsize != 2:
            return super().conv(x, w, bias, **kw)
        per_group = w.shape[1]
        y = super().conv(x[:, 0::per_group], w[:, :1], None, **kw)
        for c in range(1, per_group):  # channel c of every group, one half sum at a time
            y = y + super().conv(x[:, c::per_group], w[:, c:c + 1], None, **kw)
        return y if bias is None else y + bias.reshape((-1,) + (1,) * (y.ndim - 2))


class HalfAccumulationNorm(Mutant):
    """float16 and bfloat16 ``normalize_filters`` whose sum of squares (of the max-scaled
    filter, so it cannot overflow) is accumulated in that dtype."""

    first = "normalize_filters"
    fault = "half-accumulation"
    dtypes = FLOAT_DTYPES  # bfloat16 via ml_dtypes

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        out = super().normalize_filters(w, eps=eps)
        if w.dtype.itemsize != 2:
            return out
        rows = w.reshape(w.shape[0], -1)
        scale = np.abs(rows).max(axis=1, keepdims=True)
        scaled = rows / np.where(scale > 0, scale, 1).astype(w.dtype)
        total = np.zeros((rows.shape[0], 1), w.dtype)
        for j in range(rows.shape[1]):
            total = total + scaled[:, j:j + 1] * scaled[:, j:j + 1]
        above = (scale.astype(np.float32) * np.sqrt(total) >= working_eps(eps, np.float32))
        unit = scaled / np.where(total > 0, np.sqrt(total), 1).astype(w.dtype)
        return np.where(_per_filter(above, w), unit.reshape(w.shape), out).astype(w.dtype)


class HalfFold(Mutant):
    """float16 batch-norm folding computed in float16: ``eps`` below float16's range becomes
    0 (a zero variance then gives inf), and ``var + eps`` is rounded to float16."""

    first = "fold_batchnorm"
    fault = "half-accumulation"

    def fold_batchnorm(self, weight: Any, bias: Any, gamma: Any, beta: Any, mean: Any,
                       var: Any, *, eps: float) -> Any:
        if weight.dtype != np.float16:
            return super().fold_batchnorm(weight, bias, gamma, beta, mean, var, eps=eps)
        with np.errstate(all="ignore"):
            scale = gamma / np.sqrt(var + np.float16(eps))
            shift = -mean if bias is None else bias - mean
            return (weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1)),
                    shift * scale + beta)


class RescaledConv(Mutant):
    """``conv`` on inputs pre-scaled by 3 and the result scaled back (as a backend that rescales
    activations to stay in range): within rounding of the reference, but ``conv(x, delta)`` is
    no longer exactly ``x``."""

    first = "identity_eq1"
    fault = "inexact-identity"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        three = x.dtype.type(3)
        y = super().conv(x * three, w, None, stride=stride, padding=padding, dilation=dilation,
                         groups=groups) / three
        return y if bias is None else y + bias.reshape((-1,) + (1,) * (y.ndim - 2))




# ------------------------------------------------------------------ the faults of GPU ports


def _as_if_contiguous(x: Any) -> Any:
    """What a kernel handed ``x``'s data pointer reads when it assumes C-contiguous memory:
    ``x.size`` elements from where ``x`` starts in its buffer (zeros past the buffer's end)."""
    owner = x
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if not owner.flags.c_contiguous:
        return np.ascontiguousarray(x)
    memory = owner.reshape(-1)
    start = (x.__array_interface__["data"][0] - owner.__array_interface__["data"][0])
    start //= x.itemsize
    read = memory[start:start + x.size]
    out = np.zeros(x.size, x.dtype)
    out[:read.size] = read
    return out.reshape(x.shape)


class RawPointerNorm(Mutant):
    """``normalize_filters`` reads ``w`` through its data pointer as if it were C-contiguous
    (a raw-pointer kernel that never looks at strides)."""

    first = "normalize_filters"
    fault = "layout"

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        return super().normalize_filters(_as_if_contiguous(w), eps=eps)


class RawPointerScales(Mutant):
    """``dirac_weight`` reads a per-channel ``alpha`` as contiguous memory (a strided view of
    a larger array gets every other element of its parent)."""

    first = "dirac_weight"
    fault = "layout"

    def dirac_weight(self, w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool,
                     groups: int, policy: str) -> Any:
        return super().dirac_weight(w, _as_if_contiguous(alpha), beta, eps=eps,
                                    normalize=normalize, groups=groups, policy=policy)


class RawPointerConvVjp(Mutant):
    """``conv_vjp`` reads the cotangent ``g`` as contiguous memory."""

    first = "conv_vjp"
    fault = "layout"

    def conv_vjp(self, g: Any, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any,
                 dilation: Any, groups: int) -> Any:
        return super().conv_vjp(_as_if_contiguous(g), x, w, bias, stride=stride,
                                padding=padding, dilation=dilation, groups=groups)


def _packed_rows(x: Any) -> Any:
    """What a kernel reads that checks only that ``x``'s innermost stride is one (and its
    strides positive, as in PyTorch) and then walks packed rows from where ``x`` starts."""
    if x.ndim < 2 or x.flags.c_contiguous or x.strides[-1] != x.itemsize or min(x.strides) < 0:
        return x
    return _as_if_contiguous(x)


class PackedRowsConv(Mutant):
    """``conv`` reads ``x`` as packed rows whenever its innermost stride is one: a channel
    slice of a larger array (``torch.chunk`` of an NCReLU output) is read with its parent's
    other channels."""

    first = "conv"
    fault = "layout"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        return super().conv(_packed_rows(x), w, bias, stride=stride, padding=padding,
                            dilation=dilation, groups=groups)


class LastTileDropped(Mutant):
    """``conv`` computed in tiles of 16 output positions along the last axis, launched for
    ``P // 16`` tiles: the last partial tile of an output longer than 16 stays zero."""

    first = "conv"
    fault = "tile"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        y = super().conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                         groups=groups)
        if y.ndim > 2 and y.shape[-1] > 16:
            y = y.copy()
            y[..., y.shape[-1] // 16 * 16:] = 0
        return y


class LastBatchChunkDropped(Mutant):
    """``conv_vjp`` processes the batch in chunks of 8 samples, launched for ``N // 8``
    chunks: ``dw`` misses the last partial chunk of a batch larger than 8."""

    first = "conv_vjp"
    fault = "tile"

    def conv_vjp(self, g: Any, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any,
                 dilation: Any, groups: int) -> Any:
        kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        dx, dw, dbias = super().conv_vjp(g, x, w, bias, **kw)
        n = x.shape[0]
        if n > 8 and n % 8:
            kept = n // 8 * 8
            _, dw, _ = super().conv_vjp(g[:kept], x[:kept], w, bias, **kw)
        return dx, dw, dbias


class Vector4Channels(Mutant):
    """``conv`` takes a float4-vectorized path when the channels per group are a multiple of 4,
    and its loop bound skips the last vector of channels once there are 8 or more."""

    first = "conv"
    fault = "tile"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        per_group = w.shape[1]
        if per_group % 4 == 0 and per_group >= 8:
            w = w.copy()
            w[:, per_group - 4:] = 0
        return super().conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                            groups=groups)


class DepthwiseTileDropped(Mutant):
    """``conv`` takes a depthwise path for 4 or more groups of one input channel each, in
    tiles of 8 groups launched ``groups // 8`` times: the groups past the last whole tile get
    only their bias."""

    first = "conv"
    fault = "tile"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        if groups >= 4 and w.shape[1] == 1 and groups % 8:
            w = w.copy()
            w[groups // 8 * 8 * (w.shape[0] // groups):] = 0  # the filters never convolved
        return super().conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                            groups=groups)


class LongKernelLastTap(Mutant):
    """``conv`` unrolls kernels of up to 5 taps per axis; its generic loop for longer ones
    stops one tap short (``k < K - 1``), so a 7x7 stem loses a row and a column of taps."""

    first = "conv"
    fault = "geometry"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        long = [axis for axis in range(2, w.ndim) if w.shape[axis] >= 6]
        if long:
            w = w.copy()
            for axis in long:
                w[(slice(None),) * axis + (-1,)] = 0
        return super().conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                            groups=groups)


class BlockTailNorm(Mutant):
    """``normalize_filters`` sums each filter's squares in blocks of 256 entries and drops the
    last partial block of a filter longer than 256."""

    first = "normalize_filters"
    fault = "tile"

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        rows = _work(w).reshape(w.shape[0], -1)
        if rows.shape[1] <= 256 or rows.shape[1] % 256 == 0:
            return super().normalize_filters(w, eps=eps)
        head = rows[:, :rows.shape[1] // 256 * 256]
        scale = np.abs(head).max(axis=1, keepdims=True)
        safe = np.where(scale > 0, scale, 1)
        norm = scale * np.sqrt(np.sum((head / safe) ** 2, axis=1, keepdims=True))
        out = rows / np.maximum(norm, working_eps(eps, rows.dtype))
        return out.reshape(w.shape).astype(w.dtype)


class CachedWeight(Mutant):
    """``dirac_weight`` caches ``W_hat`` per weight array (by ``id``), stale once the caller
    updates ``w`` in place, as an optimizer step does."""

    first = "state_input"
    fault = "state"

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}

    def dirac_weight(self, w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool,
                     groups: int, policy: str) -> Any:
        key = (id(w), w.shape, w.dtype, eps, normalize, groups, policy, id(alpha), id(beta))
        if key not in self.cache:
            self.cache[key] = (w, super().dirac_weight(
                w, alpha, beta, eps=eps, normalize=normalize, groups=groups, policy=policy))
        return self.cache[key][1].copy()


class CachedDirection(Mutant):
    """``dirac_weight`` caches ``normalize(W)`` per weight array and keeps it when ``eps``
    changes (keyed by the array only)."""

    first = "state_arguments"
    fault = "state"

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}

    def dirac_weight(self, w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool,
                     groups: int, policy: str) -> Any:
        key = (id(w), normalize)
        if key not in self.cache:
            self.cache[key] = (w, eps)
        kept_eps = self.cache[key][1]
        return super().dirac_weight(w, alpha, beta, eps=kept_eps, normalize=normalize,
                                    groups=groups, policy=policy)


class SharedDelta(Mutant):
    """``dirac_tensor`` returns one cached array per shape and dtype: a caller that writes into
    it corrupts every later call."""

    first = "state_result"
    fault = "state"

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}

    def dirac_tensor(self, shape: tuple[int, ...], *, groups: int, policy: str,
                     dtype: str | None, device: Any) -> Any:
        key = (shape, groups, policy, dtype)
        if key not in self.cache:
            self.cache[key] = super().dirac_tensor(shape, groups=groups, policy=policy,
                                                   dtype=dtype, device=device)
        return self.cache[key]


class AliasedPureWeight(Mutant):
    """``dirac_weight`` with ``normalize=False``, ``alpha = 0`` and ``beta = 1`` returns ``w``
    itself (the shortcut ``W_hat = W``): the caller's result is its weight, and writing into
    one writes into the other."""

    first = "state_input"
    fault = "state"

    def dirac_weight(self, w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool,
                     groups: int, policy: str) -> Any:
        if not normalize and not np.any(alpha) and np.all(np.asarray(beta) == 1):
            return w
        return super().dirac_weight(w, alpha, beta, eps=eps, normalize=normalize,
                                    groups=groups, policy=policy)


class AliasedWeightGrad(Mutant):
    """``dirac_weight_vjp`` with ``normalize=False`` and ``beta = 1`` returns the cotangent
    itself as ``dW`` (``dW = beta g = g``): correct numbers, but the caller's gradient is its
    ``g``, and writing into one writes into the other."""

    first = "state_result"
    fault = "state"

    def dirac_weight_vjp(self, g: Any, w: Any, alpha: Any, beta: Any, *, eps: float,
                         normalize: bool, groups: int, policy: str) -> Any:
        dw, dalpha, dbeta = super().dirac_weight_vjp(g, w, alpha, beta, eps=eps,
                                                     normalize=normalize, groups=groups,
                                                     policy=policy)
        if not normalize and np.all(np.asarray(beta) == 1):
            dw = g
        return dw, dalpha, dbeta


class ReusedOutputBuffer(Mutant):
    """``ncrelu`` writes every result into one output buffer per shape and dtype (a workspace
    kept between calls): a caller's earlier result changes under it at the next call."""

    first = "state_input"
    fault = "state"

    def __init__(self) -> None:
        self.buffers: dict[Any, Any] = {}

    def ncrelu(self, x: Any, *, axis: int) -> Any:
        y: np.ndarray = super().ncrelu(x, axis=axis)
        buffer: np.ndarray = self.buffers.setdefault((y.shape, y.dtype.str), y)
        buffer[...] = y
        return buffer


class PromotedScaleGradients(Mutant):
    """The scale gradients come back in the promoted dtype of the weight and the scale, not the
    scale's own (a float16 ``alpha`` of float32 weights gets a float32 ``dalpha``)."""

    first = "dirac_weight_vjp"
    fault = "scale-dtype"

    def dirac_weight_vjp(self, g: Any, w: Any, alpha: Any, beta: Any, *, eps: float,
                         normalize: bool, groups: int, policy: str) -> Any:
        dw, dalpha, dbeta = super().dirac_weight_vjp(
            g, w, alpha, beta, eps=eps, normalize=normalize, groups=groups, policy=policy)
        return (dw, dalpha.astype(np.result_type(w.dtype, alpha.dtype)),
                dbeta.astype(np.result_type(w.dtype, beta.dtype)))


class NanDroppingMax(Mutant):
    """The filter's max-abs taken with ``fmax`` (CUDA's ``fmaxf``), which drops NaN: a filter
    with a NaN normalizes its other entries instead of giving NaN throughout."""

    first = "normalize_filters"
    fault = "non-finite"

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        rows = _filter_rows(w)
        finite = np.where(np.isfinite(rows), rows, 0).reshape(w.shape)
        norm = np.maximum(_norms(finite), working_eps(eps, rows.dtype))
        with np.errstate(invalid="ignore"):
            return (rows / norm[:, None]).reshape(w.shape).astype(w.dtype)


class FmaxNcrelu(Mutant):
    """NCReLU written with ``fmax(x, 0)`` and ``fmin(x, 0)``: a NaN input gives 0 in both
    halves instead of NaN."""

    first = "ncrelu"
    fault = "non-finite"

    def ncrelu(self, x: Any, *, axis: int) -> Any:
        zero = x.dtype.type(0)
        halves = (np.fmax(x, zero), np.fmin(x, zero))
        # Its zeros +0.0, as the spec says: the NaN is its one fault.
        return np.concatenate([np.where(h == 0, zero, h) for h in halves], axis=axis)


class MaskMultiplyNcrelu(Mutant):
    """NCReLU as ``x * (x > 0)`` and ``x * (x < 0)`` (a multiply by the mask, as fused kernels
    often write it): a negative entry gives ``-0.0`` in the positive half, where the spec
    says ``+0.0``."""

    first = "ncrelu"
    fault = "signed-zero"

    def ncrelu(self, x: Any, *, axis: int) -> Any:
        return np.concatenate([x * (x > 0), x * (x < 0)], axis=axis)


class FlushedNcrelu(Mutant):
    """NCReLU compared with zero under a flush to zero (XLA on CPU, a kernel built with
    ``-ftz``): a subnormal input is neither positive nor negative, so both halves are 0."""

    first = "ncrelu"
    fault = "flush"

    def ncrelu(self, x: Any, *, axis: int) -> Any:
        return super().ncrelu(_flushed(x), axis=axis)


def _flushed(a: Any) -> Any:
    """``a`` with its subnormal entries read as zero (None stays None)."""
    if a is None:
        return None
    return np.where(np.abs(a) < np.finfo(a.dtype).tiny, a.dtype.type(0), a)


class _ConvInOneDtype(Mutant):
    """A ``conv`` wrong only in ``dtype`` (a kernel built or specialised for that dtype):
    :meth:`faulty` computes it there, the reference everywhere else."""

    dtype: Any = None

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        if x.dtype != self.dtype:
            return super().conv(x, w, bias, **geometry)
        return self.faulty(x, w, bias, geometry)

    def faulty(self, x: Any, w: Any, bias: Any, geometry: dict[str, Any]) -> Any:
        raise NotImplementedError


class ConvFlushSubnormal32(_ConvInOneDtype):
    """float32 ``conv`` built with fast math (``-use_fast_math``, ``-ftz=true``): subnormal
    entries of ``x``, ``w`` and ``bias`` read as zero and a subnormal result written as zero,
    in single precision only (float64 and the half types keep theirs)."""

    first = "conv_subnormal"
    fault = "flush"
    dtype = np.float32

    def faulty(self, x: Any, w: Any, bias: Any, geometry: dict[str, Any]) -> Any:
        return _flushed(Mutant.conv(self, _flushed(x), _flushed(w), _flushed(bias), **geometry))


class ZeroWeightsSkipped(Mutant):
    """``conv`` skips the taps whose weight is zero (a sparse kernel's shortcut, natural for a
    Dirac tensor's zeros): a NaN or infinite input there gives a finite output, where IEEE
    arithmetic gives ``0 * inf = NaN``."""

    first = "conv"
    fault = "non-finite"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
        spoiled = ~np.isfinite(x)
        y = super().conv(x, w, bias, **geometry)
        if not spoiled.any():
            return y
        skipped = super().conv(np.where(spoiled, 0, x).astype(x.dtype), w, bias, **geometry)
        # Outputs whose non-finite inputs all meet zero weights never see them.
        seen = super().conv(spoiled.astype(x.dtype), (w != 0).astype(w.dtype), None, **geometry)
        return np.where(seen > 0, y, skipped)


class NanGradientZeroed(Mutant):
    """``normalize_filters_vjp`` zeroes NaN cotangent entries first (a "safe" port's
    ``nan_to_num``): a NaN gradient becomes a finite one."""

    first = "normalize_filters_vjp"
    fault = "non-finite"

    def normalize_filters_vjp(self, g: Any, w: Any, *, eps: float) -> Any:
        return super().normalize_filters_vjp(np.where(np.isnan(g), 0, g).astype(g.dtype), w,
                                             eps=eps)


class HalfWeightRoundedTwice(Mutant):
    """float16 ``dirac_weight`` rounds ``normalize(W)`` to float16, then computes
    ``alpha * delta + beta * u`` in float32 and rounds again."""

    first = "dirac_weight"
    fault = "double-rounding"

    def dirac_weight(self, w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool,
                     groups: int, policy: str) -> Any:
        if w.dtype != np.float16:
            return super().dirac_weight(w, alpha, beta, eps=eps, normalize=normalize,
                                        groups=groups, policy=policy)
        u = (super().normalize_filters(w, eps=eps) if normalize else w).astype(np.float32)
        delta = super().dirac_tensor(w.shape, groups=groups, policy=policy, dtype="float32",
                                     device=None)
        a = np.asarray(alpha, np.float32).reshape((-1,) + (1,) * (w.ndim - 1))
        b = np.asarray(beta, np.float32).reshape((-1,) + (1,) * (w.ndim - 1))
        return (a * delta + b * u).astype(np.float16)


class HalfBiasAddedLate(Mutant):
    """float16 ``conv`` rounds the float32 sum to float16 and adds the bias afterwards, in
    float32, rounding a second time."""

    first = "conv"
    fault = "double-rounding"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        y = super().conv(x, w, None, stride=stride, padding=padding, dilation=dilation,
                         groups=groups)
        if bias is None:
            return y
        shaped = bias.reshape((-1,) + (1,) * (y.ndim - 2))
        if x.dtype != np.float16:
            return y + shaped
        return (y.astype(np.float32) + shaped.astype(np.float32)).astype(np.float16)


class Conv1x1StrideDropped(Mutant):
    """``conv`` takes a 1x1 kernel without padding as a matrix product over the input's
    positions and forgets the stride: a ResNet shortcut at stride 2 gives the first output
    positions of the stride-1 convolution."""

    first = "conv"
    fault = "geometry"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        geometry = {"padding": padding, "dilation": dilation, "groups": groups}
        y = super().conv(x, w, bias, stride=stride, **geometry)
        pointwise = w.ndim > 2 and all(k == 1 for k in w.shape[2:])
        if not pointwise or padding == "same" or any(p != (0, 0) for p in padding):
            return y
        dense = super().conv(x, w, bias, stride=(1,) * len(stride), **geometry)
        return np.ascontiguousarray(dense[(..., *(slice(0, n) for n in y.shape[2:]))])


class DiracConvReturnsInput(Mutant):
    """``conv`` recognises the Dirac tensor at stride 1 with ``"same"`` padding and returns
    ``x`` itself (``conv(x, delta) = x``, exactly): right values, but the caller's result is
    its input, and writing into one writes into the other."""

    first = "identity_eq1"
    fault = "state"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        if (bias is None and padding == "same" and all(s == 1 for s in stride)
                and w.shape[0] == x.shape[1] and w.dtype == x.dtype):
            delta = super().dirac_tensor(w.shape, groups=groups, policy="tile",
                                         dtype=w.dtype.name, device=None)
            if np.array_equal(w, delta):
                return x
        return super().conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                            groups=groups)


class NcreluVjpMaskedSum(Mutant):
    """The NCReLU VJP as the sum of the two halves of ``g``, each masked with ``where``:
    ``g+ = -0.0`` at ``x > 0`` comes out ``-0.0 + 0.0 = +0.0``, where the spec keeps the
    cotangent's own zero."""

    first = "ncrelu_vjp"
    fault = "signed-zero"

    def ncrelu_vjp(self, g: Any, x: Any, *, axis: int) -> Any:
        positive, negative = np.split(g, 2, axis=axis)
        zero = g.dtype.type(0)
        return np.where(x > 0, positive, zero) + np.where(x < 0, negative, zero)


class NcreluBlockIndex16(Mutant):
    """float32 NCReLU on a vectorized path whose block index is 16 bits wide: of an input of
    more than 65536 entries, the output entries past ``2**17 - 1`` are never written."""

    first = "ncrelu"
    fault = "grid"

    def ncrelu(self, x: Any, *, axis: int) -> Any:
        y = super().ncrelu(x, axis=axis)
        if x.dtype == np.float32 and x.size > 65536:
            y = y.copy()
            y.reshape(-1)[2**17 - 1:] = 0
        return y


def _rows_capped(y: Any, rows: int) -> Any:
    """``y`` with its rows (``y.reshape(-1, last)``) past 65535 zeroed, if it has ``rows`` of
    them (a launch with one block per row along the grid's y axis, which takes 65535)."""
    if rows <= 65535:
        return y
    y = np.array(y, copy=True, order="C")  # so that the reshape below is a view
    y.reshape(rows, -1)[65535:] = 0
    return y


class NcreluGridRows(Mutant):
    """NCReLU launched with one block per row of the output (all axes but the last) along
    the grid's y axis: rows past 65535 are never written."""

    first = "ncrelu"
    fault = "grid"

    def ncrelu(self, x: Any, *, axis: int) -> Any:
        y = super().ncrelu(x, axis=axis)
        return _rows_capped(y, y.size // max(1, y.shape[-1]) if y.ndim else 1)


class ConvGridRows(Mutant):
    """``conv`` launched with one block per (sample, filter) along the grid's y axis: past
    65535 of them, the outputs are never written."""

    first = "conv"
    fault = "grid"

    def conv(self, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any, dilation: Any,
             groups: int) -> Any:
        y = super().conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                         groups=groups)
        return _rows_capped(y, y.shape[0] * y.shape[1])


class HalfSaturatingConv(_ConvInOneDtype):
    """float16 ``conv`` clamps its float32 result to float16's largest number before
    rounding (an "overflow guard", or a saturating conversion): an output past the range
    gives 65504, where rounding gives inf."""

    first = "conv"
    fault = "non-finite"
    dtype = np.float16

    def faulty(self, x: Any, w: Any, bias: Any, geometry: dict[str, Any]) -> Any:
        wide = Mutant.conv(self, x.astype(np.float32), w.astype(np.float32),
                           None if bias is None else bias.astype(np.float32), **geometry)
        top = float(np.finfo(np.float16).max)
        return np.where(np.isfinite(wide), np.clip(wide, -top, top), wide).astype(np.float16)


class ConvVjpNanZeroed(Mutant):
    """``conv_vjp`` zeroes NaN cotangent entries first (a "safe" port's ``nan_to_num``): a NaN
    gradient becomes a finite one."""

    first = "conv_vjp"
    fault = "non-finite"

    def conv_vjp(self, g: Any, x: Any, w: Any, bias: Any, *, stride: Any, padding: Any,
                 dilation: Any, groups: int) -> Any:
        cleaned = np.where(np.isnan(g), 0, g).astype(g.dtype)
        return super().conv_vjp(cleaned, x, w, bias, stride=stride, padding=padding,
                                dilation=dilation, groups=groups)


class AvailableRaises(Mutant):
    """``available()`` raises (a driver query that throws) instead of reporting a reason: a
    crash, to be reported as a failure, not as a backend that cannot run here."""

    first = "load"
    fault = "broken"

    def available(self) -> Any:
        raise RuntimeError("cudaGetDeviceCount failed: unknown error")


class AvailableNone(Mutant):
    """``available()`` returns None (a forgotten ``return``)."""

    first = "load"
    fault = "broken"

    def available(self) -> Any:
        return None


class HangingNcrelu(Mutant):
    """NCReLU never returns for inputs with more than 64 elements (a grid-stride loop whose
    step is 0 when the grid is computed in a narrow integer)."""

    first = "ncrelu"
    fault = "hang"

    def ncrelu(self, x: Any, *, axis: int) -> Any:
        if x.size > 64:
            while True:  # spins politely: the stuck thread must not starve the others
                time.sleep(0.05)
        return super().ncrelu(x, axis=axis)


MUTANTS: tuple[type[Mutant], ...] = tuple(
    cls for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, Mutant) and not cls.__name__.startswith("_")
    and cls is not Mutant
)
"""Every faulty backend, in definition order."""
