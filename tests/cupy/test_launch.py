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
        *head, _length, _spatial, _centre, per_group, _n, policy_min, eps, normalize = args
        w = head[0] if forward else head[1]
        # eps arrives already in the working dtype's range: taking it there again is a no-op.
        geo = {
            "eps": float(eps), "normalize": bool(normalize),
            "groups": w.shape[0] // int(per_group), "policy": "min" if policy_min else "tile",
        }
        if forward:
            _, a, a_kind, a_step, b, b_kind, b_step, out = head
            out[...] = fm.weight_forward(
                w, _scale(a, a_kind, a_step), _scale(b, b_kind, b_step), **geo
            )
        else:
            g, _, b, b_kind, b_step, dw, dalpha, dbeta = head
            dw[...], dalpha[...], dbeta[...] = fm.weight_backward(
                g, w, _scale(b, b_kind, b_step), **geo
            )
        return
    if kernel == "narrow":
        src, dst, total = args
        assert src.size == dst.size == int(total)
        dst[...] = src.astype(dst.dtype)
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

    def __init__(self, code, name_expressions=()):
        self.code, self.names = code, list(name_expressions)

    def compile(self):
        pass

    def get_function(self, name):
        assert name in self.names, f"{name} was not declared as a name expression"
        kernel, _, storage = name[:-1].partition("<")
        ctypes_ = _parameters(self.code, kernel, storage)

        def launch(grid, block, args):
            assert block == (kernels.BLOCK,) and all(0 < d < 2**31 for d in grid)
            _check_arguments(ctypes_, args)
            _Module.launched.append(name)
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
    kernels._module.cache_clear()
    _Module.launched = []
    yield fake
    kernels._module.cache_clear()


def test_expanded_signature_of_the_weight_kernel():
    params = _parameters(kernels.SOURCE.read_text(), "dirac_weight_forward", "__half")
    assert params == [
        "__half*", "void*", "int", "long long", "void*", "int", "long long", "__half*",
        "long long", "long long", "long long", "long long", "long long", "int", "double", "int",
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
        f"narrow<{scale}>", f"narrow<{scale}>",
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
