"""The JAX tests run in JAX's 64-bit mode: the reference comparisons are in float64."""

import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
jax.config.update("jax_enable_x64", True)
