"""The Makefile's recipes name files that exist (a renamed benchmark must not break `make`)."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_every_script_a_recipe_runs_exists():
    makefile = (ROOT / "Makefile").read_text()
    scripts = re.findall(r"\$\(PY\) ((?:benchmarks|scripts)/\S+\.py)", makefile)
    assert "benchmarks/bench_core.py" in scripts  # the pattern finds the bench recipe
    missing = [s for s in scripts if not (ROOT / s).is_file()]
    assert not missing, f"Makefile runs scripts that do not exist: {missing}"
