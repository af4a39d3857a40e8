"""Deliberately faulty backends: proof that the suite has teeth.

Each mutant is the reference backend with one realistic bug, written as a small subclass of
:class:`dirac_core.reference.NumpyBackend` that overrides a single method. The meta-suite
(``dirac-conformance --mutants`` and ``tests/conformance``) runs the checks against every
mutant and requires each one to be caught ("killed"); the kill rate is the share caught.
"""

from __future__ import annotations

import numpy as np

from dirac_core.padding import resolve_padding
from dirac_core.reference import NumpyBackend
from dirac_core.xp import work_dtype


class Mutant(NumpyBackend):
    """A reference backend with one bug. ``first`` names the check expected to catch it (the
    meta-suite runs that check first, then the others, and stops at the first failure)."""

    first = ""


def _work(x: np.ndarray) -> np.ndarray:
    return x.astype(work_dtype(x.dtype))


def _filter_rows(w: np.ndarray) -> np.ndarray:
    return _work(w).reshape(w.shape[0], -1)


def _norms(w: np.ndarray) -> np.ndarray:
    """Per-filter L2 norms ``(O,)``, scaled by the max-abs so they cannot overflow."""
    rows = _filter_rows(w)
    scale = np.abs(rows).max(axis=1, initial=0.0)
    safe = np.where(scale > 0, scale, 1)[:, None]
    return scale * np.sqrt(np.sum((rows / safe) ** 2, axis=1))


def _per_filter(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(O, 1)`` per-filter values broadcast back to ``w``'s shape."""
    return np.broadcast_to(values.reshape((-1,) + (1,) * (w.ndim - 1)), w.shape)


class MinFillDelta(Mutant):
    """Non-square Dirac tensor filled like ``torch.nn.init.dirac_`` (``o == i`` only) instead
    of tiling ``[I I ... I]``."""

    first = "dirac_tensor"

    def dirac_tensor(self, shape, *, groups, policy, dtype, device):
        return super().dirac_tensor(shape, groups=groups, policy="min", dtype=dtype,
                                    device=device)


class OtherMiddleDelta(Mutant):
    """For even kernels the one sits at ``(K - 1) // 2``, the other middle, not ``K // 2``."""

    first = "dirac_tensor"

    def dirac_tensor(self, shape, *, groups, policy, dtype, device):
        delta = super().dirac_tensor(shape, groups=groups, policy=policy, dtype=dtype,
                                     device=device)
        even = [axis for axis, k in enumerate(shape) if axis >= 2 and k % 2 == 0]
        return np.roll(delta, -1, axis=even) if even else delta


class GroupsIgnoredDelta(Mutant):
    """The Dirac tensor built as if ``groups == 1``: not block-diagonal per group."""

    first = "dirac_tensor"

    def dirac_tensor(self, shape, *, groups, policy, dtype, device):
        return super().dirac_tensor(shape, groups=1, policy=policy, dtype=dtype, device=device)


class TorchSamePadding(Mutant):
    """``padding="same"`` resolved PyTorch's way (extra element on the right for even K)."""

    first = "conv"

    def conv(self, x, w, bias, *, stride, padding, dilation, groups):
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

    def conv(self, x, w, bias, *, stride, padding, dilation, groups):
        def low(a):
            return None if a is None else a.astype(np.float32)

        y = super().conv(low(x), low(w), low(bias), stride=stride, padding=padding,
                         dilation=dilation, groups=groups)
        return y.astype(x.dtype)


class AsymmetricPaddingDropped(Mutant):
    """(left, right) padding pairs read as symmetric: the left amount used on both sides (as
    when forwarding to a framework whose ``padding=`` takes one number per dim)."""

    first = "conv"

    def conv(self, x, w, bias, *, stride, padding, dilation, groups):
        pairs = resolve_padding(padding, w.shape[2:], dilation)
        return super().conv(x, w, bias, stride=stride, padding=tuple((p, p) for p, _ in pairs),
                            dilation=dilation, groups=groups)


class BiasGradFirstSample(Mutant):
    """``dbias`` summed over space but taken from the first sample only (batch not reduced)."""

    first = "conv_vjp"

    def conv_vjp(self, g, x, w, bias, *, stride, padding, dilation, groups):
        dx, dw, dbias = super().conv_vjp(g, x, w, bias, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups)
        if dbias is not None:
            dbias = g[:1].sum(axis=(0, *range(2, g.ndim))).astype(dbias.dtype)
        return dx, dw, dbias


class EpsInsideSqrt(Mutant):
    """``v / sqrt(sum(v**2) + eps)`` instead of ``v / max(||v||, eps)``."""

    first = "normalize_filters"

    def normalize_filters(self, w, *, eps):
        rows = _filter_rows(w)
        norm = np.sqrt(np.sum(rows * rows, axis=1) + eps)
        return (_work(w) / _per_filter(norm, w)).astype(w.dtype)


class NaiveNorm(Mutant):
    """The norm formed as ``sqrt(sum(v**2))`` without scaling: overflows and underflows."""

    first = "normalize_filters"

    def normalize_filters(self, w, *, eps):
        rows = _filter_rows(w)
        with np.errstate(over="ignore", under="ignore"):
            norm = np.maximum(np.sqrt(np.sum(rows * rows, axis=1)), eps)
        return (_work(w) / _per_filter(norm, w)).astype(w.dtype)


class WrongAxesNorm(Mutant):
    """Normalizes per *input* channel (axes mixed up for an ``(I, O, K)`` layout)."""

    first = "normalize_filters"

    def normalize_filters(self, w, *, eps):
        swapped = np.swapaxes(w, 0, 1)
        return np.swapaxes(super().normalize_filters(swapped, eps=eps), 0, 1)


class NoProjectionVjp(Mutant):
    """The normalization VJP forgets the projection: ``dv = g / ||v||``."""

    first = "normalize_filters_vjp"

    def normalize_filters_vjp(self, g, w, *, eps):
        return (_work(g) / _per_filter(np.maximum(_norms(w), eps), w)).astype(w.dtype)


class ClampBranchIgnored(Mutant):
    """The VJP of ``v / max(||v||, eps)`` always takes the norm branch (as if eps were the
    smallest float): wrong below the clamp, overflowing for all-zero filters."""

    first = "normalize_filters_vjp"

    def normalize_filters_vjp(self, g, w, *, eps):
        return super().normalize_filters_vjp(g, w, eps=np.finfo(np.float64).tiny)


class NormalizeFlagIgnored(Mutant):
    """``dirac_weight(normalize=False)`` still normalizes ``W``."""

    first = "dirac_weight"

    def dirac_weight(self, w, alpha, beta, *, eps, normalize, groups, policy):
        return super().dirac_weight(w, alpha, beta, eps=eps, normalize=True, groups=groups,
                                    policy=policy)


class PromotedResult(Mutant):
    """``W_hat`` takes the promoted dtype of ``w`` and ``alpha`` (float64 for a Python float)
    instead of the weight's dtype."""

    first = "dirac_weight"

    def dirac_weight(self, w, alpha, beta, *, eps, normalize, groups, policy):
        out = super().dirac_weight(w, alpha, beta, eps=eps, normalize=normalize, groups=groups,
                                   policy=policy)
        return out.astype(np.result_type(w, alpha, beta))


class AlphaGradNotPerChannel(Mutant):
    """``dalpha`` summed over every axis even for a per-channel ``alpha``."""

    first = "dirac_weight_vjp"

    def dirac_weight_vjp(self, g, w, alpha, beta, *, eps, normalize, groups, policy):
        dw, dalpha, dbeta = super().dirac_weight_vjp(
            g, w, alpha, beta, eps=eps, normalize=normalize, groups=groups, policy=policy
        )
        return dw, np.asarray(dalpha.sum(), dtype=dalpha.dtype), dbeta


class BetaMissingInWeightGrad(Mutant):
    """``dW = normalize_vjp(g, W)``: the chain rule through ``beta`` forgotten."""

    first = "dirac_weight_vjp"

    def dirac_weight_vjp(self, g, w, alpha, beta, *, eps, normalize, groups, policy):
        kw = {"eps": eps, "normalize": normalize, "groups": groups, "policy": policy}
        _, dalpha, dbeta = super().dirac_weight_vjp(g, w, alpha, beta, **kw)
        dw, _, _ = super().dirac_weight_vjp(g, w, alpha, np.ones_like(beta), **kw)
        return dw, dalpha, dbeta


class NcreluAxisIgnored(Mutant):
    """NCReLU always concatenates along axis 1, whatever ``axis`` says."""

    first = "ncrelu"

    def ncrelu(self, x, *, axis):
        return super().ncrelu(x, axis=1)


class NcreluGradAtZero(Mutant):
    """The NCReLU VJP passes the positive half's gradient at ``x == 0`` (``x >= 0``)."""

    first = "ncrelu_vjp"

    def ncrelu_vjp(self, g, x, *, axis):
        positive, negative = np.split(g, 2, axis=axis)
        return np.where(x >= 0, positive, 0) + np.where(x < 0, negative, 0)


class FoldWithoutEps(Mutant):
    """Batch-norm folding with ``g / sqrt(var)``: the eps forgotten."""

    first = "fold_batchnorm"

    def fold_batchnorm(self, weight, bias, gamma, beta, mean, var, *, eps):
        with np.errstate(divide="ignore", invalid="ignore"):
            return super().fold_batchnorm(weight, bias, gamma, beta, mean, var, eps=0.0)


MUTANTS: tuple[type[Mutant], ...] = tuple(
    cls for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, Mutant) and cls is not Mutant
)
"""Every faulty backend, in definition order."""
