"""Backend discovery, inference and the import-cost promise."""

import subprocess
import sys
import types
from pathlib import Path

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


UNINSTALLED_PROBE = """
import importlib.metadata as md
import numpy as np
import torch
import dirac_core as dc
from dirac_core.registry import GROUP, SOURCE_TREE
assert not list(md.entry_points(group=GROUP)), "the distribution metadata is visible"
assert not [d for d in md.distributions() if d.metadata["Name"] == "diracnets"]
assert set(SOURCE_TREE) <= set(dc.backend_names()), dc.backend_names()
assert dc.get_backend("torch").name == "torch"
assert dc.get_backend("cupy", require_available=False).name == "cupy"
assert dc.infer_backend(torch.ones(2)).name == "torch"
assert isinstance(dc.ncrelu(torch.ones(1, 2)), torch.Tensor)
import jax.numpy as jnp, array_api_strict as xp
assert dc.infer_backend(jnp.ones(2)).name == "jax"
assert dc.infer_backend(xp.ones(2)).name == "array_api"
print("ok", sorted(dc.available_backends()))
"""


def test_source_tree_without_metadata_finds_every_backend_of_the_repository(uninstalled,
                                                                           source_tree):
    """A checkout on PYTHONPATH, not installed (as on a bare GPU machine): the backends of
    this repository are known by name and inferred from their arrays all the same."""
    pytest.importorskip("torch")
    # Run from the clean checkout: `python -c` puts the working directory on sys.path.
    done = subprocess.run([uninstalled["PYTHON"], "-c", UNINSTALLED_PROBE], env=uninstalled,
                          cwd=source_tree, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ['array_api', 'cupy', 'jax', 'numpy', 'torch']"), \
        done.stdout


def test_source_tree_lists_only_packages_on_the_path(uninstalled, source_tree):
    env = {**uninstalled, "PYTHONPATH": uninstalled["PYTHONPATH"].replace("/backends", "/none")}
    code = "import dirac_core as dc; print(dc.backend_names())"
    done = subprocess.run([uninstalled["PYTHON"], "-c", code], env=env, cwd=source_tree,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['numpy']"


class _Exploding:
    """Not a backend, and constructing it would raise: it must be refused before that."""

    def __init__(self) -> None:
        raise AssertionError("constructed")


class _BrokenInit(NumpyBackend):
    def __init__(self) -> None:
        raise OSError("libfoo.so missing")


@pytest.fixture
def fake_module(monkeypatch):
    module = types.ModuleType("fake_backends")
    module.Exploding, module.BrokenInit = _Exploding, _BrokenInit
    monkeypatch.setitem(sys.modules, "fake_backends", module)


@pytest.mark.parametrize("target", ["os:path", "dirac_core.api:conv", "fake_backends:Exploding"])
def test_module_attr_that_is_not_a_backend_is_refused_before_it_runs(target, fake_module):
    with pytest.raises(TypeError, match=r"not a Backend: it lacks available, owns"):
        dc.get_backend(target)


def test_a_backend_class_whose_constructor_raises_is_broken(fake_module):
    with pytest.raises(dc.BrokenBackendError, match=r"libfoo\.so missing"):
        dc.get_backend("fake_backends:BrokenInit")


def test_the_source_tree_list_is_the_pyproject_registration():
    """``SOURCE_TREE`` (what a checkout on PYTHONPATH finds) names exactly the backends, and
    the targets, that ``pyproject.toml`` registers as entry points."""
    tomllib = pytest.importorskip("tomllib")
    from dirac_core.registry import GROUP, SOURCE_TREE

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    registered = tomllib.loads(pyproject.read_text())["project"]["entry-points"][GROUP]
    assert registered == SOURCE_TREE


@pytest.mark.parametrize(("available", "message"), [
    (lambda self: None, r"available\(\) returned None, not a dirac_core.Availability"),
    (lambda self: 1 / 0, r"available\(\) raised ZeroDivisionError"),
])
def test_an_available_that_crashes_is_a_one_line_broken_backend(available, message):
    from dirac_core.registry import availability

    broken = type("Crashing", (NumpyBackend,), {"available": available})()
    with pytest.raises(dc.BrokenBackendError, match=message) as exc:
        availability(broken, "crashing")
    assert "\n" not in str(exc.value)
