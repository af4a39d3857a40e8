"""Backend discovery, inference and the import-cost promise."""

import subprocess
import sys

import numpy as np
import pytest

import dirac_core as dc
from dirac_core.reference import NumpyBackend


def test_reference_is_registered_and_available():
    b = dc.get_backend("numpy")
    assert isinstance(b, NumpyBackend) and isinstance(b, dc.Backend)
    assert b.available() and dc.available_backends()["numpy"] == ""
    assert "numpy" in dc.backend_names()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"known backends: .*numpy"):
        dc.get_backend("tensorflow")


def test_module_attribute_path_and_objects_are_accepted():
    assert isinstance(dc.get_backend("dirac_core.reference:NumpyBackend"), NumpyBackend)
    obj = NumpyBackend()
    assert dc.get_backend(obj) is obj
    np.testing.assert_array_equal(dc.ncrelu(np.ones((1, 1)), backend=obj), [[1.0, 0.0]])


def test_availability_is_truthy_with_reason():
    no = dc.Availability(False, "no device")
    assert not no and no.reason == "no device" and dc.Availability(True)


def test_inference_picks_numpy_for_numpy_and_scalars():
    assert dc.infer_backend(np.ones(2), None, 1.0).name == "numpy"


def test_inference_rejects_foreign_objects():
    with pytest.raises(TypeError, match="no backend owns"):
        dc.infer_backend(object())


def test_mixed_backends_are_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="mix"):
        dc.conv(np.ones((1, 1, 3)), torch.ones((1, 1, 1), dtype=torch.float64))


def test_cupy_without_gpu_says_why():
    status = dc.available_backends().get("cupy")
    if status == "":
        pytest.skip("a GPU with CuPy is present: nothing to explain")
    with pytest.raises(ValueError, match="cupy"):
        dc.ncrelu(np.ones((1, 1)), backend="cupy")


def test_import_loads_no_framework():
    code = (
        "import sys, numpy, dirac_core, dirac_core.nets\n"
        "dirac_core.conv(numpy.ones((1, 1, 3)), numpy.ones((1, 1, 1)))\n"
        "bad = [m for m in ('torch', 'cupy', 'jax', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
