"""The CI recipe installs: the wheel and sdist build from the source tree, the wheel installs
into a clean virtual environment, and ``dirac-conformance`` runs from it.

Nothing is downloaded: the build uses the installed setuptools (``--no-isolation``), the wheel
is installed with ``--no-deps --no-index``, and the clean environment borrows numpy and
hypothesis from this one's site-packages through a ``.pth`` line (which, unlike a site dir,
does not run this environment's editable-install hooks, so only the wheel provides our
packages).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "build", "dist", "__pycache__",
                              ".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                              "runs", "_build", "*.onnx", "data")


def _run(*cmd: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120,
                          env=env, check=False, **kw)  # type: ignore[call-overload]


@pytest.mark.slow
def test_wheel_and_sdist_build_install_and_run_the_suite(tmp_path: Path) -> None:
    pytest.importorskip("build")
    src, dist = tmp_path / "src", tmp_path / "dist"
    shutil.copytree(ROOT, src, ignore=SKIP)
    built = _run(sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check",
                 "--outdir", dist, src)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        points = [archive.read(n).decode() for n in names if n.endswith("entry_points.txt")]
    for module in ("dirac_core/api.py", "dirac_conformance/cli.py",
                   "dirac_conformance/py.typed", "dirac_torch/backend.py"):
        assert module in names, module
    assert any("dirac-conformance" in p and "pytest11" in p for p in points)
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("conformance/dirac_conformance/runner.py")
                   for n in archive.getnames())

    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                     "--no-index", "--quiet", wheel)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(site.stdout.strip()) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"])

    where = _run(python, "-c", "import dirac_conformance; print(dirac_conformance.__file__)")
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    run = _run(venv / "bin" / "dirac-conformance", "numpy", "--ops", "ncrelu", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3/3 checks conform" in run.stdout


def test_the_conformance_extra_is_lean() -> None:
    """A backend's CI installs ``diracnets[conformance]``: the suite's needs, no linters."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = {re.split(r"[<>=\[]", d)[0] for d in extras["conformance"]}
    assert names == {"pytest", "hypothesis", "ml_dtypes"}
    assert "diracnets[conformance]" in extras["test"]
