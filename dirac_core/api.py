"""The public functions: check the arguments, pick a backend, dispatch.

Each function accepts ``backend=``: ``None`` infers it from the array arguments (NumPy arrays:
the reference; torch tensors: ``"torch"``; CuPy arrays: ``"cupy"``); a name or a backend object
forces one, converting the inputs to it, each in its own dtype. The maths of each op is in the
module named for it (:mod:`dirac_core.delta`, :mod:`dirac_core.normalize`, ...), which the
reference backend runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import validation as ck
from .backend import Array, Backend
from .registry import get_backend, infer_backend
from .xp import numpy_dtype


def _backend(backend: str | Backend | None, **arrays: Any) -> Backend:
    """The backend asked for (or inferred from the arrays), refusing any array in a dtype it
    does not declare."""
    b = infer_backend(*arrays.values()) if backend is None else get_backend(backend)
    ck.require_backend_dtypes(b.name, b.dtypes, **arrays)
    return b


def _convert(b: Backend, x: Any, device: Any = None) -> Any:
    """``x`` as a native array of ``b`` (``None`` and arrays ``b`` owns pass through)."""
    if x is None or b.owns(x):
        return x
    if isinstance(x, np.ndarray | np.generic):
        return b.from_numpy(np.asarray(x), device)
    host = np.asarray(infer_backend(x).to_numpy(x))
    dtype = ck.array_dtype(x)
    if host.dtype.name != dtype:
        # A backend may hand back a dtype NumPy lacks in a wider one (torch: bfloat16 as
        # float32, exactly); the result must keep the input's dtype.
        host = host.astype(numpy_dtype(dtype))
    return b.from_numpy(host, device)


def _scale(b: Backend, value: Any, device: Any, weight_dtype: str) -> Array:
    """``alpha``/``beta`` as a native array; a Python or NumPy scalar takes the working dtype
    of the weight (float64 for float64, else float32: half weights keep full-precision scales,
    and their gradients come back in it)."""
    if ck.is_python_or_numpy_scalar(value):
        dtype = np.float64 if weight_dtype == "float64" else np.float32
        return b.from_numpy(np.asarray(float(value), dtype=dtype), device)
    return _convert(b, value, device)


# ---------------------------------------------------------------------------- dirac tensor


def dirac_tensor(
    shape: Any,
    *,
    groups: int = 1,
    policy: str = "tile",
    dtype: Any = None,
    backend: str | Backend | None = None,
    device: Any = None,
) -> Array:
    """The Dirac (identity) tensor of a convolution weight (paper eq. 2, 7, 8).

    Parameters
    ----------
    shape : sequence of int
        ``(O, I/groups, K1, ..., KL)`` with ``L >= 0`` spatial dims, every entry >= 1.
    groups : int
        Number of groups; must divide ``O``. The tensor is block-diagonal over groups.
    policy : {"tile", "min"}
        ``"tile"``: ``delta[o, i, centre] = 1`` iff ``o % n == i % n`` with
        ``n = min(O/groups, I/groups)`` (the paper's ``[I I ... I]``). ``"min"``: only
        ``o == i < n``, as ``torch.nn.init.dirac_``.
    dtype : dtype or str, optional
        A floating dtype; the backend's default if omitted (float64 for the reference).
    backend, device
        Backend name or object (default: the reference) and a backend-specific device.

    Returns
    -------
    array of shape ``shape`` holding zeros and ones at ``centre = (floor(K1/2), ...)``.

    Raises
    ------
    ValueError
        ``shape`` with fewer than 2 entries or a non-positive one; ``groups`` not dividing
        ``O``; unknown ``policy``. TypeError: non-int shape entries, non-floating dtype.

    Examples
    --------
    >>> dirac_tensor((2, 4, 1))[:, :, 0]
    array([[1., 0., 1., 0.],
           [0., 1., 0., 1.]])
    """
    shape = ck.check_shape(shape)
    groups = ck.groups_for(groups, shape[0])
    policy = ck.policy_value(policy)
    b = get_backend("numpy" if backend is None else backend)
    name = None
    if dtype is not None:
        name = ck.dtype_name(dtype)
        if name not in b.dtypes:
            raise TypeError(
                f"dtype={dtype!r} is not supported by backend {b.name!r}; it accepts {b.dtypes}"
            )
    return b.dirac_tensor(shape, groups=groups, policy=policy, dtype=name, device=device)


# ---------------------------------------------------------------------------- normalize


def normalize_filters(w: Any, *, eps: float = 1e-12, backend: str | Backend | None = None) -> Array:
    """Divide each output filter by its L2 norm: ``w[o] / max(||w[o]||, eps)``.

    The norm runs over every axis but the first. It is computed without overflow or
    underflow for any finite input (each filter is scaled by its max-abs first) and accumulated
    in at least float32; the result has ``w``'s dtype. An all-zero filter maps to zeros.

    Parameters
    ----------
    w : array of shape ``(O, ...)``, at least 2 dims, floating.
    eps : float > 0, the clamp on the norm.

    Examples
    --------
    >>> normalize_filters(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    ck.check_filters(w, "w")
    eps = ck.positive_number(eps, "eps")
    b = _backend(backend, w=w)
    return b.normalize_filters(_convert(b, w), eps=eps)


def normalize_filters_vjp(
    g: Any, w: Any, *, eps: float = 1e-12, backend: str | Backend | None = None
) -> Array:
    """Vector-Jacobian product of :func:`normalize_filters`: returns ``dw``.

    With ``n = ||v||`` and ``u = v / n`` per filter: ``dv = (g - u <u, g>) / n`` when
    ``n >= eps``, and ``dv = g / eps`` below the clamp.
    """
    dt = ck.check_filters(w, "w")
    ck.require_same_dtype(dt, g, "g", "w")
    ck.require_shape(g, "g", ck.shape_of(w), "the shape of w")
    eps = ck.positive_number(eps, "eps")
    b = _backend(backend, g=g, w=w)
    return b.normalize_filters_vjp(_convert(b, g), _convert(b, w), eps=eps)


# ---------------------------------------------------------------------------- dirac weight


def dirac_weight(
    w: Any,
    alpha: Any,
    beta: Any,
    *,
    eps: float = 1e-12,
    normalize: bool = True,
    groups: int = 1,
    policy: str = "tile",
    backend: str | Backend | None = None,
) -> Array:
    """The Dirac parameterization: ``W_hat = alpha * delta + beta * normalize(W)`` (eq. 13).

    ``alpha`` and ``beta`` are scalars or vectors of length ``O``, broadcast over the output
    channel axis. With ``normalize=False``: ``W_hat = alpha * delta + beta * W`` (eq. 14 when
    ``alpha = beta = 1``). ``delta`` is ``dirac_tensor(w.shape, groups=groups, policy=policy)``.

    Raises
    ------
    ValueError
        ``alpha``/``beta`` of a shape other than ``()`` or ``(O,)``; ``groups`` not dividing O.
    TypeError
        Non-floating ``w``, ``alpha`` or ``beta``.

    Examples
    --------
    >>> dirac_weight(np.zeros((1, 1, 3)), 2.0, 1.0)
    array([[[0., 2., 0.]]])
    """
    args = ck.check_weight_args(w, alpha, beta, eps, normalize, groups, policy)
    b = _backend(backend, w=w, alpha=alpha, beta=beta)
    wn = _convert(b, w)
    dev, wdt = b.device(wn), ck.array_dtype(w)
    return b.dirac_weight(wn, _scale(b, alpha, dev, wdt), _scale(b, beta, dev, wdt), **args)


def dirac_weight_vjp(
    g: Any,
    w: Any,
    alpha: Any,
    beta: Any,
    *,
    eps: float = 1e-12,
    normalize: bool = True,
    groups: int = 1,
    policy: str = "tile",
    backend: str | Backend | None = None,
) -> tuple[Array, Array, Array]:
    """Vector-Jacobian product of :func:`dirac_weight`: ``(dw, dalpha, dbeta)``.

    ``dalpha = sum(g * delta)`` and ``dbeta = sum(g * normalize(W))``, summed over every axis
    for a scalar and over all axes but the first for a vector, so each has the shape its
    argument came in; ``dw = normalize_filters_vjp(beta * g, W)`` (``beta * g`` when
    ``normalize=False``).
    """
    args = ck.check_weight_args(w, alpha, beta, eps, normalize, groups, policy)
    ck.require_same_dtype(ck.array_dtype(w), g, "g", "w")
    ck.require_shape(g, "g", ck.shape_of(w), "the shape of w")
    b = _backend(backend, g=g, w=w, alpha=alpha, beta=beta)
    wn = _convert(b, w)
    dev, wdt = b.device(wn), ck.array_dtype(w)
    return b.dirac_weight_vjp(
        _convert(b, g), wn, _scale(b, alpha, dev, wdt), _scale(b, beta, dev, wdt), **args
    )


# ---------------------------------------------------------------------------- NCReLU


def ncrelu(x: Any, *, axis: int = 1, backend: str | Backend | None = None) -> Array:
    """Negative-concatenated ReLU: ``concat([max(x, 0), min(x, 0)], axis)`` (paper eq. 10).

    The output has twice ``x``'s length along ``axis``.

    Examples
    --------
    >>> ncrelu(np.array([[-1.0, 2.0]]), axis=1)
    array([[ 0.,  2., -1.,  0.]])
    """
    axis = ck.ncrelu_axis(x, axis)
    b = _backend(backend, x=x)
    return b.ncrelu(_convert(b, x), axis=axis)


def ncrelu_vjp(g: Any, x: Any, *, axis: int = 1, backend: str | Backend | None = None) -> Array:
    """Vector-Jacobian product of :func:`ncrelu`: ``dx = g_pos * [x > 0] + g_neg * [x < 0]``.

    The gradient at exactly zero is zero on both halves.
    """
    dt = ck.require_float(x, "x")
    shape = ck.require_ndim(x, "x", 1, "an array")
    axis = ck.axis_value(axis, len(shape))
    ck.require_same_dtype(dt, g, "g", "x")
    doubled = (*shape[:axis], 2 * shape[axis], *shape[axis + 1:])
    ck.require_shape(g, "g", doubled, "ncrelu's output: x's shape, doubled along axis")
    b = _backend(backend, g=g, x=x)
    return b.ncrelu_vjp(_convert(b, g), _convert(b, x), axis=axis)


# ---------------------------------------------------------------------------- convolution


def conv(
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    backend: str | Backend | None = None,
) -> Array:
    """N-d cross-correlation with zero padding, as deep-learning frameworks define "conv".

    ``y[n, o, p] = bias[o] + sum_{i, k} x_pad[n, g*Ni + i, p*s + k*d] * w[o, i, k]``, with
    ``g = o // (O/groups)``, over ``L = w.ndim - 2 >= 0`` spatial dims.

    Parameters
    ----------
    x : array ``(N, C, S1, ..., SL)``; ``w`` : array ``(O, C/groups, K1, ..., KL)``;
    bias : array ``(O,)`` or None. All of one floating dtype.
    stride, dilation : int or L ints, >= 1.
    padding : int, L ints, L ``(left, right)`` pairs, ``"valid"``, or ``"same"`` (stride 1
        only; left ``d*floor(K/2)``, right ``d*(K-1) - left``, so ``conv(x, delta) == x``).
    groups : int dividing both C and O.

    Examples
    --------
    >>> x = np.arange(4.0).reshape(1, 1, 4)
    >>> conv(x, np.ones((1, 1, 2)), padding="same")
    array([[[0., 1., 3., 5.]]])
    """
    args = ck.check_conv_args(x, w, bias, stride, padding, dilation, groups)
    b = _backend(backend, x=x, w=w, bias=bias)
    return b.conv(_convert(b, x), _convert(b, w), _convert(b, bias), **args)


def conv_vjp(
    g: Any,
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    backend: str | Backend | None = None,
) -> tuple[Array, Array, Array | None]:
    """Vector-Jacobian product of :func:`conv`: ``(dx, dw, dbias)``; ``dbias`` is None
    when ``bias`` is None.

    ``dbias[o] = sum g[:, o]``; ``dw[o, i, k] = sum_{n,p} g[n, o, p] x_pad[n, c, p*s + k*d]``;
    ``dx`` is the transposed convolution of ``g`` with ``w``, cropped back by the padding.
    """
    args, expected = ck.conv_geometry(x, w, bias, stride, padding, dilation, groups)
    ck.require_same_dtype(ck.array_dtype(x), g, "g", "x")
    ck.require_shape(g, "g", expected, "the shape of conv's output")
    b = _backend(backend, g=g, x=x, w=w, bias=bias)
    return b.conv_vjp(
        _convert(b, g), _convert(b, x), _convert(b, w), _convert(b, bias), **args
    )


# ---------------------------------------------------------------------------- batch norm


def fold_batchnorm(
    weight: Any,
    bias: Any,
    gamma: Any,
    beta: Any,
    mean: Any,
    var: Any,
    *,
    eps: float = 1e-5,
    backend: str | Backend | None = None,
) -> tuple[Array, Array]:
    """Fold an eval-mode batch norm that follows a conv into the conv.

    With ``s = gamma / sqrt(var + eps)`` per output channel: ``W' = W * s`` (broadcast over
    all axes but the first) and ``b' = (b - mean) * s + beta`` (``b = 0`` when ``bias`` is
    None). Exact for any sign of ``gamma``. Never fold across a pooling or activation layer.

    Raises
    ------
    ValueError
        ``weight`` with an empty dim; any of ``bias, gamma, beta, mean, var`` not of shape
        ``(O,)`` or not finite; a negative ``var``, or ``var + eps == 0``. (Values are checked
        where there are values: torch's ``meta`` tensors fold to ``meta`` results unchecked.)
    """
    dt = ck.require_float(weight, "weight")
    out_channels = ck.require_ndim(weight, "weight", 1, "(O, ...)")[0]
    ck.require_nonempty(weight, "weight", "at least one filter, input channel and kernel tap")
    vectors = {"bias": bias, "gamma": gamma, "beta": beta, "mean": mean, "var": var}
    for name, value in vectors.items():
        if value is None and name == "bias":
            continue
        ck.require_same_dtype(dt, value, name, "weight")
        ck.require_shape(value, name, (out_channels,), "one per output channel")
    eps = ck.non_negative_number(eps, "eps")
    b = _backend(backend, weight=weight, **vectors)
    native = {k: _convert(b, v) for k, v in vectors.items()}
    given = {k: v for k, v in native.items() if v is not None}
    if all(ck.has_values(v) for v in given.values()):  # (meta tensors have none to check)
        ck.check_batchnorm_statistics({k: b.to_numpy(v) for k, v in given.items()}, eps)
    return b.fold_batchnorm(_convert(b, weight), eps=eps, **native)
