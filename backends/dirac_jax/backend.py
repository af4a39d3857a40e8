"""The ``jax`` backend: the :class:`dirac_core.Backend` protocol on ``jax.Array``.

Forward ops are the differentiable functions of :mod:`dirac_jax.ops`; each VJP is
``jax.vjp`` of the same function, so the conformance suite checks exactly the rules
``jax.grad`` uses (the ``custom_vjp`` rules of the non-linear ops, JAX's transposes for conv).
The public functions of :mod:`dirac_core` reach it by inference from ``jax.Array`` inputs,
tracers included, so they work inside ``jax.jit``, ``jax.grad`` and ``jax.vmap``.

float64 needs JAX's 64-bit mode (``JAX_ENABLE_X64=1`` or
``jax.config.update("jax_enable_x64", True)``): without it JAX has no float64 arrays, the
backend declares float32, float16 and bfloat16 only, and refuses float64 data instead of
silently rounding it to float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from math import prod
from typing import Any, cast

import jax
import numpy as np

from dirac_core import delta as spec_delta
from dirac_core.backend import Array, Availability
from dirac_core.errors import DeviceUnavailableError
from dirac_core.padding import Pairs
from dirac_core.validation import device_name

from . import eager, ops, padded_conv


def x64_enabled() -> bool:
    """Whether JAX's 64-bit mode is on (float64 arrays exist)."""
    # jax leaves Config.read unannotated.
    return bool(jax.config.read("jax_enable_x64"))  # type: ignore[no-untyped-call]


def require_x64_for(dtype: str, what: str) -> None:
    """Refuse ``what`` (``"data"``, ``"parameters"``) in float64 while JAX's 64-bit mode is off,
    where JAX would silently make it float32.

    Raises
    ------
    TypeError
        ``dtype`` is ``"float64"`` and the mode is off.
    """
    if dtype == "float64" and not x64_enabled():
        raise TypeError(
            f"{what} in float64 need JAX's 64-bit mode, which is off: set JAX_ENABLE_X64=1 "
            "or jax.config.update('jax_enable_x64', True) (JAX would round them to float32)"
        )


# The platforms JAX names, each of which a machine may lack (its plugin or hardware absent).
PLATFORMS = ("cpu", "gpu", "cuda", "rocm", "tpu")


def jax_device(device: Any) -> jax.Device | None:
    """``None`` (JAX's default), a ``jax.Device``, or a platform name with an optional index
    (``"cpu"``, ``"gpu"``, ``"cuda:1"``).

    Raises
    ------
    ValueError
        A name that is no JAX platform (the message lists them).
    dirac_core.DeviceUnavailableError
        (a ``ValueError``) A platform JAX has no devices of here (``"cuda"`` without the JAX
        CUDA plugin, or without a GPU), or an index beyond its devices; the message names the
        platforms present.
    """
    if device is None or isinstance(device, jax.Device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be None, a jax.Device or a str, got {device!r}")
    platform, index = device_name(device)
    try:
        devices = jax.devices(platform)
    except RuntimeError as exc:
        present = sorted({d.platform for d in jax.devices()})
        if platform not in PLATFORMS:
            raise ValueError(f"device={device!r} is not a JAX platform; accepted: "
                             f"{', '.join(PLATFORMS)}, with an optional :INDEX") from exc
        hint = (" (install JAX's CUDA plugin: pip install 'jax[cuda12]')"
                if platform in ("gpu", "cuda") else "")
        raise DeviceUnavailableError(f"device={device!r}: JAX has no {platform!r} devices "
                                     f"here{hint}; present: {', '.join(present)}") from exc
    number = index or 0
    if number >= len(devices):
        raise DeviceUnavailableError(f"device={device!r}: JAX has {len(devices)} {platform} "
                                     f"device(s) here")
    return devices[number]


def _pullback(op: Callable[..., jax.Array], g: jax.Array, *inputs: jax.Array
              ) -> tuple[jax.Array, ...]:
    """``g`` pulled back through ``op(*inputs)``: one gradient per input."""
    _, pull = jax.vjp(op, *inputs)
    return cast(tuple[jax.Array, ...], pull(g))


# Every op compiled whole, once per shape, dtype and static argument (see ops.conv_jit).
# (Typed as the functions they compile: jax.jit's result returns Any.)
_dirac_tensor: Callable[[tuple[int, ...], int, str, Any], jax.Array] = jax.jit(
    ops.dirac_tensor, static_argnums=(0, 1, 2, 3))
_normalize: Callable[[jax.Array, float], jax.Array] = jax.jit(ops.normalize_filters,
                                                              static_argnums=1)
_dirac_weight, _ncrelu, _conv = ops.dirac_weight_jit, ops.ncrelu_jit, ops.conv_jit
_fold: Callable[
    [jax.Array, jax.Array | None, jax.Array, jax.Array, jax.Array, jax.Array, float],
    tuple[jax.Array, jax.Array],
] = jax.jit(ops.fold_batchnorm, static_argnums=6)


@functools.partial(jax.jit, static_argnums=2)
def _normalize_vjp(g: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    (dw,) = _pullback(lambda v: ops.normalize_filters(v, eps), g, w)
    return dw


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _dirac_weight_vjp(g: jax.Array, w: jax.Array, alpha: jax.Array, beta: jax.Array,
                      eps: float, normalize: bool, groups: int, policy: str
                      ) -> tuple[jax.Array, ...]:
    def op(v: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
        return ops.dirac_weight(v, a, b, eps, normalize, groups, policy)

    return _pullback(op, g, w, alpha, beta)


@functools.partial(jax.jit, static_argnums=2)
def _ncrelu_vjp(g: jax.Array, x: jax.Array, axis: int) -> jax.Array:
    (dx,) = _pullback(lambda v: ops.ncrelu(v, axis), g, x)
    return dx


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _conv_vjp(g: jax.Array, x: jax.Array, w: jax.Array, bias: jax.Array | None,
              stride: tuple[int, ...], padding: str | Pairs, dilation: tuple[int, ...],
              groups: int) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    def op(a: jax.Array, b: jax.Array, c: jax.Array | None) -> jax.Array:
        return ops.conv(a, b, c, stride, padding, dilation, groups)

    if bias is None:
        dx, dw = _pullback(lambda a, b: op(a, b, None), g, x, w)
        return dx, dw, None
    dx, dw, dbias = _pullback(op, g, x, w, bias)
    return dx, dw, dbias


class JaxBackend:
    """JAX implementation of every op of the specification (CPU, and GPU where JAX has one).

    Registered under the entry point ``jax`` of the ``dirac_core.backends`` group.

    Examples
    --------
    >>> import jax.numpy as jnp, dirac_core as dc
    >>> dc.ncrelu(jnp.array([[-1.0, 2.0]])).tolist()
    [[0.0, 2.0, -1.0, 0.0]]
    """

    name = "jax"

    @property
    def dtypes(self) -> tuple[str, ...]:
        """float64 (in 64-bit mode only), float32, float16, bfloat16."""
        return ("float64",) * x64_enabled() + ("float32", "float16", "bfloat16")

    def __repr__(self) -> str:
        return "JaxBackend()"

    def available(self) -> Availability:
        """Always usable: this module imported JAX, and its CPU device always works."""
        return Availability(True)

    def owns(self, x: object) -> bool:
        return isinstance(x, jax.Array)  # tracers under jit/grad/vmap included

    def from_numpy(self, a: np.ndarray, device: Any = None) -> jax.Array:
        require_x64_for(a.dtype.name, "data")
        # A copy: the result must not alias the caller's buffer (ml_dtypes' bfloat16 included).
        return cast(jax.Array, jax.device_put(np.array(a, copy=True), jax_device(device)))

    def to_numpy(self, x: jax.Array) -> np.ndarray:
        host: np.ndarray = np.asarray(x)
        return host

    def device(self, x: jax.Array) -> jax.Device | None:
        if isinstance(x, jax.core.Tracer):
            return None  # traced: new constants go where JAX puts the computation
        return next(iter(x.devices()))

    # ------------------------------------------------------------------ forward ops
    # Small concrete inputs take the padded path of dirac_jax.eager (no compile per shape);
    # tracers and large inputs the jitted op for their shape.

    def dirac_tensor(
        self, shape: tuple[int, ...], *, groups: int, policy: str, dtype: str | None, device: Any
    ) -> Array:
        dt = np.dtype(dtype or self.dtypes[0])
        if prod(shape) <= eager.MAX_ELEMENTS:
            delta = spec_delta.dirac_tensor(shape, groups, policy, dt)  # same code, on the host
        else:
            delta = _dirac_tensor(shape, groups, policy, dt)
        return jax.device_put(delta, jax_device(device))

    def normalize_filters(self, w: Array, *, eps: float) -> Array:
        if eager.applies(w):
            return eager.normalize_filters(w, eps)
        return _normalize(w, eps)

    def dirac_weight(
        self, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool, groups: int,
        policy: str,
    ) -> Array:
        args = (eps, normalize, groups, policy)
        if eager.applies(w, alpha, beta):
            return eager.dirac_weight(w, alpha, beta, *args)
        return _dirac_weight(w, alpha, beta, *args)

    def ncrelu(self, x: Array, *, axis: int) -> Array:
        if eager.applies(x):
            return eager.ncrelu(x, axis)
        return _ncrelu(x, axis)

    def conv(
        self, x: Array, w: Array, bias: Array | None, *, stride: tuple[int, ...],
        padding: str | Pairs, dilation: tuple[int, ...], groups: int,
    ) -> Array:
        plan = padded_conv.plan_for((x, w, bias), stride, padding, dilation, groups)
        if plan is not None:
            return padded_conv.conv(plan, x, w, bias)
        return _conv(x, w, bias, stride, padding, dilation, groups)

    def fold_batchnorm(
        self, weight: Array, bias: Array | None, gamma: Array, beta: Array, mean: Array,
        var: Array, *, eps: float,
    ) -> tuple[Array, Array]:
        if eager.applies(weight, bias, gamma, beta, mean, var):
            return eager.fold_batchnorm(weight, bias, gamma, beta, mean, var, eps)
        return _fold(weight, bias, gamma, beta, mean, var, eps)

    # ------------------------------------------------------------------ VJPs: jax.vjp

    def normalize_filters_vjp(self, g: Array, w: Array, *, eps: float) -> Array:
        if eager.applies(g, w):
            return eager.normalize_filters_vjp(g, w, eps)
        return _normalize_vjp(g, w, eps)

    def dirac_weight_vjp(
        self, g: Array, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool,
        groups: int, policy: str,
    ) -> tuple[Array, Array, Array]:
        args = (eps, normalize, groups, policy)
        if eager.applies(g, w, alpha, beta):
            return eager.dirac_weight_vjp(g, w, alpha, beta, *args)
        return cast(tuple[Array, Array, Array], _dirac_weight_vjp(g, w, alpha, beta, *args))

    def ncrelu_vjp(self, g: Array, x: Array, *, axis: int) -> Array:
        if eager.applies(g, x):
            return eager.ncrelu_vjp(g, x, axis)
        return _ncrelu_vjp(g, x, axis)

    def conv_vjp(
        self, g: Array, x: Array, w: Array, bias: Array | None, *, stride: tuple[int, ...],
        padding: str | Pairs, dilation: tuple[int, ...], groups: int,
    ) -> tuple[Array, Array, Array | None]:
        plan = padded_conv.plan_for((g, x, w, bias), stride, padding, dilation, groups)
        if plan is not None:
            return padded_conv.conv_vjp(plan, _conv_vjp, g, x, w, bias)
        grads = _conv_vjp(g, x, w, bias, stride, padding, dilation, groups)
        return cast("tuple[Array, Array, Array | None]", grads)
