"""The Dirac tensor: the identity of convolution (paper eq. 2), tiled for unequal channels.

Besides the tensor itself (:func:`dirac_tensor`, the spec's materialised form), this module is
the one home of *where* its ones are, as index arithmetic that no backend needs a dense tensor
for: a weight ``(O, Ni, K1, ..., KL)`` seen as ``O`` rows of ``L = Ni * prod(K)`` entries has
its ones ("taps") at the kernel centre of the input channels that match the row. A training
path adds ``alpha`` at the taps by index and gathers ``dalpha`` there (:func:`tap_columns`), or
evaluates the predicate :func:`is_tap` on iota indices inside a fused kernel.
"""

from __future__ import annotations

from math import prod
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from .backend import Array


class WeightGeometry(NamedTuple):
    """Index constants of a weight ``(O, Ni, K1, ..., KL)`` seen as ``O`` rows of ``L``.

    The order of ``spatial`` .. ``policy_min`` is the CUDA kernels' argument order
    (:meth:`delta_args`).
    """

    out_channels: int
    length: int  # L = Ni * prod(K)
    spatial: int  # prod(K): entries per (filter, input channel)
    centre: int  # flat index of the kernel centre (floor(K/2), ...) within prod(K)
    per_group: int  # No = O / groups
    n: int  # min(No, Ni): the period of the tiled identity
    policy_min: int  # 1: ones only where o' == i; 0: tiled

    @property
    def in_per_group(self) -> int:
        return self.length // self.spatial

    @property
    def period(self) -> int:
        """``p`` with ``o' % p == i % p`` exactly at the ones: ``n`` when tiled; for ``"min"``
        any ``p > max(No, Ni)``, which makes the test ``o' == i``."""
        return self.n + self.policy_min * (self.per_group + self.in_per_group)

    @property
    def taps_per_row(self) -> int:
        """The most ones any row holds: ``ceil(Ni / n)`` when tiled, 1 for ``"min"``."""
        return 1 if self.policy_min else -(-self.in_per_group // self.n)

    def delta_args(self) -> tuple[int, ...]:
        """The geometry arguments of the CUDA kernels, in their order."""
        return (self.spatial, self.centre, self.per_group, self.n, self.policy_min)


def without_taps(geo: WeightGeometry) -> WeightGeometry:
    """``geo`` with no ones: its centre moved past the kernel, so that :func:`is_tap` (and the
    CUDA kernels' test, which reads the same fields) is false everywhere; a Dirac weight
    launched with it is ``beta * normalize(W)`` alone. Not for :func:`tap_columns`.

    Examples
    --------
    >>> geo = without_taps(weight_geometry((2, 2, 3), 1, "tile"))
    >>> bool(is_tap(geo, np.arange(2)[:, None], np.arange(6)[None, :]).any())
    False
    """
    return geo._replace(centre=geo.spatial)


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


def is_tap(geo: WeightGeometry, rows: Any, cols: Any) -> Any:
    """Whether entry ``(o, j)`` of the ``(O, L)`` rows is a one of the Dirac tensor.

    ``rows`` and ``cols`` are broadcastable integer arrays of any array library, e.g. iota
    indices inside a compiled kernel, and only operators are used, so the fields of ``geo``
    may themselves be traced integers (the same compiled program then serves every
    geometry). With ``o' = o % No`` and ``i = j // prod(K)``: ``j`` must be a kernel centre
    inside the row and ``o' % p == i % p`` with ``p = geo.period``. Columns at or past
    ``L`` (a padded view) hold no ones.
    """
    inputs = cols // geo.spatial
    match = rows % geo.per_group % geo.period == inputs % geo.period
    return (cols % geo.spatial == geo.centre) & (cols < geo.length) & match


def tap_columns(
    geo: WeightGeometry, xp: ModuleType = np, device: Any = None
) -> tuple[Array, Array]:
    """``(cols, valid)``, both ``(O, R)`` with ``R = geo.taps_per_row``: the column of each
    row's r-th candidate one, and whether it is one (a row of a tiled weight whose ``n`` does
    not divide ``Ni`` has fewer; a ``"min"`` row with ``o' >= Ni`` has none). Invalid
    candidates point at the row's first candidate column, so every column is in range.

    The ones are generated directly, ``O * R`` of them, never an ``O x L`` mask, in namespace
    ``xp`` on ``device`` (inside a compiled graph, from iota indices).

    Examples
    --------
    >>> cols, valid = tap_columns(weight_geometry((2, 3, 1), 1, "tile"))
    >>> cols.tolist(), valid.tolist()
    ([[0, 2], [1, 1]], [[True, True], [True, False]])
    """
    local = xp.arange(geo.out_channels, device=device)[:, None] % geo.per_group
    first = local if geo.policy_min else local % geo.n
    inputs = first + geo.n * xp.arange(geo.taps_per_row, device=device)[None, :]
    valid = inputs < geo.in_per_group
    inputs = xp.where(valid, inputs, first)
    if geo.policy_min:  # first itself may be out of range: no one in this row
        inputs = xp.where(valid, inputs, 0)
    return inputs * geo.spatial + geo.centre, valid


def tap_indices(geo: WeightGeometry, xp: ModuleType = np) -> tuple[Array, Array]:
    """``(rows, cols)``: the Dirac tensor's ones in the ``(O, L)`` rows, one pair per one
    (the valid entries of :func:`tap_columns`, row by row).

    Examples
    --------
    >>> [a.tolist() for a in tap_indices(weight_geometry((2, 3, 1), 1, "tile"))]
    [[0, 0, 1], [0, 2, 1]]
    """
    cols, valid = tap_columns(geo, xp)
    rows = xp.broadcast_to(xp.arange(geo.out_channels)[:, None], cols.shape)
    return rows[valid], cols[valid]


def dirac_tensor(
    shape: tuple[int, ...], groups: int, policy: str, dtype: Any = np.float64,
    xp: ModuleType = np, device: Any = None,
) -> Array:
    """``delta[o, i, c] = mask[o, i]`` at ``c = (floor(K1/2), ..., floor(KL/2))``, else 0.

    With ``No = O/groups``, ``n = min(No, Ni)`` and ``o' = o % No`` the index within the group:
    ``policy="tile"`` marks every ``i`` with ``o' % n == i % n`` (paper eq. 7-8: ``[I I ... I]``
    along the longer axis, continued cyclically when ``n`` divides neither count);
    ``policy="min"`` marks ``o' == i`` only, as ``torch.nn.init.dirac_``. Built in namespace
    ``xp`` on ``device`` from :func:`is_tap` on index grids, without in-place updates (some
    namespaces have none).

    Examples
    --------
    >>> dirac_tensor((2, 3, 3), 1, "tile")[:, :, 1].tolist()
    [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    geo = weight_geometry(shape, groups, policy)
    rows = xp.arange(geo.out_channels, device=device)[:, None]
    cols = xp.arange(geo.length, device=device)[None, :]
    return xp.reshape(xp.astype(is_tap(geo, rows, cols), dtype), shape)
