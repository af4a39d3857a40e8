"""The fused kernels' CPU mirror (dirac_cupy.mirror, flush-to-zero modelled) through the
conformance suite: the whole suite on the fused ops, and the numeric edges one by one.

The float32-arithmetic model (what a kernel compiled by CuPy, with ``-ftz=true``, computing in
float32 would do) is run too: the suite must reject it on the subnormal edges, which is what
makes passing them mean something.
"""

import numpy as np
import pytest
from cupy_cases import EDGE_CASES, EPS_ABOVE_RANGE, FTZ_CASES

import dirac_core as dc
from dirac_conformance.checks import CHECKS
from dirac_conformance.runner import is_failure, run_suite
from dirac_conformance.target import load_target
from dirac_conformance.tolerance import Mismatch
from dirac_cupy import fused_math as fm
from dirac_cupy.mirror import MirrorBackend

FUSED_OPS = ("normalize_filters", "dirac_weight", "ncrelu", "normalize_filters_vjp",
             "dirac_weight_vjp", "ncrelu_vjp", "fold_batchnorm", "identity_eq11")


@pytest.fixture(scope="module")
def mirror():
    return load_target(MirrorBackend())


@pytest.fixture(scope="module")
def float32_ftz():
    return load_target(MirrorBackend(fm.Arithmetic(np.float32)))


def test_the_mirror_conforms_on_every_fused_op(mirror):
    results = run_suite(mirror, "ci", FUSED_OPS)
    assert {r.dtype for r in results} == {"float64", "float32", "float16"}
    failed = [f"{r.op}/{r.dtype}: {r.message}" for r in results if is_failure(r)]
    assert not failed, "\n".join(failed)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow to inf is checked by value
@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_the_mirror_is_right_at_the_edges(mirror, name):
    op, case = EDGE_CASES[name]
    # run() returns the share of the tolerance used (and raises beyond it)
    assert CHECKS[op].run(mirror, case) <= 1.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", FTZ_CASES)
def test_float32_arithmetic_under_flush_to_zero_fails_the_edges(float32_ftz, name):
    op, case = EDGE_CASES[name]
    with pytest.raises(Mismatch):
        CHECKS[op].run(float32_ftz, case)


def test_eps_beyond_the_dtype_is_its_largest_value_not_inf():
    w, eps = EPS_ABOVE_RANGE["w"], EPS_ABOVE_RANGE["eps"]
    expected = dc.normalize_filters(w, eps=eps)  # the spec: eps taken in float32's range
    np.testing.assert_allclose(expected, [[0.2938736, -0.5877472, 0.0]], rtol=1e-6)
    got = dc.normalize_filters(w, eps=eps, backend=MirrorBackend())
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=0)


def test_flush_model():
    ar = fm.Arithmetic(np.float32)
    x = np.array([1e-40, -1e-40, 1e-30, 0.0], dtype=np.float32)
    flushed = ar.flush(x)
    np.testing.assert_array_equal(flushed, np.array([0.0, 0.0, 1e-30, 0.0], dtype=np.float32))
    assert np.signbit(flushed[1]) and not np.signbit(flushed[0])
    assert ar.op(np.add, x, x)[2] == np.float32(2e-30)
    double = fm.Arithmetic()
    assert double.flush(x) is x and double.load(x).dtype == np.float64
    assert double.load(x)[0] == np.float64(np.float32(1e-40))  # the subnormal, kept exactly


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_the_fold_strategy_draws_a_subnormal_eps_with_a_zero_variance(dtype):
    """The case flush-to-zero gets wrong is drawn on purpose, in every dtype."""
    from hypothesis import find, settings

    tiny = np.finfo(np.float64 if dtype == "float64" else np.float32).tiny

    def subnormal_eps_zero_var(case):
        eps = case.kwargs["eps"]
        return 0 < eps < tiny and (case.operands["var"].values == 0).any()

    find(CHECKS["fold_batchnorm"].strategy(dtype), subnormal_eps_zero_var,
         settings=settings(max_examples=50, database=None))
