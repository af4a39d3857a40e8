"""Strategies and independent computations for the dirac_core tests."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FINITE = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)


def arrays(shape, elements=FINITE):
    return hnp.arrays(np.float64, shape, elements=elements)


@st.composite
def conv_case(draw, max_dims: int = 3, same: bool | None = None):
    """A random valid conv call: ``(x, w, bias, kwargs)`` over 0..max_dims spatial dims."""
    ndim = draw(st.integers(0, max_dims))
    groups = draw(st.sampled_from([1, 2, 3]))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    use_same = draw(st.booleans()) if same is None else same
    if use_same:
        stride, padding = (1,) * ndim, "same"
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
        padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(ndim))
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    size = tuple(draw(st.integers(max(1, s - 2), s + 3)) for s in span)
    if not use_same:  # keep every output dim >= 1
        size = tuple(
            max(sz, s - p[0] - p[1]) for sz, s, p in zip(size, span, padding, strict=True)
        )
    batch = draw(st.integers(1, 2))
    x = draw(arrays((batch, cin, *size)))
    w = draw(arrays((cout, cin // groups, *kernel)))
    bias = draw(st.none() | arrays((cout,)))
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x, w, bias, kwargs


def same_pads(kernel, dilation):
    """The spec's "same" written out independently of dirac_core.padding."""
    pads = []
    for k, d in zip(kernel, dilation, strict=True):
        total = d * (k - 1)
        left = d * (k // 2)
        pads.append((left, total - left))
    return tuple(pads)


def naive_conv(x, w, bias, stride, padding, dilation, groups):
    """Cross-correlation straight from its definition: one dot product per output entry."""
    kernel = w.shape[2:]
    pads = same_pads(kernel, dilation) if padding == "same" else padding
    xp = np.pad(x, ((0, 0), (0, 0), *pads))
    out = [
        (xp.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(len(kernel))
    ]
    cout, cg = w.shape[:2]
    og = cout // groups
    y = np.zeros((x.shape[0], cout, *out))
    for o in range(cout):
        chans = slice((o // og) * cg, (o // og + 1) * cg)
        for p in itertools.product(*(range(n) for n in out)):
            window = tuple(
                slice(p[i] * stride[i], p[i] * stride[i] + dilation[i] * (kernel[i] - 1) + 1,
                      dilation[i])
                for i in range(len(kernel))
            )
            patch = xp[(slice(None), chans, *window)]
            y[(slice(None), o, *p)] = (patch * w[o]).reshape(x.shape[0], -1).sum(axis=1)
        if bias is not None:
            y[:, o] += bias[o]
    return y


def directional_fd(f, args, index, direction, h=1e-6):
    """Central difference of ``f`` along ``direction`` in argument ``index``."""
    plus = list(args)
    minus = list(args)
    plus[index] = args[index] + h * direction
    minus[index] = args[index] - h * direction
    return (np.asarray(f(*plus)) - np.asarray(f(*minus))) / (2 * h)
