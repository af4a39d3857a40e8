"""Padding, stride and dilation: canonical forms and the spec's ``"same"``.

The Dirac tensor puts its one at ``floor(K/2)`` (paper eq. 2). For ``conv(x, delta) == x`` to
hold for every kernel size, ``"same"`` pads ``left = d * floor(K/2)`` and
``right = d * (K - 1) - left``. For odd ``K`` this is PyTorch's ``"same"``; for even ``K`` it is
the mirror image of it (PyTorch puts the extra element on the right, we on the left).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._checks import as_int

Pairs = tuple[tuple[int, int], ...]


def _is_int(v: Any) -> bool:
    return as_int(v) is not None


def as_tuple(value: Any, ndim: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ``ndim`` ints, each >= ``minimum``) as a tuple.

    Raises
    ------
    TypeError
        ``value`` is not an int or a sequence of ints.
    ValueError
        Wrong length, or an entry below ``minimum``.
    """
    if _is_int(value):
        items = (as_int(value),) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not all(_is_int(v) for v in value):
            raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}")
        items = tuple(as_int(v) for v in value)
        if len(items) != ndim:
            raise ValueError(
                f"{name}={value!r} has {len(items)} entries; the weight has {ndim} spatial "
                f"dims, so give one int or {ndim} ints"
            )
    else:
        raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{name}={value!r} must be >= {minimum} in every dim")
    return items


def canonical_padding(padding: Any, ndim: int, stride: tuple[int, ...]) -> str | Pairs:
    """Validate ``padding`` and return ``"same"`` or one ``(left, right)`` pair per dim.

    Accepted forms: an int; a sequence of ``ndim`` ints; a sequence of ``ndim`` ``(left, right)``
    pairs; ``"valid"`` (no padding); ``"same"`` (only with stride 1 in every dim).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * ndim
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"padding='same' needs stride=1 in every dim, got stride={stride}; give "
                    f"explicit padding for strided convolution"
                )
            return "same"
        raise ValueError(f"padding={padding!r} is not accepted; use 'same', 'valid' or ints")
    if _is_int(padding) or (
        isinstance(padding, Sequence) and all(_is_int(p) for p in padding)
    ):
        sides = as_tuple(padding, ndim, "padding", minimum=0)
        return tuple((p, p) for p in sides)
    if isinstance(padding, Sequence) and all(
        isinstance(p, Sequence) and not isinstance(p, str) for p in padding
    ):
        if len(padding) != ndim or not all(len(p) == 2 for p in padding):
            raise ValueError(
                f"padding={padding!r} must hold {ndim} (left, right) pairs, one per spatial dim"
            )
        pairs = tuple(as_tuple(p, 2, "padding", minimum=0) for p in padding)
        return tuple((left, right) for left, right in pairs)
    raise TypeError(
        f"padding must be an int, a sequence of ints, a sequence of (left, right) pairs, "
        f"'same' or 'valid'; got {padding!r}"
    )


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
