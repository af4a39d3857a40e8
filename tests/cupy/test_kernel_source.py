"""The CUDA source of the fused kernels: it compiles with nvcc, and the launcher's list of
template instantiations covers every kernel in it. Runs without a GPU (nvcc only)."""

import re
import shutil
import subprocess

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
    """Compile every instantiation the backend launches, with flush-to-zero as CuPy does."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH: cannot compile dirac_kernels.cu here")
    # Taking each instantiation's address makes nvcc compile exactly what NVRTC will.
    refs = ", ".join(f"(void*)&{name}" for name in kernels.name_expressions())
    wrapper = tmp_path / "instances.cu"
    wrapper.write_text(f'#include "{kernels.SOURCE}"\nvoid* dirac_instances[] = {{{refs}}};\n')
    cmd = [nvcc, "-std=c++14", "-Werror", "all-warnings", "-ftz=true", *args, str(wrapper)]
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
