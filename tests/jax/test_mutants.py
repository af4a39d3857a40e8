"""The suite has teeth on JAX too: realistic JAX-specific bugs in the backend are caught.

The project's mutants (``dirac_conformance.mutants``) are bugs in NumPy code; these are the
same kinds of bug where the JAX backend has code of its own (``lax`` padding, autodiff instead
of the spec's rules, the Dirac tensor, gradient dtypes), each a :class:`JaxBackend` with one
method wrong, hunted by the meta-suite exactly as the project's mutants are.
"""

import jax
import jax.numpy as jnp
import pytest

from dirac_conformance.meta import hunt
from dirac_jax import JaxBackend


class TorchSamePadding(JaxBackend):
    """``"same"`` padded PyTorch's way for even kernels (extra element on the right)."""

    first = "conv"

    def conv(self, x, w, bias, *, stride, padding, dilation, groups):
        if padding == "same":
            padding = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                            for k, d in zip(w.shape[2:], dilation, strict=True))
        return super().conv(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                            groups=groups)


class GroupsIgnoredDelta(JaxBackend):
    """The Dirac tensor built as if ``groups == 1``."""

    first = "dirac_tensor"

    def dirac_tensor(self, shape, *, groups, policy, dtype, device):
        return super().dirac_tensor(shape, groups=1, policy=policy, dtype=dtype, device=device)


class AutodiffNormalize(JaxBackend):
    """The normalization VJP by autodiff of ``v / max(||v||, eps)``, not the spec's rule."""

    first = "normalize_filters_vjp"

    def normalize_filters_vjp(self, g, w, *, eps):
        def naive(v):
            norm = jnp.sqrt(jnp.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
            return v / jnp.maximum(norm, eps)

        return jax.vjp(naive, w)[1](g)[0]


class AutodiffNcrelu(JaxBackend):
    """NCReLU's VJP by autodiff of ``maximum``/``minimum`` (JAX splits ties: 0.5 at zero)."""

    first = "ncrelu_vjp"

    def ncrelu_vjp(self, g, x, *, axis):
        def plain(v):
            return jnp.concatenate([jnp.maximum(v, 0), jnp.minimum(v, 0)], axis=axis)

        return jax.vjp(plain, x)[1](g)[0]


class ScaleGradInWeightDtype(JaxBackend):
    """``dalpha`` and ``dbeta`` returned in the weight's dtype, not their own."""

    first = "dirac_weight_vjp"

    def dirac_weight_vjp(self, g, w, alpha, beta, **kw):
        dw, dalpha, dbeta = super().dirac_weight_vjp(g, w, alpha, beta, **kw)
        return dw, dalpha.astype(w.dtype), dbeta.astype(w.dtype)


@pytest.mark.parametrize("mutant", [TorchSamePadding, GroupsIgnoredDelta, AutodiffNormalize,
                                    AutodiffNcrelu, ScaleGradInWeightDtype],
                         ids=lambda m: m.__name__)
def test_jax_mutant_is_killed(mutant):
    kill = hunt(mutant)
    assert kill.killed_by, f"{mutant.__name__} survived the suite"
    assert kill.killed_by.split("/")[0] == mutant.first, kill
