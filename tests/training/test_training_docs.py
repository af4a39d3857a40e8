"""The code blocks of docs/training.md run: the ``python`` blocks in order in one namespace,
the ``sh`` blocks in a shell where ``diracnets`` is this checkout's command, all in one fresh
folder, so the documented workflows cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "training.md"


def _blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(python|sh)\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_documented_workflows_are_shown():
    kinds = [kind for kind, _ in _blocks()]
    assert kinds.count("python") >= 4 and kinds.count("sh") >= 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_docs_code_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = [str(ROOT), str(ROOT / "backends"), str(ROOT / "conformance")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}
    # the command as installed: `diracnets` is `python -m diracnets.cli` of this checkout
    command = f'diracnets() {{ "{sys.executable}" -m diracnets.cli "$@"; }}\n'
    namespace: dict = {}
    for number, (kind, block) in enumerate(_blocks(), 1):
        where = f"{DOC.name}, block {number}"
        if kind == "python":
            exec(compile(block, where, "exec"), namespace)
            continue
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", command + block], env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{where}:\n{result.stderr}"
    assert Path("runs/cli/summary.json").is_file()
    assert Path("runs/quick/folded.safetensors").is_file()


def test_the_documented_refusal_is_what_the_command_prints(monkeypatch, capsys):
    # The block shows one machine's memory; the rest of the line is the command's own.
    from diracnets import memory
    from diracnets.cli import main

    shown = re.search(r"```text\n\$ diracnets (train --width \d+)\n(diracnets: error: .*?)\n```",
                      DOC.read_text())
    assert shown is not None, "the --width refusal is no longer shown"
    gib = float(re.search(r"this machine has ([\d.]+) GiB", shown[2])[1])
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: int(gib * 2**30))
    assert main(shown[1].split()) == 2
    assert capsys.readouterr().err.strip() == shown[2]
