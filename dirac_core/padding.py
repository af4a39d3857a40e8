"""Padding geometry: the spec's ``"same"`` and output sizes.

Argument forms (ints, pairs, ``"valid"``) are checked by :mod:`dirac_core.validation`.

The Dirac tensor puts its one at ``floor(K/2)`` (paper eq. 2). For ``conv(x, delta) == x`` to
hold for every kernel size, ``"same"`` pads ``left = d * floor(K/2)`` and
``right = d * (K - 1) - left``. For odd ``K`` this is PyTorch's ``"same"``; for even ``K`` it is
the mirror image of it (PyTorch puts the extra element on the right, we on the left).
"""

from __future__ import annotations

from collections.abc import Sequence

Pairs = tuple[tuple[int, int], ...]


def resolve_padding(
    padding: str | Pairs, kernel: Sequence[int], dilation: Sequence[int]
) -> Pairs:
    """Explicit ``(left, right)`` pairs for a canonical padding.

    Examples
    --------
    >>> resolve_padding("same", (4, 3), (1, 2))
    ((2, 1), (2, 2))
    """
    if padding != "same":
        return padding  # type: ignore[return-value]
    return tuple(
        (d * (k // 2), d * (k - 1) - d * (k // 2)) for k, d in zip(kernel, dilation, strict=True)
    )


def output_size(
    size: int, kernel: int, stride: int, dilation: int, pad: tuple[int, int]
) -> int:
    """Length of one spatial dim of a convolution's output (floor mode)."""
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def conv_output_shape(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    stride: tuple[int, ...],
    padding: str | Pairs,
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    """Shape of ``conv``'s output for canonical arguments."""
    pads = resolve_padding(padding, w_shape[2:], dilation)
    spatial = tuple(
        output_size(s, k, st, d, p)
        for s, k, st, d, p in zip(x_shape[2:], w_shape[2:], stride, dilation, pads, strict=True)
    )
    return (x_shape[0], w_shape[0], *spatial)
