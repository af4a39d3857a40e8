"""The Dirac tensor: the identity of convolution (paper eq. 2), tiled for unequal channels."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .backend import Array


def dirac_indices(
    out_channels: int, in_per_group: int, groups: int, policy: str, xp: ModuleType = np
) -> tuple[Array, Array]:
    """Row and column indices ``(o, i)`` of the ones of the Dirac tensor's centre slice.

    With ``No = O/groups``, ``n = min(No, Ni)`` and ``o' = o % No`` the index within the group:
    ``policy="tile"`` marks every ``i`` with ``o' % n == i % n`` (paper eq. 7-8: ``[I I ... I]``
    along the longer axis, continued cyclically when ``n`` divides neither count);
    ``policy="min"`` marks ``o' == i`` only, as ``torch.nn.init.dirac_``.

    The pairs are generated directly, ``O * ceil(Ni / n)`` of them, never an ``O x Ni`` mask.
    """
    per_group = out_channels // groups
    n = min(per_group, in_per_group)
    rows = xp.arange(out_channels)
    local = rows % per_group
    if policy == "min":
        keep = local < n
        return rows[keep], local[keep]
    # Candidates i = o' % n + j * n for j = 0, 1, ...; those below Ni are the ones.
    repeats = -(-in_per_group // n)
    cols = (local % n)[:, None] + n * xp.arange(repeats)[None, :]
    rows = xp.broadcast_to(rows[:, None], cols.shape)
    keep = cols < in_per_group
    return rows[keep], cols[keep]


def dirac_tensor(
    shape: tuple[int, ...], groups: int, policy: str, dtype: Any = np.float64,
    xp: ModuleType = np,
) -> Array:
    """``delta[o, i, c] = mask[o, i]`` at ``c = (floor(K1/2), ..., floor(KL/2))``, else 0.

    Only the ones are written, so a large tensor costs little more than its zeroed allocation.
    """
    out_channels, in_per_group, *kernel = shape
    delta = xp.zeros(shape, dtype=dtype)
    rows, cols = dirac_indices(out_channels, in_per_group, groups, policy, xp)
    centre = tuple(k // 2 for k in kernel)
    delta[(rows, cols, *centre)] = 1
    return delta
