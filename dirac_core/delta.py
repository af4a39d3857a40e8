"""The Dirac tensor: the identity of convolution (paper eq. 2), tiled for unequal channels."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def dirac_mask(out_channels: int, in_per_group: int, groups: int, policy: str, xp: ModuleType = np):
    """Boolean ``(O, I/groups)`` matrix: where the Dirac tensor holds a one at the centre.

    With ``No = O/groups`` and ``n = min(No, Ni)`` and ``o' = o % No`` the index within the
    group: ``policy="tile"`` marks ``o' % n == i % n`` (paper eq. 7-8: ``[I I ... I]`` along the
    longer axis, continued cyclically when ``n`` divides neither count); ``policy="min"`` marks
    ``o' == i`` only, as ``torch.nn.init.dirac_``.
    """
    local = xp.arange(out_channels)[:, None] % (out_channels // groups)
    inputs = xp.arange(in_per_group)[None, :]
    if policy == "min":
        return local == inputs
    n = min(out_channels // groups, in_per_group)
    return (local % n) == (inputs % n)


def dirac_tensor(
    shape: tuple[int, ...], groups: int, policy: str, dtype: Any = np.float64,
    xp: ModuleType = np,
):
    """``delta[o, i, c] = mask[o, i]`` at ``c = (floor(K1/2), ..., floor(KL/2))``, else 0.

    Only the ones are written, so a large tensor costs little more than its zeroed allocation.
    """
    out_channels, in_per_group, *kernel = shape
    delta = xp.zeros(shape, dtype=dtype)
    rows, cols = xp.nonzero(dirac_mask(out_channels, in_per_group, groups, policy, xp))
    centre = tuple(k // 2 for k in kernel)
    delta[(rows, cols, *centre)] = 1
    return delta
