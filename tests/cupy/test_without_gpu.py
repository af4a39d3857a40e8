"""The CuPy backend on a machine without CuPy or without a GPU: it imports, says why it cannot
run, and the public API refuses ``backend="cupy"`` with that reason."""

import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import dirac_core as dc
import dirac_cupy
from dirac_core.backend import Availability, Backend
from dirac_cupy import availability
from dirac_cupy import backend as cupy_backend
from dirac_cupy.availability import MIN_CUPY, probe

OLDEST = f"CuPy >= {MIN_CUPY}"
ROOT = Path(__file__).resolve().parents[2]


def _fake_cupy(version: str = "13.3.0", count=1):
    """A stand-in for the cupy module: a version and a runtime answering getDeviceCount."""

    def get_device_count():
        if isinstance(count, Exception):
            raise count
        return count

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(__version__=version, __file__="cupy/__init__.py",
                                 cuda=types.SimpleNamespace(runtime=runtime))


def _importer(module):
    def import_module(name):
        assert name == "cupy"
        if isinstance(module, Exception):
            raise module
        return module

    return import_module


def test_import_does_not_import_cupy():
    code = "import sys, dirac_cupy, dirac_core; assert 'cupy' not in sys.modules, 'imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_backend_satisfies_the_protocol():
    b = dirac_cupy.CupyBackend()
    assert isinstance(b, Backend)
    assert (b.name, b.dtypes) == ("cupy", ("float64", "float32", "float16"))
    assert not b.owns(np.zeros(3))


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (ImportError("No module named 'cupy'"), "CuPy is not installed (No module named 'cupy')"),
        (_fake_cupy(version="12.3.0"), f"CuPy 12.3.0 is too old: the cupy backend needs {OLDEST}"),
        (_fake_cupy(count=RuntimeError("cudaErrorInsufficientDriver")), "CUDA driver error"),
        (_fake_cupy(count=0), "CuPy found no CUDA device"),
    ],
)
def test_probe_names_the_step_that_failed(module, expected):
    status = probe(_importer(module))
    assert not status.ok and not status
    assert status.reason.startswith(expected), status.reason


def test_a_folder_named_cupy_is_not_cupy():
    """A namespace package (a directory called cupy on sys.path, such as tests/cupy when
    tests/ is on it) is reported as CuPy missing, not as a CuPy too old."""
    folder = types.SimpleNamespace(__path__=["/somewhere/tests/cupy"])
    status = probe(_importer(folder))
    assert status.reason.startswith("CuPy is not installed (only a folder named cupy was "
                                    "found, at /somewhere/tests/cupy)"), status.reason


def test_probe_passes_a_usable_cupy_and_reports_driver_details():
    assert probe(_importer(_fake_cupy())) == Availability(True)
    status = probe(_importer(_fake_cupy(count=RuntimeError("cudaErrorNoDevice: no CUDA GPUs"))))
    assert "RuntimeError: cudaErrorNoDevice: no CUDA GPUs" in status.reason


def test_available_here_matches_the_machine():
    status = dirac_cupy.CupyBackend().available()
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert not status
        assert status.reason.startswith("CuPy is not installed")
        return
    assert status.ok or status.reason  # with CuPy: either usable or a reason why not


def test_forcing_an_unusable_cupy_raises_the_reason(monkeypatch):
    monkeypatch.setattr(cupy_backend, "cached_probe", lambda: Availability(False, "no GPU (test)"))
    dc.get_backend("cupy", require_available=False)  # make sure the instance is the patched one
    x, w = np.zeros((1, 1, 4)), np.ones((1, 1, 3))
    refusal = r"backend='cupy' is installed but not usable here: no GPU \(test\)"
    with pytest.raises(ValueError, match=refusal):
        dc.conv(x, w, backend="cupy")
    with pytest.raises(ValueError, match="backend='cupy'"):
        dc.dirac_weight(w, 1.0, 1.0, backend="cupy")


def test_backend_cupy_without_cupy_says_it_is_not_installed():
    if dirac_cupy.CupyBackend().available():
        pytest.skip("CuPy runs on this machine; the unpatched refusal cannot happen here")
    with pytest.raises(ValueError, match=r"backend='cupy' is installed but not usable here: CuPy"):
        dc.ncrelu(np.ones((2, 3)), backend="cupy")
    assert "cupy" in dc.available_backends()
    assert dc.available_backends()["cupy"] == dirac_cupy.CupyBackend().available().reason


@pytest.mark.parametrize(("device", "expected"), [(None, None), (1, 1), ("cuda", 0), ("cuda:3", 3)])
def test_device_forms(device, expected):
    assert cupy_backend._device_id(device) == expected


@pytest.mark.parametrize("device", ["cpu", "cuda:x", 1.5, True])
def test_bad_device_is_refused_by_name(device):
    with pytest.raises(ValueError, match=rf"device={device!r} is not a CUDA device"):
        cupy_backend._device_id(device)


def test_ops_without_cupy_fail_loudly():
    if dirac_cupy.CupyBackend().available():
        pytest.skip("CuPy runs on this machine")
    with pytest.raises(RuntimeError, match="the cupy backend cannot run here: CuPy is not"):
        dirac_cupy.CupyBackend().from_numpy(np.zeros(2))


def test_from_torch_refuses_cpu_tensors():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="t is on device cpu; from_torch shares CUDA memory"):
        dirac_cupy.from_torch(torch.zeros(2))


def test_fused_switch_follows_the_environment(monkeypatch):
    monkeypatch.setenv("DIRAC_CUPY_FUSED", "0")
    assert not dirac_cupy.CupyBackend().fused
    monkeypatch.delenv("DIRAC_CUPY_FUSED")
    assert dirac_cupy.CupyBackend().fused
    assert not dirac_cupy.CupyBackend(fused=False).fused


class CompileError(Exception):
    pass


@pytest.mark.parametrize("error", [
    CompileError("dirac_kernels.cu(12): error: identifier is undefined"),
    # What CuPy raises when NVRTC or the CUDA headers are missing: not a CompileException.
    RuntimeError("cannot open source file cuda_fp16.h"),
    ImportError("CuPy failed to load libnvrtc.so.12"),
    OSError("libnvrtc-builtins.so.12.4: cannot open shared object file"),
], ids=["compile", "headers", "nvrtc", "builtins"])
def test_a_failed_compile_is_fatal_when_strict_and_a_fallback_otherwise(monkeypatch, error):
    errors = types.SimpleNamespace(CompileException=CompileError, CUDADriverError=CompileError)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(compiler=errors, driver=errors))
    monkeypatch.setattr(cupy_backend, "_cupy", lambda: fake)

    def broken(device):
        raise error

    monkeypatch.setattr(cupy_backend.kernels, "compile_for", broken)
    w = types.SimpleNamespace(dtype=np.dtype("float32"), device=types.SimpleNamespace(id=0))
    strict = dirac_cupy.CupyBackend(strict=True)
    why = f"{type(error).__name__}: {re.escape(str(error))}"
    with pytest.raises(RuntimeError, match=rf"did not compile .*{why}"):
        strict._use_fused(w)
    assert strict.path == "fused"  # nothing ran on the generic path instead
    lenient = dirac_cupy.CupyBackend(strict=False)
    with pytest.warns(RuntimeWarning, match="fused kernels did not compile"):
        assert not lenient._use_fused(w)
    assert lenient.path == "generic"
    monkeypatch.setenv("DIRAC_CUPY_STRICT", "1")
    assert dirac_cupy.CupyBackend().strict and not dirac_cupy.CupyBackend(strict=False).strict


class _Driver:
    """Stands in for libcuda: cuDriverGetVersion writes ``version`` and returns ``status``."""

    def __init__(self, version: int, status: int = 0):
        self.version, self.status = version, status

    def cuDriverGetVersion(self, pointer):
        pointer._obj.value = self.version
        return self.status


def _loader(driver):
    def load(name):
        if driver is None:
            raise OSError(f"{name}: cannot open shared object file")
        return driver

    return load


@pytest.mark.parametrize(
    ("driver", "major"),
    [(_Driver(12040), 12), (_Driver(13000), 13), (_Driver(13020, status=100), None), (None, None)],
)
def test_driver_cuda_version_comes_from_libcuda(driver, major):
    assert availability.driver_cuda_major(_loader(driver)) == major


@pytest.mark.parametrize(
    ("major", "wanted"),
    [(12, "'diracnets[cupy-cuda12x]'"), (13, "'diracnets[cupy-cuda13x]'"),
     (14, "'diracnets[cupy-cuda13x]'"), (11, "update it")],
)
def test_install_hint_names_the_wheel_for_the_driver(major, wanted):
    hint = availability.install_hint(major)
    assert f"supports CUDA {major}" in hint and wanted in hint
    if major >= 12:  # one extra only, and a warning about the other wheel
        other = {"12": "cuda13x", "13": "cuda12x", "14": "cuda12x"}[str(major)]
        assert other not in hint and "one CuPy wheel only" in hint


def test_missing_cupy_reason_carries_the_hint_for_this_driver(monkeypatch):
    monkeypatch.setattr(availability, "driver_cuda_major", lambda: 13)
    status = probe(_importer(ImportError("No module named 'cupy'")))
    assert status.reason.endswith("pip install 'diracnets[cupy-cuda13x]' (one CuPy wheel only: "
                                  "uninstall any other cupy-cuda* first)")
    assert "no CUDA driver found" in availability.install_hint(None)
    assert "cupy-cuda12x" in availability.install_hint(None)


def test_extras_offer_one_cupy_per_cuda_major():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert "cupy" not in extras  # a single CuPy extra would install the wrong wheel somewhere
    for major, extra in availability.CUPY_EXTRAS.items():
        # One CuPy wheel each, plus the namespace adapter the generic path runs through.
        cupies = [d.split(">=")[0] for d in extras[extra] if d.startswith("cupy")]
        assert cupies == [f"cupy-cuda{major}x"]
