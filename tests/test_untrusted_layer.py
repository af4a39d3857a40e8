"""Every door that reads a file from outside goes through the untrusted-input layer.

Two checks: each loader, called on a file, has the layer look at that file first (the layer's
status check records the path); and no module reads a file any other way (json.load, open,
read_text, torch.load, safetensors, Pillow, tarfile ...) except the few listed below with why.
A new loader that reads files itself fails the second test; list it in the first.
"""

from __future__ import annotations

import ast
import contextlib
import os
from pathlib import Path

import pytest

import dirac_core.untrusted as layer

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "dirac_core", ROOT / "backends", ROOT / "conformance" / "dirac_conformance",
           ROOT / "diracnets"]
LAYER = {"dirac_core/untrusted.py", "backends/dirac_torch/untrusted.py"}
# (file, call) -> why this read needs no check of the layer
ALLOWED = {
    ("backends/dirac_cupy/kernels.py", "read_text"): "the package's own CUDA source",
    ("conformance/dirac_conformance/plugin.py", "json.loads"):
        "results our own plugin serialised in a pytest-xdist worker, not a file",
    ("diracnets/atomic.py", "open"): "the kernel's /proc/self/status, for the umask",
    ("diracnets/checkpoint.py", "torch.load"):
        "the file opened by open_regular, and the payload after its SHA-256 matched",
    ("diracnets/cifar.py", "tarfile.open"):
        "after check_regular; members' sizes checked before each is read",
    ("diracnets/imagefolder.py", "Image.open"):
        "decoding only after the pixel count in the header is under MAX_PIXELS",
}
READERS = {"json.load", "json.loads", "torch.load", "np.load", "numpy.load", "pickle.load",
           "pickle.loads", "safe_open", "load_file", "Image.open", "tarfile.open",
           "read_text", "read_bytes", "open"}


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):  # read_bytes, read_text ... by bare name are the layer's
        return func.id if func.id in ("open", "safe_open", "load_file") else None
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        full = f"{owner}.{func.attr}" if owner else func.attr
        if full in READERS:
            return full
        if func.attr in ("read_text", "read_bytes"):
            return func.attr
    return None


def _writes(node: ast.Call) -> bool:
    """``open(path, "w")`` and friends write; reading is the concern here."""
    mode = node.args[1] if len(node.args) > 1 else next(
        (k.value for k in node.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and (
        set(mode.value) & set("wax"))


def _reads() -> set[tuple[str, str]]:
    found = set()
    for folder in SOURCES:
        for path in folder.rglob("*.py"):
            name = path.relative_to(ROOT).as_posix()
            if name in LAYER:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and (call := _call_name(node)) in READERS:
                    if call == "open" and _writes(node):
                        continue
                    found.add((name, call))
    return found


def test_no_module_reads_a_file_around_the_layer():
    bypass = sorted(_reads() - set(ALLOWED))
    assert not bypass, (f"these read files without dirac_core.untrusted: {bypass}; read "
                        "through the layer, or add them to ALLOWED with the reason")
    stale = sorted(set(ALLOWED) - _reads())
    assert not stale, f"ALLOWED lists reads that no longer exist: {stale}"


def _loaders(tmp_path: Path):
    """(loader, the path the layer must check) for every door that reads a file."""
    import dirac_torch
    from dirac_conformance.xfails import load_xfails
    from dirac_torch.recipe import read_recipe
    from dirac_torch.saving import read_architecture
    from diracnets import load_run
    from diracnets.checkpoint import load_checkpoint
    from diracnets.metrics import read_jsonl, read_metrics
    from diracnets.plots import read_results
    from diracnets.rundir import MARKER, read_marker
    from diracnets.saved import read_run_config

    file = tmp_path / "input"
    file.write_bytes(b"{}")
    return [
        (dirac_torch.load_model, file), (read_architecture, file), (read_recipe, file),
        (lambda p: load_run(p.parent), tmp_path / "config.json"),
        (lambda p: read_run_config(p.parent), tmp_path / "config.json"),
        (read_metrics, file), (read_jsonl, file), (read_results, file),
        (lambda p: read_marker(p.parent), tmp_path / MARKER),
        (load_checkpoint, file), (load_xfails, file),
    ]


def test_each_loader_has_the_layer_check_its_file(tmp_path, monkeypatch):
    checked: list[str] = []
    real = layer._check_status

    def recording(info: os.stat_result, path, what: str, limit: int | None) -> None:
        checked.append(str(path))
        real(info, path, what, limit)

    monkeypatch.setattr(layer, "_check_status", recording)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / ".diracnets-run.json").write_text("{}")
    for loader, path in _loaders(tmp_path):
        checked.clear()
        # the files are junk; what matters is who looked at them
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            loader(path)
        assert str(path) in checked, f"{loader} read {path} without the layer"


def test_the_layer_refuses_for_every_loader(tmp_path):
    """A FIFO (which a plain open() would wait on forever) is refused by every loader."""
    from diracnets.checkpoint import CheckpointError

    os.mkfifo(tmp_path / "fifo")
    for name in ("config.json", ".diracnets-run.json"):
        os.mkfifo(tmp_path / name)
    for loader, path in _loaders(tmp_path):
        target = path if path.name in ("config.json", ".diracnets-run.json") else tmp_path / "fifo"
        if target.name == ".diracnets-run.json":
            assert loader(target) is None  # no valid marker: "not a run folder"
            continue
        with pytest.raises((layer.UntrustedInputError, CheckpointError), match="FIFO"):
            loader(target)
