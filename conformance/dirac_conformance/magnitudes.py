"""Condition magnitudes: the size of the terms that make up each output element.

For ops that are sums of products, the magnitude is the op itself evaluated on the absolute
values of its inputs (signs arranged so nothing cancels), computed by the reference. The
normalization VJP subtracts a projection, so its magnitude is written out here.
"""

from __future__ import annotations

import numpy as np

import dirac_core as dc


def normalize_vjp(g: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """Magnitude of ``dv = (g - u <u, g>) / max(||v||, eps)``, per filter ``v = w[o]``:
    ``(|g| + |u| <|u|, |g|>) / max(||v||, eps)``.

    ``||v||`` is recovered overflow-free as ``max|v| / max|u|`` from the reference's
    ``u = normalize_filters(|w|)`` (for a clamped filter that ratio is ``eps``).
    """
    u = np.abs(dc.normalize_filters(np.abs(w), eps=eps)).reshape(w.shape[0], -1)
    v = np.abs(w).reshape(w.shape[0], -1)
    grad = np.abs(g).reshape(u.shape)
    u_max = u.max(axis=1, keepdims=True) if u.size else np.zeros((u.shape[0], 1))
    v_max = v.max(axis=1, keepdims=True) if v.size else np.zeros((v.shape[0], 1))
    norm = np.divide(v_max, u_max, out=np.zeros_like(v_max), where=u_max > 0)
    projected = u * np.sum(u * grad, axis=1, keepdims=True)
    out: np.ndarray = ((grad + projected) / np.maximum(norm, eps)).reshape(w.shape)
    return out


def per_channel(scale: np.ndarray, ndim: int) -> np.ndarray:
    """A 0-d or ``(O,)`` scale shaped to broadcast over ``(O, ...)``."""
    scale = np.asarray(scale, dtype=np.float64)
    return scale.reshape((-1,) + (1,) * (ndim - 1)) if scale.ndim else scale
