"""The kernel launchers (dirac_cupy.kernels) without a GPU: every launch passes exactly the
arguments its kernel in dirac_kernels.cu declares (count, pointer dtypes, contiguity, scalar
widths), and with the kernels emulated by dirac_cupy.fused_math the launchers' results (shapes,
dtypes, reduced scale gradients) equal the reference.

CuPy is replaced by a small NumPy-backed stand-in holding only what the launchers call.
"""

import re
import sys
import types
import typing

import numpy as np
import pytest
from cupy_cases import EPS

import dirac_core as dc
from dirac_cupy import fused_math as fm
from dirac_cupy import kernels

CTYPES = {"double": np.float64, "float": np.float32, "__half": np.float16}
SCALARS = {"long long": np.int64, "int": np.int32}


def _expand_macros(source: str) -> str:
    """The source with its object-like ``#define``s (continued lines joined) substituted."""
    source = source.replace("\\\n", " ")
    macros = dict(re.findall(r"^#define\s+(\w+)\s+(.*)$", source, flags=re.M))
    body = re.sub(r"^#define.*$", "", source, flags=re.M)
    for name, value in macros.items():
        body = re.sub(rf"\b{name}\b", value.split("//")[0].strip(), body)
    return body


def _parameters(source: str, kernel: str, storage: str) -> list[str]:
    """The C types of ``kernel``'s parameters for one instantiation, in order."""
    pattern = rf"__global__\s+void\s+(?:__launch_bounds__\(\w+\)\s+)?{kernel}\s*\((.*?)\)\s*\{{"
    params = re.search(pattern, _expand_macros(source), flags=re.S).group(1)
    types_ = []
    for param in params.split(","):
        ctype = param.strip().rsplit(" ", 1)[0].replace("const ", "").strip()
        base = ctype.rstrip("*")
        base = storage if base == "T" else base
        types_.append(base + ("*" if ctype.endswith("*") else ""))
    return types_


def _check_arguments(ctypes_: list[str], args: tuple) -> None:
    assert len(args) == len(ctypes_), f"{len(args)} arguments for parameters {ctypes_}"
    for ctype, arg in zip(ctypes_, args, strict=True):
        if ctype.endswith("*"):
            assert isinstance(arg, np.ndarray), f"{ctype} needs an array, got {type(arg)}"
            if ctype != "void*":  # a scale, in any dtype its kind argument names
                assert arg.dtype == CTYPES[ctype[:-1]], f"{ctype} got dtype {arg.dtype}"
            assert arg.flags.c_contiguous, f"{ctype} got a non-contiguous array"
        else:
            expected = SCALARS.get(ctype) or CTYPES[ctype]
            assert type(arg) is expected, f"{ctype} needs {expected.__name__}, got {type(arg)}"


KINDS = {kind: dtype for dtype, kind in kernels.SCALE_KINDS.items()}


def _scale(array, kind, step):
    assert array.dtype == KINDS[int(kind)], f"scale of dtype {array.dtype} sent as kind {kind}"
    return array.reshape(()) if step == 0 else array


def _emulate(kernel: str, args: tuple) -> None:
    """Run a kernel's maths (fused_math) on the launch arguments, writing its outputs."""
    if kernel.startswith("dirac_weight"):
        forward = kernel == "dirac_weight_forward"
        (*head, length, chunk, parts, partial, stage, spatial, centre, per_group, _n,
         policy_min, eps, normalize) = args
        w = head[0] if forward else head[1]
        assert (int(parts), int(chunk)) == fm.weight_split(w.shape[0], int(length))
        assert int(parts) == 1 or partial.size == kernels.PARTIALS * w.shape[0] * int(parts)
        if stage not in (kernels.STAGES["all"], kernels.STAGES["output"]):
            return  # a reduction stage: its partial results are the mirror's business
        # eps arrives already in the working dtype's range: taking it there again is a no-op.
        geo = {
            "eps": float(eps), "normalize": bool(normalize),
            "groups": w.shape[0] // int(per_group), "policy": "min" if policy_min else "tile",
        }
        if forward:
            _, a, a_kind, a_step, b, b_kind, b_step, out = head
            out[...] = fm.weight_forward(  # a centre past the kernel: launched without taps
                w, _scale(a, a_kind, a_step), _scale(b, b_kind, b_step), **geo,
                identity=int(centre) < int(spatial),
            )
        else:
            g, _, b, b_kind, b_step, dw, dalpha, dbeta = head
            dw[...], dalpha[...], dbeta[...] = fm.weight_backward(
                g, w, _scale(b, b_kind, b_step), **geo
            )
        return
    if kernel == "reduce_narrow":
        parts, dst, total, count = args
        assert parts.size == dst.size * int(count) and dst.size == int(total)
        sums = fm.block_sum(parts.reshape(int(total), int(count)), fm.Arithmetic())
        dst.reshape(-1)[...] = sums[:, 0].astype(dst.dtype)
        return
    if kernel == "fold_batchnorm":
        weight, bias, has_bias, *vectors, out_w, out_b, out_channels, length, eps = args
        assert weight.size == int(out_channels) * int(length) and out_b.size == int(out_channels)
        # eps arrives already rounded to the working dtype: rounding it again is a no-op.
        out_w[...], out_b[...] = fm.fold_batchnorm(
            weight, bias if has_bias else None, *vectors, eps=float(eps))
        return
    *arrays, total, block = args
    pos = np.arange(int(total)) + np.arange(int(total)) // int(block) * int(block)
    if kernel == "ncrelu_forward":
        x, y = (a.reshape(-1) for a in arrays)
        y[pos], y[pos + int(block)] = np.where(x <= 0, 0, x), np.where(x >= 0, 0, x)
    else:
        g, x, dx = (a.reshape(-1) for a in arrays)
        dx[...] = np.where(x > 0, g[pos], np.where(x < 0, g[pos + int(block)], 0))


class _Module:
    """Stands in for cupy.RawModule: hands out checking, emulating launchers."""

    launched: typing.ClassVar[list[str]] = []
    looked_up: typing.ClassVar[list[str]] = []  # get_function calls
    grids: typing.ClassVar[list[tuple[int, ...]]] = []
    compiled: typing.ClassVar[int] = 0

    def __init__(self, code, options=(), name_expressions=()):
        self.code, self.names = code, list(name_expressions)
        assert tuple(options) == kernels.OPTIONS

    def compile(self):
        _Module.compiled += 1

    def get_function(self, name):
        assert name in self.names, f"{name} was not declared as a name expression"
        _Module.looked_up.append(name)
        kernel, _, storage = name[:-1].partition("<")
        ctypes_ = _parameters(self.code, kernel, storage)

        def launch(grid, block, args):
            # A zero-size grid is an invalid CUDA launch configuration.
            assert block == (kernels.BLOCK,) and all(0 < d < 2**31 for d in grid), grid
            _check_arguments(ctypes_, args)
            _Module.launched.append(name)
            _Module.grids.append(grid)
            _emulate(kernel, args)

        return launch


@pytest.fixture
def fake_cupy(monkeypatch):
    device = types.SimpleNamespace(id=0)
    fake = types.SimpleNamespace(
        RawModule=_Module,
        ascontiguousarray=np.ascontiguousarray,
        empty=np.empty,
        empty_like=np.empty_like,
        cuda=types.SimpleNamespace(Device=lambda: device),
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    # NumPy's arrays have no CUDA device: every array is on device 0 here.
    monkeypatch.setattr(kernels, "_device_of", lambda x: 0)
    kernels._module.cache_clear()
    kernels._function.cache_clear()
    _Module.launched, _Module.looked_up, _Module.grids, _Module.compiled = [], [], [], 0
    yield fake
    kernels._module.cache_clear()
    kernels._function.cache_clear()


def test_expanded_signature_of_the_weight_kernel():
    params = _parameters(kernels.SOURCE.read_text(), "dirac_weight_forward", "__half")
    assert params == [
        "__half*", "void*", "int", "long long", "void*", "int", "long long", "__half*",
        "long long", "long long", "long long", "double*", "int",
        "long long", "long long", "long long", "long long", "int", "double", "int",
    ]


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("vector", [False, True])
@pytest.mark.parametrize("scale_dtype", ["float64", "float32", "float16"])
def test_weight_launches_match_signatures_and_reference(fake_cupy, dtype, vector, scale_dtype):
    rng = np.random.default_rng(4)
    w = rng.normal(size=(6, 4, 3, 2)).astype(dtype)
    w[1] = 0
    alpha = (rng.normal(size=6) if vector else np.asarray(2.0)).astype(scale_dtype)
    beta = (rng.normal(size=6) if vector else np.asarray(0.5)).astype(scale_dtype)
    args = {"eps": 1e-2 if dtype == "float16" else EPS, "normalize": True, "groups": 2,
            "policy": "tile"}
    out = kernels.dirac_weight(w, alpha, beta, **args)
    expected = dc.dirac_weight(w, alpha, beta, **args)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out, expected, rtol=2e-3, atol=2e-3)
    g = rng.normal(size=w.shape).astype(dtype)
    got = kernels.dirac_weight_vjp(g, w, alpha, beta, **args)
    ref = dc.dirac_weight_vjp(g, w, alpha, beta, **args)
    # dW has the weight's dtype; dalpha and dbeta their own argument's.
    for part, want, like in zip(got, ref, (w, alpha, beta), strict=True):
        assert part.shape == want.shape and part.dtype == like.dtype
        scale = np.abs(want.astype(np.float64)).max()
        np.testing.assert_allclose(part, want, rtol=5e-3, atol=5e-3 * scale)
    storage, scale = kernels.CUDA_TYPES[dtype], kernels.CUDA_TYPES[alpha.dtype.name]
    assert _Module.launched == [
        f"dirac_weight_forward<{storage}>", f"dirac_weight_backward<{storage}>",
        f"reduce_narrow<{scale}>", f"reduce_narrow<{scale}>",
    ]


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_ncrelu_launches_match_signatures_and_reference(fake_cupy, dtype):
    x = np.random.default_rng(6).normal(size=(3, 4, 5)).astype(dtype)
    x[0, 0, :2] = 0
    view = x[:, ::2]  # non-contiguous: the launcher must make it contiguous
    y = kernels.ncrelu(view, axis=1)
    np.testing.assert_array_equal(y, dc.ncrelu(view, axis=1))
    g = np.random.default_rng(7).normal(size=y.shape).astype(dtype)
    np.testing.assert_array_equal(kernels.ncrelu_vjp(g, view, axis=1), dc.ncrelu_vjp(g, view))
    empty = np.zeros((0, 3), dtype=dtype)
    assert kernels.ncrelu(empty, axis=1).shape == (0, 6)  # no launch for no entries
    assert len(_Module.launched) == 2


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_no_launch_for_zero_filters(fake_cupy, dtype):
    """A grid of O blocks with O = 0 is an invalid CUDA configuration: nothing is launched
    and the results are empty (a scalar scale's gradient over no filters is 0)."""
    w = np.zeros((0, 3, 3), dtype=dtype)
    args = {"eps": EPS, "normalize": True, "groups": 1, "policy": "tile"}
    scalar, vector = np.asarray(1.0, dtype=dtype), np.zeros(0, dtype=dtype)
    assert kernels.dirac_weight(w, scalar, vector, **args).shape == (0, 3, 3)
    dw, dalpha, dbeta = kernels.dirac_weight_vjp(w, w, scalar, vector, **args)
    assert dw.shape == w.shape and dbeta.shape == (0,) and dalpha == 0
    assert kernels.normalize_filters_vjp(w, w, eps=EPS).shape == w.shape
    empty = np.zeros(0, dtype=dtype)
    folded_w, folded_b = kernels.fold_batchnorm(w, None, empty, empty, empty, empty, eps=1e-5)
    assert folded_w.shape == w.shape and folded_b.shape == (0,)
    assert kernels.ncrelu_vjp(np.zeros((2, 0, 4), dtype), np.zeros((2, 0, 2), dtype),
                              axis=2).shape == (2, 0, 2)
    assert _Module.launched == [f"reduce_narrow<{kernels.CUDA_TYPES[dtype]}>"]  # dalpha's 0


def test_kernels_are_compiled_and_looked_up_once(fake_cupy):
    """Launch-counted: the module compiles once and each kernel function is looked up once
    per device, however many launches follow (CuPy's get_function builds a new RawKernel)."""
    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(4, 3, 3)), rng.normal(size=(2, 3))
    for _ in range(5):
        kernels.dirac_weight(w, np.asarray(1.0), np.asarray(0.5), eps=EPS, normalize=True,
                             groups=1, policy="tile")
        kernels.ncrelu(x, axis=1)
    assert len(_Module.launched) == 10
    assert _Module.compiled == 1
    assert sorted(_Module.looked_up) == ["dirac_weight_forward<double>", "ncrelu_forward<double>"]


# ---------------------------------------------------------------------------- the backend


class _Device:
    id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FtzArray(np.ndarray):
    """A CuPy array as CuPy's own elementwise kernels treat it (a flush-to-zero model): float32
    operands and results below the smallest normal number are zeros (CuPy compiles its
    kernels with ``-ftz=true``). The reference's generic path runs on these unchanged."""

    device = _Device()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        ftz = fm.Arithmetic(np.float32)
        single = any(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in inputs)

        def plain(x):
            if isinstance(x, np.ndarray):
                x = x.view(np.ndarray)
            elif single and isinstance(x, float):
                x = np.float32(x)  # a Python scalar takes the array's dtype (NEP 50)
            x = np.asarray(x)
            return ftz.flush(x) if x.dtype == np.float32 else x

        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in kwargs["out"])
        result = getattr(ufunc, method)(*(plain(x) for x in inputs), **kwargs)
        return plain(result).view(FtzArray)


def on_device(a, dtype=None):
    return np.asarray(a, dtype=dtype).view(FtzArray)


@pytest.fixture
def fake_backend(fake_cupy, monkeypatch):
    """The cupy backend over the stand-in: its arrays are FtzArray, its kernels emulated."""
    from dirac_core.backend import Availability
    from dirac_cupy import backend as cupy_backend

    class CompileError(Exception):
        pass

    errors = types.SimpleNamespace(CompileException=CompileError, CUDADriverError=CompileError)
    fake_cupy.cuda.compiler = fake_cupy.cuda.driver = errors
    fake_cupy.ndarray = FtzArray
    fake_cupy.asarray = on_device
    monkeypatch.setattr(cupy_backend, "_cupy", lambda: fake_cupy)
    monkeypatch.setattr(cupy_backend, "cached_probe", lambda: Availability(True))
    return cupy_backend.CupyBackend(fused=True, strict=True)


FOLD = {"bias": None, "gamma": [2.0, -3.0], "beta": [0.5, 0.0], "mean": [1.0, 0.0],
        "var": [0.0, 4.0]}


def test_folding_under_flush_to_zero_keeps_a_subnormal_eps(fake_backend):
    """Subnormal float32 eps with var = 0: the specification's s = gamma / sqrt(1e-40) is
    1e20 * gamma. CuPy's own kernels (the generic path) read eps as 0 and give inf; the
    backend folds with its kernel, in double."""
    from dirac_cupy import CupyBackend

    weight = on_device(np.ones((2, 3)), np.float32)
    vectors = {k: None if v is None else on_device(v, np.float32) for k, v in FOLD.items()}
    expected = dc.fold_batchnorm(np.ones((2, 3), np.float32), eps=1e-40,
                                 **{k: None if v is None else np.float32(v)
                                    for k, v in FOLD.items()})
    np.testing.assert_allclose(expected[0][0], 2e20, rtol=1e-5)  # gamma / sqrt(1e-40)
    got = fake_backend.fold_batchnorm(weight, eps=1e-40, **vectors)
    for part, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(part.view(np.ndarray), want, rtol=1e-6)
    assert _Module.launched == ["fold_batchnorm<float>"]
    with np.errstate(divide="ignore"):
        generic = CupyBackend(fused=False).fold_batchnorm(weight, eps=1e-40, **vectors)
    assert np.isinf(generic[0][0]).all()  # the known deviation of fused=False


def test_normalize_filters_vjp_launches_the_backward_only(fake_backend):
    rng = np.random.default_rng(1)
    w, g = on_device(rng.normal(size=(3, 4))), on_device(rng.normal(size=(3, 4)))
    dw = fake_backend.normalize_filters_vjp(g, w, eps=EPS)
    np.testing.assert_allclose(dw.view(np.ndarray), dc.normalize_filters_vjp(
        g.view(np.ndarray), w.view(np.ndarray)), rtol=1e-12)
    assert _Module.launched == ["dirac_weight_backward<double>"]  # no scale gradients


def test_bfloat16_is_refused_by_the_api_and_runs_generic_when_called_directly(fake_backend):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = on_device(np.ones((2, 3)), ml_dtypes.bfloat16)
    w32 = on_device(np.ones((2, 3)), np.float32)
    accepted = r"backend 'cupy' does not support; it accepts \('float64', 'float32', 'float16'\)"
    with pytest.raises(TypeError, match=rf"w has dtype bfloat16, which {accepted}"):
        dc.dirac_weight(bf16, 1.0, 1.0, backend=fake_backend)
    with pytest.raises(TypeError, match=rf"alpha has dtype bfloat16, which {accepted}"):
        dc.dirac_weight(w32, on_device(1.0, ml_dtypes.bfloat16), 1.0, backend=fake_backend)
    with pytest.raises(TypeError, match=rf"x has dtype bfloat16, which {accepted}"):
        dc.ncrelu(bf16, backend=fake_backend)
    # Called directly (no API check), the backend takes the generic path, not a KeyError.
    out = fake_backend.ncrelu(bf16, axis=1)
    assert out.dtype == bf16.dtype and out.shape == (2, 6) and _Module.launched == []


@pytest.mark.parametrize("normalize", [True, False])
def test_few_long_filters_are_split_over_many_blocks(fake_cupy, normalize):
    """A (2, 40000) weight: one block per filter would use 2 multiprocessors; split, each
    filter has several blocks and the reductions a launch each. Results as the reference's."""
    rng = np.random.default_rng(3)
    w, g = rng.normal(size=(2, 40000)), rng.normal(size=(2, 40000))
    parts, chunk = fm.weight_split(2, 40000)
    assert parts > 1 and parts * chunk >= 40000 > (parts - 1) * chunk
    args = {"eps": EPS, "normalize": normalize, "groups": 1, "policy": "tile"}
    alpha, beta = np.asarray(0.5), np.asarray(2.0)
    np.testing.assert_allclose(kernels.dirac_weight(w, alpha, beta, **args),
                               dc.dirac_weight(w, alpha, beta, **args), rtol=1e-12)
    got = kernels.dirac_weight_vjp(g, w, alpha, beta, **args)
    for part, want in zip(got, dc.dirac_weight_vjp(g, w, alpha, beta, **args), strict=True):
        np.testing.assert_allclose(part, want, rtol=1e-10, atol=1e-12)
    forward = 3 if normalize else 1  # max, squares, output
    backward = 4 if normalize else 2  # max, squares, sums, output
    assert _Module.launched[:forward + backward] == (
        ["dirac_weight_forward<double>"] * forward + ["dirac_weight_backward<double>"] * backward)
    assert set(_Module.grids[:forward + backward]) == {(2 * parts,)}


def test_stage_numbers_match_the_source():
    source = kernels.SOURCE.read_text()
    for stage, number in kernels.STAGES.items():
        assert f"#define STAGE_{stage.upper()} {number}" in source
    assert f"#define PARTIALS {kernels.PARTIALS}" in source
