"""Hypothesis profiles shared by every test area: "ci" (default) and "thorough".

Select with ``HYPOTHESIS_PROFILE=thorough pytest ...``. Deadlines are off: the machines are
shared and noisy, and speed is measured by benchmarks, not tests.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
# lets every test area import the shared fuzzing strategies (fuzz_inputs) under importlib mode.
# Registered as a module rather than by putting tests/ on sys.path, where its folders would
# shadow absent packages of the same name (tests/cupy would import as a bogus "cupy").
_spec = importlib.util.spec_from_file_location("fuzz_inputs", Path(__file__).with_name(
    "fuzz_inputs.py"))
sys.modules["fuzz_inputs"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules["fuzz_inputs"])

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ---------------------------------------------------------------------------- source tree


def _shadow_site(tmp: Path) -> Path:
    """The interpreter's site-packages as symlinks, minus this project's distribution
    metadata and every ``.pth`` file (the editable install's import hook among them)."""
    shadow = tmp / "site"
    shadow.mkdir()
    for site in {Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()}:
        for entry in site.iterdir():
            name = entry.name.lower()
            if name.startswith(("diracnets", "__editable__")) or name.endswith(".pth"):
                continue
            if not (shadow / entry.name).exists():
                (shadow / entry.name).symlink_to(entry)
    return shadow


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory) -> Path:
    """This checkout as a fresh clone has it: every top-level entry (as a symlink) except the
    metadata an editable install writes into the checkout (``*.egg-info``) and the venv."""
    src = tmp_path_factory.mktemp("checkout")
    for entry in ROOT.iterdir():
        if not entry.name.endswith(".egg-info") and entry.name not in (".venv", ".git"):
            (src / entry.name).symlink_to(entry)
    return src


@pytest.fixture(scope="session")
def uninstalled(tmp_path_factory, source_tree) -> dict[str, str]:
    """An environment running this checkout as a bare GPU machine would: not installed (no
    entry points, no distribution metadata), found through ``PYTHONPATH`` alone.

    ``PYTHON`` in the returned environment is an interpreter wrapper started with ``-S`` (no
    site-packages, so no editable install); the third-party packages come through a shadow
    copy of site-packages that lacks this project's metadata.
    """
    tmp = tmp_path_factory.mktemp("uninstalled")
    wrapper = tmp / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(0o755)
    src = source_tree
    path = [str(src), str(src / "backends"), str(src / "conformance"), str(_shadow_site(tmp))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update({"PYTHONPATH": os.pathsep.join(path), "PYTHON": str(wrapper),
                "PATH": f"{tmp}{os.pathsep}{env.get('PATH', '')}"})
    return env
