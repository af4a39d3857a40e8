"""Argument validators: every rule about what the public functions accept, written once.

Messages name the argument, the value given and what is accepted, so that every backend fails
in the same words.
"""

from __future__ import annotations

import math
import numbers
import operator
import re
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from .padding import Pairs, conv_output_shape, resolve_padding

FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
_DEVICE_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)(?::([0-9]+))?", re.ASCII)
POLICIES = ("tile", "min")


def as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer (Python or NumPy, not bool), else None."""
    if isinstance(value, bool | np.bool_):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def is_real(value: Any) -> bool:
    """A real scalar: Python or NumPy int/float, not bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def is_python_or_numpy_scalar(value: Any) -> bool:
    """A real number that is not an array: ``1``, ``2.5``, ``np.float32(2)``, ``np.int64(1)``,
    and a NumPy scalar of a spec dtype NumPy lacks (``ml_dtypes.bfloat16(2)``, which is no
    ``numbers.Real``).

    Examples
    --------
    >>> is_python_or_numpy_scalar(np.float16(2)), is_python_or_numpy_scalar(np.ones(()))
    (True, False)
    """
    if isinstance(value, np.generic):
        return is_real(value) or value.dtype.name in FLOAT_DTYPES
    return is_real(value) and not hasattr(value, "shape")


def describe(value: Any, limit: int = 80) -> str:
    """``repr(value)`` on one line of at most ``limit`` characters, for an error message: an
    array's repr spans lines, and a message is one line.

    Examples
    --------
    >>> describe(np.ones((2, 2)))
    'array([[1., 1.], [1., 1.]])'
    >>> describe(list(range(100)), limit=20)
    '[0, 1, 2, 3, 4, 5...'
    >>> describe([-(10**400), 1.5])
    '[-1.000e+400 (an int), 1.5]'
    """
    text = re.sub(r"\s*\n\s*", " ", repr(value))
    # A huge int (10**400 has 401 digits) by its magnitude; no float repr has 21 digits.
    text = re.sub(r"\d{21,}", lambda m: f"{Decimal(m.group()):.4g} (an int)", text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def as_float(value: Any, name: str) -> float:
    """``float(value)`` of a real number; one beyond every float's range (a Python int such as
    ``10**400``) is refused by name, not with a bare ``OverflowError``.

    Raises
    ------
    ValueError
        ``value`` is beyond float64's range.

    Examples
    --------
    >>> as_float(10**400, "eps")
    Traceback (most recent call last):
    ...
    ValueError: eps=1.000e+400 (an int) is beyond float64's range (largest 1.798e+308)
    """
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name}={describe(value)} is beyond float64's range (largest "
                         f"{sys.float_info.max:.4g})") from None


def dtype_name(dtype: Any) -> str:
    """The name of a dtype object (NumPy, CuPy or torch) or string, e.g. ``"float32"``."""
    if isinstance(dtype, str):
        if dtype in FLOAT_DTYPES:
            return dtype
        try:
            return str(np.dtype(dtype).name)  # "f4", "double", ...
        except TypeError:
            return dtype
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(dtype, type):  # a NumPy scalar type such as np.float32
        return str(np.dtype(dtype).name)
    return str(dtype).rsplit(".", 1)[-1]  # torch.float32 -> "float32"


def float_dtype_name(dtype: Any, name: str = "dtype") -> str:
    """The name of a floating dtype a layer's parameters are made in (a dtype object of any
    library, a scalar type, or a name).

    Raises
    ------
    TypeError
        Any other dtype.

    Examples
    --------
    >>> float_dtype_name(np.float16)
    'float16'
    >>> float_dtype_name("int32")
    Traceback (most recent call last):
    ...
    TypeError: dtype must be a floating dtype ('float64', 'float32', 'float16', 'bfloat16'), \
got 'int32'
    """
    given = dtype_name(dtype)
    if given not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating dtype {FLOAT_DTYPES}, got {dtype!r}")
    return given


def array_dtype(x: Any) -> str:
    return dtype_name(x.dtype)


def shape_of(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def require_array(x: Any, name: str) -> None:
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}: {describe(x)}")


def require_native(value: Any, name: str, native: type | tuple[type, ...], what: str, *,
                   scalar: bool = False) -> None:
    """An array argument of a framework's own functions must be that framework's array
    (``native``; ``what`` names it, e.g. ``"a jax.Array"``): converting another library's
    array would silently drop what that library tracks, such as a torch tensor's autograd
    graph. (:mod:`dirac_core`'s functions convert on purpose: they take ``backend=``.) With
    ``scalar``, a Python or NumPy scalar passes too, as for the scales ``alpha``/``beta``.

    Raises
    ------
    TypeError
        ``value`` is of another kind, naming its module and type.

    Examples
    --------
    >>> require_native(np.ones(2), "w", tuple, "a tuple")
    Traceback (most recent call last):
    ...
    TypeError: w must be a tuple, got numpy.ndarray: array([1., 1.])
    """
    if isinstance(value, native) or (scalar and is_python_or_numpy_scalar(value)):
        return
    accepted = f"{what} or a Python/NumPy scalar" if scalar else what
    raise TypeError(f"{name} must be {accepted}, got {type(value).__module__}."
                    f"{type(value).__name__}: {describe(value)}")


def require_float(x: Any, name: str) -> str:
    """Check that ``x`` is a floating array; return its dtype name."""
    require_array(x, name)
    dt = array_dtype(x)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a floating dtype {FLOAT_DTYPES}, got dtype {dt}")
    return dt


def require_same_dtype(dt: str, other: Any, name: str, ref_name: str) -> None:
    got = require_float(other, name)
    if got != dt:
        raise TypeError(f"{name} has dtype {got} but {ref_name} has {dt}; they must match")


def require_backend_dtypes(backend: str, dtypes: Sequence[str], **arrays: Any) -> None:
    """Every array argument in a dtype the backend declares (``None`` and scalars, which the
    API converts to a dtype of its own choosing, pass)."""
    for name, value in arrays.items():
        if value is None or is_python_or_numpy_scalar(value):
            continue
        dt = array_dtype(value)
        if dt not in dtypes:
            raise TypeError(f"{name} has dtype {dt}, which backend {backend!r} does not support; "
                            f"it accepts {tuple(dtypes)}")


def require_ndim(x: Any, name: str, minimum: int, what: str) -> tuple[int, ...]:
    shape = shape_of(x)
    if len(shape) < minimum:
        raise ValueError(f"{name} must have at least {minimum} dims ({what}), got shape {shape}")
    return shape


def pooled_map(x: Any, layer: str) -> tuple[int, ...]:
    """The spatial shape of ``x``, the input of the global average pooling ``layer``: it must
    be ``(N, C, *spatial)`` with at least one spatial dim and a non-empty map (the mean of no
    values is NaN). The one rule of every framework's pooling; an empty batch is fine.

    >>> pooled_map(np.ones((2, 3, 1, 0)), "GlobalAvgPool")
    Traceback (most recent call last):
    ...
    ValueError: x has shape (2, 3, 1, 0), an empty map; GlobalAvgPool needs at least one position
    """
    shape = tuple(x.shape)  # not made ints: an exporter's symbolic batch size stays symbolic
    if len(shape) < 3:
        require_ndim(x, "x", 3, f"{layer} takes (N, C, *spatial)")
    if 0 in shape[2:]:
        raise ValueError(f"x has shape {shape_of(x)}, an empty map; {layer} needs at least one "
                         "position")
    return shape[2:]


def require_nonempty(x: Any, name: str, what: str) -> tuple[int, ...]:
    """Every dim of ``x`` is >= 1 (a weight with no filters or an empty kernel is an error)."""
    shape = shape_of(x)
    if 0 in shape:
        raise ValueError(f"{name} has shape {shape}; every dim must be >= 1 ({what})")
    return shape


def require_shape(x: Any, name: str, expected: tuple[int, ...], what: str) -> None:
    shape = shape_of(x)
    if shape != expected:
        raise ValueError(f"{name} has shape {shape}; expected {expected} ({what})")


def positive_int(value: Any, name: str) -> int:
    number = as_int(value)
    if number is None:
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}: {value!r}")
    if number < 1:
        raise ValueError(f"{name} must be a positive int, got {number}")
    return number


def positive_number(value: Any, name: str) -> float:
    """``value`` as a float if it is a finite real number > 0 (an ``eps``, a ``width``, an
    ``init_std``).

    Raises
    ------
    TypeError
        Not a real number (a bool is not one).
    ValueError
        NaN, infinite, zero or negative.

    Examples
    --------
    >>> positive_number(1e-12, "eps")
    1e-12
    >>> positive_number(-1, "init_std")
    Traceback (most recent call last):
    ...
    ValueError: init_std must be a finite number > 0, got -1
    """
    return _finite_number(value, name, strict=True)


def non_negative_number(value: Any, name: str) -> float:
    """``value`` as a float if it is a finite real number >= 0 (batch norm's ``eps``, a
    learning rate).

    Raises
    ------
    TypeError
        Not a real number (a bool is not one).
    ValueError
        NaN, infinite or negative.
    """
    return _finite_number(value, name, strict=False)


def _finite_number(value: Any, name: str, *, strict: bool) -> float:
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    number = as_float(value, name)
    if not (math.isfinite(number) and (value > 0 if strict else value >= 0)):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} 0, "
                         f"got {value!r}")
    return number


def one_of(value: Any, name: str, accepted: Sequence[str]) -> str:
    """``value`` if it is one of the names in ``accepted``.

    Raises
    ------
    ValueError
        Anything else (the message lists what is accepted).

    Examples
    --------
    >>> one_of("gelu", "activation", ("relu", "ncrelu"))
    Traceback (most recent call last):
    ...
    ValueError: activation='gelu' is not accepted; use one of ('relu', 'ncrelu')
    """
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(f"{name}={value!r} is not accepted; use one of {tuple(accepted)}")
    return value


def bool_value(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return bool(value)


PER_CHANNEL = (False, True, "beta")


def per_channel_value(value: Any) -> bool | str:
    """``per_channel``: ``False`` (scalar alpha and beta), ``True`` (both one per output
    channel) or ``"beta"`` (a scalar alpha and one beta per output filter)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if not isinstance(value, str):
        raise TypeError(f"per_channel must be a bool or 'beta', got {type(value).__name__}: "
                        f"{value!r}")
    if value == "beta":
        return "beta"
    raise ValueError(f"per_channel={value!r} is not accepted; use one of {PER_CHANNEL}")


def scale_is_vector(per_channel: bool | str, name: str) -> bool:
    """Whether the scale ``name`` (``"alpha..."`` or ``"beta..."``) has one entry per output
    channel under ``per_channel`` (see :func:`per_channel_value`)."""
    return per_channel is True or (per_channel == "beta" and name.startswith("beta"))


WEIGHT_INITS = ("normal", "he")
BN_INITS = ("uniform", "ones")
CLASSIFIER_INITS = ("he", "default")


def pool_geometry(kernel_size: Any, stride: Any, padding: Any) -> tuple[int, int, int]:
    """A max pooling's checked ``(kernel_size, stride, padding)``: positive ints and a padding
    of at most half the window (torch's rule: a wider padding leaves windows that hold only
    padding, whose maximum would be ``-inf``). The one rule of torch's and the Flax pooling,
    and of a network read from a file.

    Raises
    ------
    TypeError, ValueError
        A non-int; a size below 1, a negative padding or one above ``kernel_size // 2``.

    Examples
    --------
    >>> pool_geometry(3, 2, 1)
    (3, 2, 1)
    """
    kernel, step = positive_int(kernel_size, "kernel_size"), positive_int(stride, "stride")
    pad = int_value(padding, "padding")
    if not 0 <= 2 * pad <= kernel:
        raise ValueError(f"padding={pad} of a max pooling must be in [0, kernel_size // 2 = "
                         f"{kernel // 2}]")
    return kernel, step, pad


INIT_STD = 0.1
"""The standard deviation of a normalized Dirac layer's initial ``W``: the authors' code's
(the paper's text says 1). It changes no output, only how fast ``W`` learns."""


def dirac_init_std(init_std: Any, normalize: Any) -> float | None:
    """How a Dirac layer's ``W`` starts: ``N(0, init_std**2)`` when it is normalized
    (``init_std`` None: :data:`INIT_STD`), He-initialised (None) when it is not, where ``W``
    is an ordinary residual-branch weight (paper eq. 14): an ``init_std`` given for it would
    be ignored, so it is refused. The one rule of the torch and the Flax Dirac layers.

    Raises
    ------
    TypeError, ValueError
        ``normalize`` not a bool; ``init_std`` not a positive finite number; ``init_std``
        given with ``normalize=False``.

    Examples
    --------
    >>> dirac_init_std(None, True), dirac_init_std(None, False)
    (0.1, None)
    """
    if not bool_value(normalize, "normalize"):
        if init_std is not None:
            raise ValueError(f"init_std={init_std!r} sets the normalized W's scale; with "
                             f"normalize=False W is He-initialised (leave init_std unset)")
        return None
    return INIT_STD if init_std is None else positive_number(init_std, "init_std")


def policy_value(policy: Any) -> str:
    return one_of(policy, "policy", POLICIES)


def groups_for(groups: Any, out_channels: int, in_channels: int | None = None) -> int:
    """Check ``groups`` divides the output (and, if given, the total input) channel count."""
    count = positive_int(groups, "groups")
    if out_channels % count:
        raise ValueError(f"groups={count} must divide the output channel count {out_channels}")
    if in_channels is not None and in_channels % count:
        raise ValueError(f"groups={count} must divide the input channel count {in_channels}")
    return count


def int_value(value: Any, name: str) -> int:
    """``value`` as an int if it is an integer (Python or NumPy, not bool).

    Raises
    ------
    TypeError
        Anything else (a bool, a float such as ``1.0``).

    Examples
    --------
    >>> int_value(True, "dim")
    Traceback (most recent call last):
    ...
    TypeError: dim must be an int, got bool: True
    """
    number = as_int(value)
    if number is None:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    return number


def axis_value(axis: Any, ndim: int, name: str = "axis") -> int:
    """``axis`` (an int in ``[-ndim, ndim)``) as a non-negative axis of an ``ndim``-d array."""
    number = int_value(axis, name)
    if not -ndim <= number < ndim:
        raise ValueError(f"{name}={number} is out of range for an array of {ndim} dims")
    return number % ndim


def ncrelu_axis(x: Any, axis: Any, name: str = "axis") -> int:
    """NCReLU's rule for its input and channel axis, wherever it is applied (the functions and
    the layers of every framework): ``x`` floating with at least one dim, ``axis`` an int in
    ``[-x.ndim, x.ndim)``; return the axis as a non-negative int.

    Raises
    ------
    TypeError
        ``x`` not a floating array (an integer or bool array would be doubled in its own
        dtype); ``axis`` not an int.
    ValueError
        ``x`` with no dims; ``axis`` out of range.

    Examples
    --------
    >>> ncrelu_axis(np.ones((2, 3)), -1)
    1
    >>> ncrelu_axis(np.ones((2, 3), int), 1)
    Traceback (most recent call last):
    ...
    TypeError: x must have a floating dtype ('float64', 'float32', 'float16', 'bfloat16'), \
got dtype int64
    """
    require_float(x, "x")
    # Only the rank is read: a traced tensor's dims may be symbolic (torch.export).
    ndim = len(x.shape)
    if ndim < 1:
        require_ndim(x, "x", 1, "an array")
    return axis_value(axis, ndim, name)


def scale_shape(value: Any, name: str, out_channels: int) -> tuple[int, ...]:
    """Shape check for alpha/beta: a scalar or a vector of length O."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a real scalar or an array, got bool")
    if is_python_or_numpy_scalar(value):
        return ()
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        raise TypeError(f"{name} must be a real scalar or an array, got "
                        f"{type(value).__name__}: {describe(value)}")
    require_float(value, name)
    shape = shape_of(value)
    if shape not in ((), (out_channels,)):
        raise ValueError(
            f"{name} has shape {shape}; accepted shapes are () (a scalar) or "
            f"({out_channels},) (one per output channel)"
        )
    return shape


def scalar_in_range(value: Any, name: str, weight_dtype: str) -> None:
    """A finite Python/NumPy scalar ``alpha``/``beta`` must fit the working dtype it is taken in
    (float64 for float64 weights, else float32): ``1e40`` would become ``inf`` there and turn
    ``W_hat`` into NaN. Arrays are the caller's data and pass unchanged."""
    if not is_python_or_numpy_scalar(value):
        return
    try:
        magnitude = abs(float(value))
    except OverflowError:  # a Python int beyond float64 (10**400): fits no working dtype
        magnitude = math.inf
    else:
        if not math.isfinite(magnitude):
            return
    work = np.float64 if weight_dtype == "float64" else np.float32
    largest = float(np.finfo(work).max)
    if magnitude > largest:
        raise ValueError(
            f"{name}={describe(value)} does not fit the working dtype {np.dtype(work).name} of "
            f"{weight_dtype} weights (largest {largest:.4g}); scale it down"
            + ("" if work is np.float64 else " or use float64 weights")
        )


def check_input_dtype(x_dtype: Any, param_dtype: Any, owner: str = "layer") -> None:
    """A layer's input must have its parameters' dtype (a dtype name or object each): no
    framework casts a float16 input to float32 parameters or back silently, and an integer
    input is no input of a convolution. ``owner`` is what the message calls the parameters'
    holder (``"network"`` at a network's door).

    Raises
    ------
    TypeError
        ``x_dtype`` differs from ``param_dtype``, naming both.

    Examples
    --------
    >>> check_input_dtype("float16", "float32")
    Traceback (most recent call last):
    ...
    TypeError: x has dtype float16 but the layer's parameters have dtype float32; cast x to \
float32 (or build the layer in float16)
    """
    x_name, param_name = dtype_name(x_dtype), dtype_name(param_dtype)
    if x_name == param_name:
        return
    instead = (f"(or build the {owner} in {x_name})" if x_name in FLOAT_DTYPES
               else "(a floating dtype is needed)")
    raise TypeError(f"x has dtype {x_name} but the {owner}'s parameters have dtype "
                    f"{param_name}; cast x to {param_name} {instead}")


# ---------------------------------------------------------------------------- padding forms


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
    number = as_int(value)
    if number is not None:
        items = (number,) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        numbers = tuple(as_int(v) for v in value)
        items = tuple(n for n in numbers if n is not None)
        if len(items) != len(numbers):
            raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}")
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


INDEX_LIMIT = 2**62
"""Every length of a convolution (a stride, the kernel's span ``d (K - 1) + 1``, the padded
input ``S + left + right``) stays below this: backends index in int64 and add such lengths."""


def check_index_range(
    sizes: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
    dilation: tuple[int, ...], pairs: Pairs,
) -> None:
    """Refuse a convolution with a length of :data:`INDEX_LIMIT` or more, naming the argument
    (the reference would compute it; torch and XLA overflow or fail inside)."""
    for dim, (size, k, s, d, (left, right)) in enumerate(
        zip(sizes, kernel, stride, dilation, pairs, strict=True)
    ):
        for name, value, length, what in (
            ("stride", s, s, "stride"),
            ("dilation", d, d * (k - 1) + 1, "kernel's span"),
            ("padding", (left, right), size + left + right, "padded input"),
        ):
            if length >= INDEX_LIMIT:
                raise ValueError(
                    f"{name}={value!r} in spatial dim {dim} makes the {what} {length} long; "
                    f"every length must stay below 2**62 (backends index in int64)"
                )


def layer_geometry(
    kernel: tuple[int, ...], stride: Any, padding: Any, dilation: Any
) -> tuple[tuple[int, ...], tuple[int, ...], Pairs]:
    """A layer's checked ``(stride, dilation, padding pairs)`` for this ``kernel``: the one
    place where layers (torch, JAX, the network builders) resolve their padding.

    Examples
    --------
    >>> layer_geometry((4, 3), 1, "same", (1, 2))
    ((1, 1), (1, 2), ((2, 1), (2, 2)))
    """
    dims = len(kernel)
    strides = as_tuple(stride, dims, "stride")
    dilations = as_tuple(dilation, dims, "dilation")
    pairs = resolve_padding(canonical_padding(padding, dims, strides), kernel, dilations)
    check_index_range((0,) * dims, kernel, strides, dilations, pairs)
    return strides, dilations, pairs


# ---------------------------------------------------------------------------- whole-op checks


WIDEST_ITEMSIZE = 8
"""Bytes per element of the widest dtype of the spec (float64)."""


def check_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """Validate a weight shape ``(O, I/groups, K...)``: at least 2 entries, each an int >= 1,
    and a tensor of that shape whose size in bytes, in any dtype of the spec, stays below
    :data:`INDEX_LIMIT` (so its element count and every entry do too): backends index in
    int64, and XLA aborts the interpreter on a byte count past int64.

    Examples
    --------
    >>> check_shape((2**20, 2**20, 3))
    (1048576, 1048576, 3)
    >>> check_shape((2**31, 2**31, 4))
    Traceback (most recent call last):
    ...
    ValueError: shape=(2147483648, 2147483648, 4) has 2**64 elements; a tensor's size in
    bytes (8 an element in float64) must stay below 2**62 (backends index in int64): fewer
    than 2**59 elements
    """
    if isinstance(shape, int) or not hasattr(shape, "__len__"):
        raise TypeError(f"{name} must be a sequence of ints (O, I/groups, K...), got {shape!r}")
    dims = as_tuple(tuple(shape), len(shape), name, minimum=1) if len(shape) else ()
    if len(dims) < 2:
        raise ValueError(
            f"{name}={tuple(shape)!r} must have at least 2 entries (O, I/groups, K1, ..., KL)"
        )
    count = math.prod(dims)
    if count * WIDEST_ITEMSIZE >= INDEX_LIMIT:
        most = INDEX_LIMIT // WIDEST_ITEMSIZE
        raise ValueError(
            f"{name}={dims!r} has {_power_of_two_text(count)} elements; a tensor's size in bytes "
            f"({WIDEST_ITEMSIZE} an element in float64) must stay below 2**62 (backends index "
            f"in int64): fewer than {_power_of_two_text(most)} elements"
        )
    return dims


def _power_of_two_text(n: int) -> str:
    """``n`` as ``2**k`` when it is a power of two, else its digits."""
    return f"2**{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n)


def check_filters(w: Any, name: str) -> str:
    """Validate a filter bank: floating, at least 2 dims, none empty; return its dtype name."""
    dt = require_float(w, name)
    require_ndim(w, name, 2, "(O, I/groups, K...)")
    require_nonempty(w, name, "at least one filter, one input channel and kernel size")
    return dt


def check_weight_args(
    w: Any, alpha: Any, beta: Any, eps: Any, normalize: Any, groups: Any, policy: Any
) -> dict[str, Any]:
    """Validate :func:`dirac_weight`'s arguments; return the canonical keyword arguments a
    backend receives. Frameworks' own functional layers reuse it to fail like the spec."""
    dt = check_filters(w, "w")
    out_channels = shape_of(w)[0]
    for name, value in (("alpha", alpha), ("beta", beta)):
        scale_shape(value, name, out_channels)
        scalar_in_range(value, name, dt)
    return {
        "eps": positive_number(eps, "eps"),
        "normalize": bool_value(normalize, "normalize"),
        "groups": groups_for(groups, out_channels),
        "policy": policy_value(policy),
    }


def device_name(device: str, name: str = "device") -> tuple[str, int | None]:
    """A device name as its kind and index: ``KIND[:INDEX]``, ``KIND`` letters, digits, ``_``,
    ``.`` or ``-`` starting with a letter or ``_``, ``INDEX`` digits (None when absent). The
    form every door that takes a device by name reads; which kinds exist is the backend's to
    say.

    Raises
    ------
    ValueError
        Not of that form (``""``, ``"cuda:x"``, ``"@cpu"``); the message names ``name``.

    Examples
    --------
    >>> device_name("cuda:1"), device_name("cpu")
    (('cuda', 1), ('cpu', None))
    """
    match = _DEVICE_NAME.fullmatch(device)
    if match is None:
        raise ValueError(f"{name}={device!r} is not a device name; accepted: KIND or "
                         f"KIND:INDEX (cpu, cuda, cuda:1)")
    kind, index = match.groups()
    return kind, None if index is None else int(index)


def check_conv_args(
    x: Any, w: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any
) -> dict[str, Any]:
    """Validate :func:`conv`'s arguments; return the canonical ``stride``, ``padding``,
    ``dilation`` and ``groups`` a backend receives (:func:`conv_geometry` without the output
    shape)."""
    return conv_geometry(x, w, bias, stride, padding, dilation, groups)[0]


def conv_geometry(
    x: Any, w: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any
) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Validate :func:`conv`'s arguments; return the canonical ``stride``, ``padding``,
    ``dilation`` and ``groups`` a backend receives, and the output shape they give
    (:func:`check_output_size`), computed once for every door that needs it.

    Examples
    --------
    >>> args, out = conv_geometry(np.ones((1, 2, 5)), np.ones((4, 2, 3)), None, 2, "valid", 1,
    ...                           1)
    >>> args["stride"], args["padding"], out
    ((2,), ((0, 0),), (1, 4, 2))
    """
    dt = require_float(x, "x")
    require_same_dtype(dt, w, "w", "x")
    require_ndim(w, "w", 2, "(O, C/groups, K...)")
    w_shape = require_nonempty(w, "w", "at least one filter, input channel and kernel tap")
    x_shape = shape_of(x)
    if len(x_shape) != len(w_shape):
        raise ValueError(
            f"x has shape {x_shape} but w has shape {w_shape}: x must be (N, C, S...) with "
            f"{len(w_shape) - 2} spatial dims, matching w"
        )
    groups = groups_for(groups, w_shape[0], x_shape[1])
    if x_shape[1] != w_shape[1] * groups:
        raise ValueError(
            f"x has {x_shape[1]} channels but w of shape {w_shape} with groups={groups} "
            f"expects {w_shape[1] * groups}"
        )
    if bias is not None:
        require_same_dtype(dt, bias, "bias", "x")
        require_shape(bias, "bias", (w_shape[0],), "one per output channel")
    ndim = len(w_shape) - 2
    stride = as_tuple(stride, ndim, "stride")
    dilation = as_tuple(dilation, ndim, "dilation")
    padding = canonical_padding(padding, ndim, stride)
    out = check_output_size(x_shape, w_shape, stride, padding, dilation)
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}, out


def check_output_size(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                      stride: tuple[int, ...], padding: str | Pairs,
                      dilation: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of a convolution of checked geometry (``padding`` canonical, see
    :func:`canonical_padding`), refusing lengths out of the index range
    (:func:`check_index_range`) and an input too small for the kernel: an empty output is an
    error, wherever the convolution runs (a function or a layer).

    Raises
    ------
    ValueError
        A length of ``2**62`` or more; a spatial dim of the output would be < 1.

    Examples
    --------
    >>> check_output_size((1, 1, 2), (1, 1, 3), (1,), ((0, 0),), (1,))
    Traceback (most recent call last):
    ...
    ValueError: x of spatial shape (2,) is too small for kernel (3,) with dilation=(1,) and \
padding=((0, 0),): the output would be (0,)
    """
    check_index_range(x_shape[2:], w_shape[2:], stride, dilation,
                      resolve_padding(padding, w_shape[2:], dilation))
    out = conv_output_shape(x_shape, w_shape, stride, padding, dilation)
    if any(s < 1 for s in out[2:]):
        raise ValueError(
            f"x of spatial shape {x_shape[2:]} is too small for kernel {w_shape[2:]} with "
            f"dilation={dilation} and padding={padding}: the output would be {out[2:]}"
        )
    return out


def has_values(x: Any) -> bool:
    """Whether ``x`` holds values to check: torch's ``meta`` tensors have only a shape and a
    dtype (every op runs on them, giving ``meta`` results)."""
    return not getattr(x, "is_meta", False)


def check_batchnorm_statistics(vectors: dict[str, np.ndarray], eps: float) -> None:
    """Finite batch-norm vectors, ``var >= 0``, ``var + eps > 0`` and a finite scale
    ``gamma / sqrt(var + eps)`` in the working dtype (where it overflows, the batch norm's own
    output is not finite, and the fold would be inf or NaN in one backend's arithmetic and
    finite in a wider one's)."""
    for name, value in vectors.items():
        if not np.isfinite(value.astype(np.float64)).all():
            raise ValueError(f"{name} must be finite in every channel, got {value}")
    var = vectors["var"].astype(np.promote_types(vectors["var"].dtype, np.float32))
    with np.errstate(over="ignore"):  # beyond float32's range eps is inf by the spec
        eps_in = var.dtype.type(eps)
    if (var < 0).any() or (var + eps_in <= 0).any():
        raise ValueError(f"var must be >= 0 with var + eps > 0 in every channel; got var={var}, "
                         f"eps={eps}")
    gamma = vectors["gamma"].astype(var.dtype)
    with np.errstate(over="ignore"):
        scale = gamma / np.sqrt(var + eps_in)
    overflow = np.flatnonzero(~np.isfinite(scale))
    if overflow.size:
        raise ValueError(
            f"gamma / sqrt(var + eps) overflows {var.dtype} in channels {overflow.tolist()}: "
            f"gamma={gamma[overflow]}, var={var[overflow]}, eps={eps} (the batch norm's output "
            f"is not finite there)"
        )
