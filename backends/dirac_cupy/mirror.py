"""The fused kernels' CPU mirror as a backend, for the conformance suite.

:class:`MirrorBackend` is the reference backend with the ops the cupy backend fuses (the Dirac
weight, filter normalization and NCReLU, forward and VJP, and batch-norm folding) replaced by
:mod:`dirac_cupy.fused_math`, called the way the launchers in :mod:`dirac_cupy.kernels` call
the kernels: normalization as the Dirac weight with ``alpha = 0, beta = 1`` and no taps, the scale
gradients as per-filter parts summed for a scalar scale and rounded to the scale's dtype.
Running the suite on it (CI does: ``dirac-conformance dirac_cupy.mirror:MirrorBackend``)
checks the kernels' formulation, flush-to-zero modelled, without a GPU.

>>> import numpy as np
>>> import dirac_core as dc
>>> dc.normalize_filters(np.array([[3.0, 4.0]]), backend=MirrorBackend())
array([[0.6, 0.8]])
"""

from __future__ import annotations

from typing import Any

from dirac_core.backend import Array
from dirac_core.reference import NumpyBackend

from . import fused_math as fm


class MirrorBackend(NumpyBackend):
    """NumPy arrays; the fused ops as the kernels compute them (float64, float32, float16).

    Parameters
    ----------
    arithmetic : fused_math.Arithmetic, optional
        The kernels' arithmetic (default: :data:`fused_math.ACCUMULATE` with flush-to-zero
        modelled; ``Arithmetic(np.float32)`` is float32 arithmetic as CuPy would compile it).
    """

    name = "cupy_mirror"
    dtypes: tuple[str, ...] = ("float64", "float32", "float16")

    def __init__(self, arithmetic: fm.Arithmetic | None = None) -> None:
        self.ar = arithmetic or fm.Arithmetic()

    def __repr__(self) -> str:
        return f"MirrorBackend(arithmetic={self.ar.dtype.name})"

    def normalize_filters(self, w: Any, *, eps: float) -> Any:
        zero, one = fm.unit_scales(w)
        return fm.weight_forward(w, zero, one, eps=eps, normalize=True, groups=1, policy="tile",
                                 ar=self.ar, identity=False)

    def normalize_filters_vjp(self, g: Any, w: Any, *, eps: float) -> Any:
        _, one = fm.unit_scales(w)  # the backward launch only: no scale gradients
        return fm.weight_backward(g, w, one, eps=eps, normalize=True, groups=1, policy="tile",
                                  ar=self.ar)[0]

    def dirac_weight(
        self, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool, groups: int,
        policy: str,
    ) -> Array:
        return fm.weight_forward(w, alpha, beta, eps=eps, normalize=normalize, groups=groups,
                                 policy=policy, ar=self.ar)

    def dirac_weight_vjp(
        self, g: Array, w: Array, alpha: Array, beta: Array, *, eps: float, normalize: bool,
        groups: int, policy: str,
    ) -> tuple[Array, Array, Array]:
        dw, da, db = fm.weight_backward(g, w, beta, eps=eps, normalize=normalize, groups=groups,
                                        policy=policy, ar=self.ar)
        return (dw, fm.reduce_part(da, alpha, self.ar).astype(alpha.dtype),
                fm.reduce_part(db, beta, self.ar).astype(beta.dtype))

    def fold_batchnorm(
        self, weight: Array, bias: Array | None, gamma: Array, beta: Array, mean: Array,
        var: Array, *, eps: float,
    ) -> tuple[Array, Array]:
        return fm.fold_batchnorm(weight, bias, gamma, beta, mean, var, eps=eps, ar=self.ar)

    def ncrelu(self, x: Any, *, axis: int) -> Any:
        return fm.ncrelu_forward(x, axis=axis, ar=self.ar)

    def ncrelu_vjp(self, g: Any, x: Any, *, axis: int) -> Any:
        return fm.ncrelu_backward(g, x, axis=axis, ar=self.ar)
