"""The contract between the public API and an implementation of it.

A backend is a small object (see :class:`Backend`) holding one implementation of every op of
the specification. The public functions in :mod:`dirac_core.api` validate and canonicalise the
arguments, then call the backend with *native* arrays of that backend and canonical arguments:

- ``stride`` and ``dilation``: tuples of positive ints, one per spatial dim;
- ``padding``: the string ``"same"`` (the spec's definition: left ``d*floor(K/2)``, right
  ``d*(K-1) - left``, see :func:`dirac_core.padding.resolve_padding`) or a tuple of
  ``(left, right)`` pairs of non-negative ints, one per spatial dim;
- ``alpha`` and ``beta``: native arrays, 0-d or of shape ``(O,)``, on the weight's device; their
  dtype may differ from the weight's (a Python scalar arrives as a 0-d array of the weight's
  working dtype: float64 for float64 weights, float32 otherwise).
  ``dirac_weight`` and the ``dw`` of its VJP have the weight's dtype; ``dalpha`` and ``dbeta``
  have alpha's and beta's dtype (as autograd gives each gradient its argument's dtype);
- ``eps``: the positive finite float the user gave (``1e-50`` and ``1e39`` included): take it in
  the working dtype *brought into its positive finite range* with
  :func:`dirac_core.normalize.working_eps` (the reference does), never cast it straight;
- ``axis``: a non-negative int; ``dtype``: a dtype name (``"float64"``, ``"float32"``, ...) or
  ``None`` for the backend's default; ``groups``: a positive int; ``policy``: ``"tile"`` or
  ``"min"``.

Backends never need to re-validate: every check that produces a user-facing error lives in the
public API, so all backends fail the same way.

No op may modify its arguments: every input array must hold the same values after the call as
before it (``dirac_conformance`` checks each input, bit for bit, around every call).

``from_numpy(a, device)`` (and ``dirac_tensor``) refuse a device the backend knows that this
machine lacks with :class:`dirac_core.DeviceUnavailableError`, and a device it does not know
at all with a plain ``ValueError`` (or ``TypeError``); each message names the device given and
the devices there are. ``dirac_conformance`` reads the first as "cannot run here" (a skip) and
the second as a mistake (a usage error).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

Array = Any  # a native array of some backend (NumPy, torch, CuPy, ...)


class Availability(NamedTuple):
    """Whether a backend can run here, and if not, why.

    Truthy exactly when ``ok`` is true, so ``if backend.available():`` reads naturally.
    """

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@runtime_checkable
class Backend(Protocol):
    """One implementation of every op of the specification (the public API of `docs/spec.md`).

    No method may modify its array arguments (write results into new arrays).

    Attributes
    ----------
    name : str
        The entry-point name the backend is registered under.
    dtypes : tuple of str
        The floating dtypes it supports, as names (``"float64"``, ``"float32"``, ``"float16"``,
        ``"bfloat16"``). The public functions refuse an array in any other dtype with a
        ``TypeError`` naming the argument before the backend sees it; the conformance suite
        checks each one.
    """

    name: str
    dtypes: tuple[str, ...]

    def available(self) -> Availability: ...
    def owns(self, x: object) -> bool: ...
    def from_numpy(self, a: np.ndarray, device: Any = None) -> Array: ...
    def to_numpy(self, x: Array) -> np.ndarray: ...
    def device(self, x: Array) -> Any: ...

    def dirac_tensor(
        self, shape: tuple[int, ...], *, groups: int, policy: str, dtype: str | None, device: Any
    ) -> Array: ...
    def normalize_filters(self, w: Array, *, eps: float) -> Array: ...
    def normalize_filters_vjp(self, g: Array, w: Array, *, eps: float) -> Array: ...
    def dirac_weight(
        self, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool, groups: int,
        policy: str,
    ) -> Array: ...
    def dirac_weight_vjp(
        self, g: Array, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool,
        groups: int, policy: str,
    ) -> tuple[Array, Array, Array]: ...
    def ncrelu(self, x: Array, *, axis: int) -> Array: ...
    def ncrelu_vjp(self, g: Array, x: Array, *, axis: int) -> Array: ...
    def conv(
        self, x: Array, w: Array, bias: Array | None, *, stride: tuple[int, ...],
        padding: str | tuple[tuple[int, int], ...], dilation: tuple[int, ...], groups: int,
    ) -> Array: ...
    def conv_vjp(
        self, g: Array, x: Array, w: Array, bias: Array | None, *, stride: tuple[int, ...],
        padding: str | tuple[tuple[int, int], ...], dilation: tuple[int, ...], groups: int,
    ) -> tuple[Array, Array, Array | None]: ...
    def fold_batchnorm(
        self, weight: Array, bias: Array | None, gamma: Array, beta: Array, mean: Array,
        var: Array, *, eps: float,
    ) -> tuple[Array, Array]: ...


OPS: tuple[str, ...] = (
    "dirac_tensor",
    "normalize_filters",
    "dirac_weight",
    "ncrelu",
    "conv",
    "fold_batchnorm",
    "normalize_filters_vjp",
    "dirac_weight_vjp",
    "ncrelu_vjp",
    "conv_vjp",
)
"""Every op a backend implements, in the order the spec lists them."""
