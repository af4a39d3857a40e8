"""The cupy backend on a GPU, fused and generic paths, against the NumPy reference.

Skipped, with the reason, where CuPy is missing or sees no CUDA device. On a GPU machine every
op is compared in float64, float32 and float16 with the float64 reference on the same inputs
under the conformance suite's tolerance model (its checks are called on each case), the
kernels against their array formulation (dirac_cupy.fused_math, run under CuPy), the fused
kernels at the numeric edges (flush-to-zero, eps out of range, huge gradients), and the DLPack
interop with torch is checked to share memory.
"""

import os
import warnings

import numpy as np
import pytest
from cupy_cases import EDGE_CASES, EPS_ABOVE_RANGE, ncrelu_cases, weight_cases
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dirac_core as dc
from dirac_conformance.case import Case, Operand
from dirac_conformance.checks import CHECKS
from dirac_conformance.target import load_target

cupy = pytest.importorskip("cupy", reason="CuPy is not installed: no GPU tests for dirac_cupy")

from dirac_cupy import CupyBackend, fused_math, kernels  # noqa: E402
from dirac_cupy.interop import from_torch, to_torch  # noqa: E402

_STATUS = CupyBackend().available()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _STATUS, reason=f"the cupy backend cannot run: {_STATUS.reason}"),
    # Overflow to a correctly signed inf is checked by value, as the suite does.
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

DTYPES = ("float64", "float32", "float16")
# The backend fixture holds no state a Hypothesis example could leak into the next one.
# scripts/gpu_check.sh sets the number of examples to fit its time limits.
FEW = settings(max_examples=int(os.environ.get("DIRAC_GPU_EXAMPLES", "15")),
               suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(params=[True, False], ids=["fused", "generic"])
def backend(request):
    return CupyBackend(fused=request.param)


def _gpu(a):
    return cupy.asarray(a)


def _host(x):
    assert isinstance(x, cupy.ndarray), type(x)
    return cupy.asnumpy(x)


def _cast(case, dtype):
    return case.w.astype(dtype), case.alpha.astype(dtype), case.beta.astype(dtype)


def _suite(backend, op, kwargs, **arrays):
    """Run the conformance suite's check of ``op`` on these inputs (already in their dtype):
    the float64 reference on the same values, the suite's tolerance model."""
    dtype = next(iter(arrays.values())).dtype.name
    operands = {k: Operand(a.astype(np.float64), a.dtype.name) for k, a in arrays.items()}
    return CHECKS[op].run(load_target(backend), Case(dtype, operands, kwargs))


@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(data=st.data())
def test_dirac_weight_matches_reference(backend, dtype, data):
    case = data.draw(weight_cases(dtype))
    w, alpha, beta = _cast(case, dtype)
    _suite(backend, "dirac_weight", case.args, w=w, alpha=alpha, beta=beta)


@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_dirac_weight_vjp_matches_reference(backend, dtype, data, seed):
    case = data.draw(weight_cases(dtype))
    w, alpha, beta = _cast(case, dtype)
    g = np.random.default_rng(seed).normal(size=w.shape).astype(dtype)
    _suite(backend, "dirac_weight_vjp", case.args, g=g, w=w, alpha=alpha, beta=beta)


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_filters_and_vjp_match_reference(backend, dtype):
    rng = np.random.default_rng(7)
    w = rng.normal(size=(6, 5, 3, 3)).astype(dtype)
    w[1] = 0
    w[2] *= 1e-20 if dtype == "float64" else 0
    g = rng.normal(size=w.shape).astype(dtype)
    eps = 1e-2 if dtype == "float16" else 1e-12
    _suite(backend, "normalize_filters", {"eps": eps}, w=w)
    _suite(backend, "normalize_filters_vjp", {"eps": eps}, g=g, w=w)


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_fused_kernels_are_right_at_the_numeric_edges(name):
    op, case = EDGE_CASES[name]
    CHECKS[op].run(load_target(CupyBackend(fused=True, strict=True)), case)


def test_eps_beyond_float32_is_its_largest_value():
    w = EPS_ABOVE_RANGE["w"]
    got = CupyBackend(fused=True).normalize_filters(_gpu(w), eps=EPS_ABOVE_RANGE["eps"])
    expected = dc.normalize_filters(w, eps=EPS_ABOVE_RANGE["eps"])
    np.testing.assert_allclose(_host(got), expected, rtol=2e-6, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_kernels_are_their_mirror_bit_for_bit(dtype, data, seed):
    """The kernels (no fused multiply-adds) against dirac_cupy.fused_math on the host (the
    kernels' sum order, double arithmetic): every result identical, bit for bit."""
    case = data.draw(weight_cases(dtype))
    w, alpha, beta = _cast(case, dtype)
    g = np.random.default_rng(seed).normal(size=w.shape).astype(dtype)
    forward = kernels.dirac_weight(_gpu(w), _gpu(alpha), _gpu(beta), **case.args)
    np.testing.assert_array_equal(_host(forward),
                                  fused_math.weight_forward(w, alpha, beta, **case.args))
    got = kernels.dirac_weight_vjp(_gpu(g), _gpu(w), _gpu(alpha), _gpu(beta), **case.args)
    dw, da, db = fused_math.weight_backward(g, w, beta, **case.args)
    expected = (dw, fused_math.reduce_part(da, alpha).astype(alpha.dtype),
                fused_math.reduce_part(db, beta).astype(beta.dtype))
    for part, want in zip(got, expected, strict=True):
        np.testing.assert_array_equal(_host(part), want)


@pytest.mark.parametrize("normalize", [True, False])
def test_split_filters_are_their_mirror_bit_for_bit(normalize):
    """Few long filters, several blocks each (a launch per reduction), against the mirror."""
    rng = np.random.default_rng(8)
    w, g = rng.normal(size=(3, 50000)), rng.normal(size=(3, 50000))
    alpha, beta = np.asarray(0.5), rng.normal(size=3)
    args = {"eps": 1e-12, "normalize": normalize, "groups": 1, "policy": "tile"}
    assert fused_math.weight_split(3, 50000)[0] > 1
    got = kernels.dirac_weight(_gpu(w), _gpu(alpha), _gpu(beta), **args)
    np.testing.assert_array_equal(_host(got), fused_math.weight_forward(w, alpha, beta, **args))
    dw, _, db = fused_math.weight_backward(g, w, beta, **args)
    got = kernels.dirac_weight_vjp(_gpu(g), _gpu(w), _gpu(alpha), _gpu(beta), **args)
    np.testing.assert_array_equal(_host(got[0]), dw)
    np.testing.assert_array_equal(_host(got[2]), db)


@pytest.mark.parametrize("dtype", DTYPES)
@FEW
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_ncrelu_and_vjp_are_exact(backend, dtype, data, seed):
    x, axis = data.draw(ncrelu_cases(dtype))
    shape = list(x.shape)
    shape[axis] *= 2
    g = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    y = backend.ncrelu(_gpu(x), axis=axis)
    np.testing.assert_array_equal(_host(y), dc.ncrelu(x, axis=axis))
    np.testing.assert_array_equal(
        _host(backend.ncrelu_vjp(_gpu(g), _gpu(x), axis=axis)), dc.ncrelu_vjp(g, x, axis=axis)
    )


def test_ncrelu_on_a_non_contiguous_view(backend):
    x = cupy.asarray(np.random.default_rng(3).normal(size=(4, 6, 5)))[:, ::2].transpose(0, 2, 1)
    np.testing.assert_array_equal(_host(backend.ncrelu(x, axis=2)), dc.ncrelu(_host(x), axis=2))


CONV_CASES = [
    # x shape, w shape, stride, padding, dilation, groups
    ((2, 4, 9, 9), (6, 4, 3, 3), (1, 1), "same", (1, 1), 1),
    ((2, 4, 8, 7), (4, 2, 4, 2), (1, 1), "same", (2, 1), 2),
    ((1, 3, 11), (5, 3, 3), (2,), ((1, 2),), (1,), 1),
    ((1, 2, 5, 4, 6), (2, 1, 3, 1, 2), (1, 2, 1), ((1, 1), (0, 0), (0, 1)), (1, 1, 2), 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("xs", "ws", "stride", "padding", "dilation", "groups"), CONV_CASES)
def test_conv_and_vjp_match_reference(dtype, xs, ws, stride, padding, dilation, groups):
    rng = np.random.default_rng(11)
    x, w, bias = (rng.normal(size=s).astype(dtype) for s in (xs, ws, (ws[0],)))
    args = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    got = dc.conv(_gpu(x), _gpu(w), _gpu(bias), **args)  # inferred: the cupy backend
    assert isinstance(got, cupy.ndarray)
    b = CupyBackend()
    _suite(b, "conv", args, x=x, w=w, bias=bias)
    g = rng.normal(size=got.shape).astype(dtype)
    _suite(b, "conv_vjp", args, g=g, x=x, w=w, bias=bias)


def test_ncrelu_then_dirac_conv_is_the_identity():
    """Paper eq. 11, on the GPU: conv(ncrelu(x), delta of shape (C, 2C, 3, 3)) == x."""
    x = cupy.asarray(np.random.default_rng(5).normal(size=(2, 3, 6, 6)))
    delta = dc.dirac_tensor((3, 6, 3, 3), backend="cupy")
    assert isinstance(delta, cupy.ndarray)
    y = dc.conv(dc.ncrelu(x), delta, padding="same")
    np.testing.assert_allclose(_host(y), _host(x), rtol=0, atol=1e-15)


def test_fold_batchnorm_and_dirac_tensor_match_reference():
    rng = np.random.default_rng(2)
    w, b, gamma, beta, mean = (rng.normal(size=s) for s in ((4, 2, 3), (4,), (4,), (4,), (4,)))
    var = rng.random(4)
    for got, ref in zip(
        dc.fold_batchnorm(*(_gpu(a) for a in (w, b, gamma, beta, mean, var))),
        dc.fold_batchnorm(w, b, gamma, beta, mean, var),
        strict=True,
    ):
        np.testing.assert_allclose(_host(got), ref, rtol=1e-13)
    for dtype in DTYPES:  # the fused path's kernel is its mirror, bit for bit
        host = [a.astype(dtype) for a in (w, b, gamma, beta, mean, var)]
        got = CupyBackend(fused=True).fold_batchnorm(*map(_gpu, host), eps=1e-40)
        want = fused_math.fold_batchnorm(*host, eps=1e-40)
        for part, expected in zip(got, want, strict=True):
            np.testing.assert_array_equal(_host(part), expected)
    for policy in ("tile", "min"):
        got = dc.dirac_tensor((6, 4, 3, 2), groups=2, policy=policy, backend="cupy")
        expected = dc.dirac_tensor((6, 4, 3, 2), groups=2, policy=policy)
        np.testing.assert_array_equal(_host(got), expected)


def test_public_api_infers_cupy_and_keeps_device():
    b = dc.get_backend("cupy")
    x = b.from_numpy(np.ones((2, 3)), 0)
    assert b.device(x) == 0 and b.owns(x)
    assert dc.infer_backend(x).name == "cupy"
    y = dc.ncrelu(x)
    assert isinstance(y, cupy.ndarray) and y.device.id == 0


def test_failed_compile_falls_back_to_the_generic_path(tmp_path, monkeypatch):
    broken = tmp_path / "broken.cu"
    broken.write_text("this is not CUDA")
    monkeypatch.setattr(kernels, "SOURCE", broken)
    kernels._module.cache_clear()
    try:
        b = CupyBackend(fused=True, strict=False)
        x = cupy.asarray(np.array([[-1.0, 2.0]]))
        with pytest.raises(RuntimeError, match="did not compile"):
            CupyBackend(fused=True, strict=True).ncrelu(x, axis=1)
        with pytest.warns(RuntimeWarning, match="fused kernels did not compile"):
            y = b.ncrelu(x, axis=1)
        np.testing.assert_array_equal(_host(y), [[0.0, 2.0, -1.0, 0.0]])
        assert not b.fused and b.path == "generic"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once, then quiet
            b.ncrelu(x, axis=1)
    finally:
        kernels._module.cache_clear()


def test_dlpack_interop_with_torch_shares_memory():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here: DLPack interop needs a CUDA build of torch")
    t = torch.arange(6, dtype=torch.float32, device="cuda")
    x = from_torch(t)
    assert isinstance(x, cupy.ndarray) and x.data.ptr == t.data_ptr()
    x[0] = 42
    cupy.cuda.get_current_stream().synchronize()
    assert float(t[0]) == 42.0
    back = to_torch(x * 2)
    assert back.is_cuda and back.dtype == torch.float32
    assert to_torch(x).data_ptr() == x.data.ptr
    np.testing.assert_array_equal(back.cpu().numpy(), [84, 2, 4, 6, 8, 10])
