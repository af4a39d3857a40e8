"""The CUDA source of the fused kernels: it compiles with nvcc, and the launcher's list of
template instantiations covers every kernel in it. Runs without a GPU (nvcc only)."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from dirac_cupy import kernels


def _global_kernels(source: str) -> set[str]:
    pattern = r"__global__\s+void\s+(?:__launch_bounds__\(\w+\)\s+)?(\w+)\s*\("
    return set(re.findall(pattern, source))


def test_every_kernel_is_instantiated_for_every_dtype():
    names = kernels.name_expressions()
    assert {n.partition("<")[0] for n in names} == _global_kernels(kernels.SOURCE.read_text())
    assert len(names) == len(set(names)) == len(kernels.KERNELS) * len(kernels.CUDA_TYPES)
    assert "dirac_weight_forward<__half>" in names


def test_source_block_size_matches_the_launcher():
    assert f"#define DIRAC_BLOCK {kernels.BLOCK}" in kernels.SOURCE.read_text()


def _nvcc(tmp_path, *args: str) -> None:
    """Compile every instantiation the backend launches, with the launcher's options and
    flush-to-zero, as CuPy does."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH: cannot compile dirac_kernels.cu here")
    # Taking each instantiation's address makes nvcc compile exactly what NVRTC will.
    refs = ", ".join(f"(void*)&{name}" for name in kernels.name_expressions())
    wrapper = tmp_path / "instances.cu"
    wrapper.write_text(f'#include "{kernels.SOURCE}"\nvoid* dirac_instances[] = {{{refs}}};\n')
    cmd = [nvcc, "-std=c++14", "-Werror", "all-warnings", *kernels.OPTIONS, "-ftz=true", *args,
           str(wrapper)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"nvcc failed:\n{done.stdout}\n{done.stderr}"


def test_kernels_compile_with_nvcc(tmp_path):
    _nvcc(tmp_path, "-c", "-o", str(tmp_path / "instances.o"))


F32_ARITHMETIC = re.compile(
    r"\b(?:add|sub|mul|div|fma|mad|sqrt|rsqrt|rcp|max|min|abs|neg)\.[\w.]*f32\b"
)


def test_no_float32_arithmetic_for_flush_to_zero_to_flush(tmp_path):
    """Under -ftz=true only float32 operations flush subnormals: the PTX of every kernel has
    none but loads, stores, moves and conversions, and float32 comparisons only on values
    converted from half (always normal floats)."""
    _nvcc(tmp_path, "-ptx", "-arch=sm_80", "-o", str(tmp_path / "instances.ptx"))
    ptx = (tmp_path / "instances.ptx").read_text()
    entries = re.split(r"^\.visible \.entry ", ptx, flags=re.M)[1:]
    assert len(entries) == len(kernels.name_expressions())
    for entry in entries:
        name = entry.split("(", 1)[0]
        assert not F32_ARITHMETIC.findall(entry), f"{name}: {F32_ARITHMETIC.findall(entry)}"
        if "6__half" not in name:
            assert "setp" not in entry or not re.search(r"setp\.[\w.]*f32", entry), name
    # The float <-> double conversions flush under -ftz: the source guards both by the bits.
    assert "cvt.ftz.f64.f32" in ptx and "__float_as_uint" in kernels.SOURCE.read_text()


def test_no_fused_multiply_adds_so_the_mirror_rounds_as_the_kernels(tmp_path):
    """nvcc contracts ``a * b + c`` into one fused multiply-add (one rounding) where the mirror
    rounds twice; compiled with the launcher's options, the PTX has none."""
    _nvcc(tmp_path, "-ptx", "-arch=sm_80", "-o", str(tmp_path / "instances.ptx"))
    ptx = (tmp_path / "instances.ptx").read_text()
    assert "mul.rn.f64" in ptx  # a product nvcc may not contract
    assert not re.findall(r"\b(?:fma|mad)\.[\w.]*f(?:16|32|64)\b", ptx), "fused multiply-adds"


def _literal(pattern: str) -> float:
    return float(re.search(pattern, kernels.SOURCE.read_text()).group(1))


def test_bit_level_float_conversions_are_exact():
    """``to_acc(float)`` and ``store(float*, double)`` rebuild subnormals from their bits (a
    plain conversion flushes them under -ftz). Their constants are the powers of two they
    claim, and the algorithm, ported to NumPy, is bit-exact against IEEE conversion."""
    tiny = _literal(r"\* ([\d.e+-]+);  // \* 2\^-149")
    smallest_normal = _literal(r"a < ([\d.e+-]+)\)\) \{  // at least 2\^-126")
    scale = _literal(r"__double2uint_rn\(a \* ([\d.e+-]+)\)")
    assert (tiny, smallest_normal, scale) == (2.0**-149, 2.0**-126, 2.0**149)

    rng = np.random.default_rng(0)
    floats = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    floats = floats[~np.isnan(floats)]
    bits = floats.view(np.uint32)
    magnitude = (bits & 0x7FFFFF).astype(np.float64) * tiny
    widened = np.where(bits & 0x7F800000, floats.astype(np.float64),
                       np.where(bits >> 31 == 1, -magnitude, magnitude))
    assert np.array_equal(widened, floats.astype(np.float64))

    doubles = np.concatenate([rng.uniform(-2e-38, 2e-38, 100_000), widened,
                              [0.0, -0.0, 2.0**-150, 3 * 2.0**-150, 2.0**-126 * (1 - 2.0**-25)]])
    a = np.abs(doubles)
    normal = ~(a < smallest_normal)
    mantissa = np.where(normal, 0, np.rint(a * scale)).astype(np.uint32)  # rint: half to even
    sign = np.where(np.signbit(doubles), np.uint32(0x80000000), np.uint32(0))
    with np.errstate(over="ignore"):
        expected = doubles.astype(np.float32)
        narrowed = np.where(normal, expected, (sign | mantissa).view(np.float32))
    assert np.array_equal(narrowed.view(np.uint32), expected.view(np.uint32))
