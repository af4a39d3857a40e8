"""The generic Array API backend: inference, conversions, and the maths on other namespaces.

Its conformance runs in the suite (``--dirac-backend array_api`` in ``make test``); these tests
cover what the suite does not: which arrays it owns, NumPy through compat, and the identity of
the convolution built from standard functions, on every namespace at hand.
"""

import numpy as np
import pytest

import dirac_core as dc

xp = pytest.importorskip("array_api_strict")
pytest.importorskip("array_api_compat")

from dirac_array_api import ON_NUMPY, ArrayApiBackend  # noqa: E402
from dirac_core import convolution  # noqa: E402

RNG = np.random.default_rng(3)


def test_strict_arrays_infer_the_backend_and_stay_strict():
    w = xp.asarray(RNG.standard_normal((3, 2, 3)))
    out = dc.dirac_weight(w, 1.0, 0.5)
    assert dc.infer_backend(w).name == "array_api"
    assert type(out) is type(w)
    np.testing.assert_allclose(np.from_dlpack(out),
                               dc.dirac_weight(np.from_dlpack(w), 1.0, 0.5), rtol=1e-15)


def test_inputs_are_never_modified():
    backend = ArrayApiBackend()
    x = RNG.standard_normal((2, 4, 5))
    before = x.copy()
    native = backend.from_numpy(x)
    backend.conv_vjp(backend.from_numpy(np.ones((2, 4, 5))), native, backend.from_numpy(
        np.ones((4, 2, 3))), None, stride=(1,), padding="same", dilation=(1,), groups=2)
    np.testing.assert_array_equal(np.from_dlpack(native), before)
    np.testing.assert_array_equal(x, before)


def test_numpy_through_compat_declares_half_precision():
    assert ON_NUMPY.dtypes == ("float64", "float32", "float16")
    assert ArrayApiBackend().dtypes == ("float64", "float32")
    assert not ON_NUMPY.owns(xp.asarray(1.0)) and ON_NUMPY.owns(np.zeros(1))


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_col2im_by_spreading_is_the_transpose_of_im2col(stride):
    """<conv(x, w), g> == <x, dx(g)> for the spread-and-sum col2im, strided and dilated."""
    x, w = RNG.standard_normal((2, 3, 9, 7)), RNG.standard_normal((4, 3, 2, 3))
    kw = {"stride": (stride, 1), "padding": ((1, 2), (0, 1)), "dilation": (2, 1), "groups": 1}
    native = [ON_NUMPY.from_numpy(a) for a in (x, w)]
    y = convolution.conv(*native, None, **kw)
    g = RNG.standard_normal(y.shape)
    dx, dw, _ = convolution.conv_vjp(ON_NUMPY.from_numpy(g), *native, None, **kw)
    assert np.isclose(np.sum(y * g), np.sum(x * dx), rtol=1e-12)
    assert np.isclose(np.sum(y * g), np.sum(w * dw), rtol=1e-12)


@pytest.mark.parametrize("adapter", ["ON_TORCH", "ON_JAX"])
def test_the_adapter_declares_only_what_it_can_carry(adapter):
    import dirac_array_api

    pytest.importorskip({"ON_TORCH": "torch", "ON_JAX": "jax"}[adapter])
    backend = getattr(dirac_array_api, adapter)
    assert "bfloat16" not in backend.dtypes  # neither takes ml_dtypes' bfloat16 back to NumPy
    assert {"float32", "float16"} <= set(backend.dtypes)
    for dtype in backend.dtypes:
        native = backend.from_numpy(np.ones(2, dtype))
        assert backend.owns(native) and backend.to_numpy(native).dtype == np.dtype(dtype)


@pytest.mark.parametrize("check", ["ncrelu", "conv", "conv_vjp", "identity_eq1"])
def test_the_suite_passes_on_jax_numpy(check):
    """A few examples of the suite on the JAX namespace (the whole suite takes too long on a
    CPU: every eager op compiles per shape)."""
    pytest.importorskip("jax")
    from hypothesis import HealthCheck, settings

    from dirac_array_api import ON_JAX
    from dirac_conformance.runner import run_check

    few = settings(max_examples=3, derandomize=True, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
    result = run_check(ON_JAX, check, "float32", settings=few)
    assert result.status == "pass", result.message
