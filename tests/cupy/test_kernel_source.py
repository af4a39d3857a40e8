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
    assert len(names) == len(set(names)) == 4 * len(kernels.CUDA_TYPES)
    assert "dirac_weight_forward<__half, float>" in names  # half accumulates in float


def test_source_block_size_matches_the_launcher():
    assert f"#define DIRAC_BLOCK {kernels.BLOCK}" in kernels.SOURCE.read_text()


def test_kernels_compile_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH: cannot compile dirac_kernels.cu here")
    # Taking each instantiation's address makes nvcc compile exactly what NVRTC will.
    refs = ", ".join(f"(void*)&{name}" for name in kernels.name_expressions())
    wrapper = tmp_path / "instances.cu"
    wrapper.write_text(f'#include "{kernels.SOURCE}"\nvoid* dirac_instances[] = {{{refs}}};\n')
    cmd = [nvcc, "-std=c++14", "-Werror", "all-warnings", "-c", str(wrapper), "-o",
           str(tmp_path / "instances.o")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"nvcc failed:\n{done.stdout}\n{done.stderr}"
