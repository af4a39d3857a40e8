"""The maths of the fused CUDA kernels, written with array operations.

``dirac_kernels.cu`` computes the Dirac weight and NCReLU with index arithmetic, one block per
output filter or one thread per element. The functions here do the same index arithmetic and
the same sequence of floating-point steps on whole arrays, with the array module taken from the
inputs. That makes the kernels' formulation checkable without a GPU: under NumPy, CI compares
these functions against the reference :mod:`dirac_core`; on a GPU, the kernels are compared
against them and against the reference. The geometry helpers also feed the kernel launches, so
both sides share one definition of every index.

The Dirac weight, per filter ``v = w[o]`` flattened to ``L`` entries (paper eq. 13)::

    m = max_j |v_j|,   sn = ||v / m||,   ||v|| = m * sn
    u = (v / m) / sn   if m * sn >= eps, else v / eps          (clamp-min branch)
    W_hat[o] = alpha_o * delta[o] + beta_o * u                 (u = v without normalization)

and its VJP ``dW[o] = beta_o (g - u <u, g>) / ||v||`` (``beta_o g / eps`` below the clamp),
``dalpha_o = <g, delta[o]>``, ``dbeta_o = <g, u>``.
"""

from __future__ import annotations

from math import prod
from typing import Any, NamedTuple

from dirac_core.xp import array_module, work_dtype


class WeightGeometry(NamedTuple):
    """Index constants of a weight ``(O, Ni, K1, ..., KL)`` seen as ``O`` rows of ``L``.

    The order of ``spatial`` .. ``policy_min`` is the kernels' argument order.
    """

    out_channels: int
    length: int  # L = Ni * prod(K)
    spatial: int  # prod(K): entries per (filter, input channel)
    centre: int  # flat index of the kernel centre (floor(K/2), ...) within prod(K)
    per_group: int  # No = O / groups
    n: int  # min(No, Ni): the period of the tiled identity
    policy_min: int  # 1: ones only where o' == i; 0: tiled

    def delta_args(self) -> tuple[int, ...]:
        """The geometry arguments of the kernels, in their order."""
        return (self.spatial, self.centre, self.per_group, self.n, self.policy_min)


def weight_geometry(shape: tuple[int, ...], groups: int, policy: str) -> WeightGeometry:
    """Index constants for a weight of ``shape`` (canonical, already validated).

    Examples
    --------
    >>> weight_geometry((4, 2, 3, 3), 2, "tile")
    WeightGeometry(out_channels=4, length=18, spatial=9, centre=4, per_group=2, n=2, policy_min=0)
    """
    out_channels, in_per_group, *kernel = shape
    centre = 0
    for k in kernel:  # row-major flat index of (k1 // 2, ..., kL // 2)
        centre = centre * k + k // 2
    spatial = prod(kernel)
    per_group = out_channels // groups
    return WeightGeometry(
        out_channels=out_channels,
        length=in_per_group * spatial,
        spatial=spatial,
        centre=centre,
        per_group=per_group,
        n=min(per_group, in_per_group),
        policy_min=int(policy == "min"),
    )


def delta_rows(geo: WeightGeometry, xp: Any) -> Any:
    """Boolean ``(O, L)``: where the Dirac tensor holds a one, by the kernels' arithmetic."""
    o = xp.arange(geo.out_channels)[:, None]
    j = xp.arange(geo.length)[None, :]
    i = j // geo.spatial
    local = o % geo.per_group
    match = local == i if geo.policy_min else (local % geo.n) == (i % geo.n)
    return (j % geo.spatial == geo.centre) & match


def filter_scale(rows: Any) -> tuple[Any, Any]:
    """Per row: ``m = max|v|`` and ``sn = ||v / m||`` (0 for an all-zero row), as ``(O, 1)``."""
    xp = array_module(rows)
    m = xp.max(xp.abs(rows), axis=1, keepdims=True)
    scaled = rows / xp.where(m > 0, m, 1)
    return m, xp.sqrt(xp.sum(scaled * scaled, axis=1, keepdims=True))


def _rows(x: Any, out_channels: int, dtype: Any) -> Any:
    return x.astype(dtype, copy=False).reshape(out_channels, -1)


def _column(scale: Any, dtype: Any) -> Any:
    """A 0-d or ``(O,)`` scale as ``(1, 1)`` or ``(O, 1)``: the kernels' ``scale[o * step]``."""
    return scale.astype(dtype, copy=False).reshape(-1, 1)


def weight_forward(
    w: Any, alpha: Any, beta: Any, *, eps: float, normalize: bool, groups: int, policy: str
) -> Any:
    """``alpha * delta + beta * normalize(W)`` as ``dirac_weight_forward`` computes it."""
    xp = array_module(w)
    acc = work_dtype(w.dtype)
    geo = weight_geometry(w.shape, groups, policy)
    v = _rows(w, geo.out_channels, acc)
    direction = v
    if normalize:
        m, sn = filter_scale(v)
        clamped = m * sn < eps
        safe_m, safe_sn = xp.where(clamped, 1, m), xp.where(clamped, 1, sn)
        direction = xp.where(clamped, v / acc.type(eps), (v / safe_m) / safe_sn)
    a = xp.where(delta_rows(geo, xp), _column(alpha, acc), acc.type(0))
    return (a + _column(beta, acc) * direction).astype(w.dtype).reshape(w.shape)


def weight_backward(
    g: Any, w: Any, beta: Any, *, eps: float, normalize: bool, groups: int, policy: str
) -> tuple[Any, Any, Any]:
    """``(dW, dalpha_part, dbeta_part)`` as ``dirac_weight_backward`` computes them.

    The parts are per filter, ``(O,)`` in the working dtype; :func:`reduce_part` turns each
    into the gradient of a scalar or per-channel scale.
    """
    xp = array_module(g, w)
    acc = work_dtype(w.dtype)
    geo = weight_geometry(w.shape, groups, policy)
    v, grad = _rows(w, geo.out_channels, acc), _rows(g, geo.out_channels, acc)
    b = _column(beta, acc)
    dalpha_part = xp.sum(xp.where(delta_rows(geo, xp), grad, acc.type(0)), axis=1)
    if not normalize:
        dw = b * grad
        dbeta_part = xp.sum(grad * v, axis=1)
    else:
        m, sn = filter_scale(v)
        clamped = m * sn < eps
        safe_m, safe_sn = xp.where(m > 0, m, 1), xp.where(clamped, 1, sn)
        gw = xp.sum(grad * (v / safe_m), axis=1, keepdims=True)  # <g, v / m>
        gu = xp.where(clamped, m * gw / acc.type(eps), gw / safe_sn)  # <g, u>
        unit = (v / safe_m) / safe_sn
        above = (b * grad - unit * (b * gu)) / safe_sn / safe_m
        dw = xp.where(clamped, b * grad / acc.type(eps), above)
        dbeta_part = gu[:, 0]
    return dw.astype(w.dtype).reshape(w.shape), dalpha_part, dbeta_part


def reduce_part(part: Any, like: Any, dtype: Any) -> Any:
    """A per-filter gradient part, summed to a 0-d array when ``like`` (the scale) is 0-d."""
    return (part.sum() if like.ndim == 0 else part).astype(dtype)


class NcreluLayout(NamedTuple):
    """``x`` seen as ``(outer, C, inner)``: ``total`` entries, ``block = C * inner``."""

    total: int
    block: int


def ncrelu_layout(shape: tuple[int, ...], axis: int) -> NcreluLayout:
    """Entry ``j`` of ``x`` goes to ``j + (j // block) * block`` (positive half) and
    ``block`` further (negative half) of the output.

    Examples
    --------
    >>> ncrelu_layout((2, 3, 4), 1)
    NcreluLayout(total=24, block=12)
    """
    return NcreluLayout(total=prod(shape), block=prod(shape[axis:]))


def _doubled(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return (*shape[:axis], 2 * shape[axis], *shape[axis + 1 :])


def ncrelu_forward(x: Any, *, axis: int) -> Any:
    """NCReLU by the scatter ``ncrelu_forward`` does; NaN reaches both halves."""
    xp = array_module(x)
    layout = ncrelu_layout(x.shape, axis)
    flat = x.reshape(-1)
    pos = _positions(layout, xp)
    zero = xp.zeros((), x.dtype)
    y = xp.empty(2 * layout.total, x.dtype)
    y[pos] = xp.where(flat <= 0, zero, flat)
    y[pos + layout.block] = xp.where(flat >= 0, zero, flat)
    return y.reshape(_doubled(x.shape, axis))


def ncrelu_backward(g: Any, x: Any, *, axis: int) -> Any:
    """``dx`` by the gather ``ncrelu_backward`` does: 0 where ``x`` is 0 (or NaN)."""
    xp = array_module(g, x)
    layout = ncrelu_layout(x.shape, axis)
    flat, grad = x.reshape(-1), g.reshape(-1)
    pos = _positions(layout, xp)
    zero = xp.zeros((), g.dtype)
    dx = xp.where(flat > 0, grad[pos], xp.where(flat < 0, grad[pos + layout.block], zero))
    return dx.reshape(x.shape)


def _positions(layout: NcreluLayout, xp: Any) -> Any:
    j = xp.arange(layout.total)
    return j + (j // layout.block) * layout.block
