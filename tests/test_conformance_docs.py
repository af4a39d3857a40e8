"""The conformance tables of docs/conformance.md are the current suite's.

They are pasted by ``scripts/conformance_tables.py`` from ``dirac-conformance``'s output; this
test fails when a check is added or removed, or a backend's dtypes change, until they are
regenerated (``make conformance-docs``). Errors and timings are not re-measured here.
"""

import re
from pathlib import Path

import pytest

from dirac_conformance.checks import CHECKS
from dirac_conformance.target import Unavailable, load_target
from dirac_conformance.xfails import find_xfail, load_xfails

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "conformance.md"
SECTIONS = re.findall(r"<!-- conformance: (\S+) -->\n(.*?)<!-- /conformance -->",
                      DOC.read_text(), flags=re.S)
# The known failures a backend's table is made with (scripts/conformance_tables.py's XFAILS).
_KNOWN = ROOT / "backends" / "dirac_array_api" / "xfails.jsonl"
XFAILS = {"jax": _KNOWN, "dirac_array_api:ON_JAX": _KNOWN}


def test_every_backend_of_the_project_has_a_table():
    names = [name for name, _ in SECTIONS]
    assert names == ["numpy", "torch", "cupy", "jax", "array_api", "dirac_array_api:ON_NUMPY",
                     "dirac_array_api:ON_TORCH", "dirac_array_api:ON_JAX"]


def _target(name: str):
    try:
        if name not in ("jax", "dirac_array_api:ON_JAX"):
            return load_target(name)
        import jax

        with jax.enable_x64(True):  # the tables are made in 64-bit mode
            return load_target(name)
    except Unavailable as exc:
        pytest.skip(f"{name} cannot run here: {exc}")


@pytest.mark.parametrize(("name", "body"), SECTIONS, ids=[name for name, _ in SECTIONS])
def test_table_lists_the_current_checks(name, body):
    lines = body.strip().removeprefix("```text").removesuffix("```").strip().splitlines()
    assert lines, f"no table for {name}: run make conformance-docs"
    if lines[0].startswith("SKIPPED"):
        assert len(lines) == 1
        return
    rows = [line.split() for line in lines[2:] if line.strip() and "checks conform" not in line]
    target = _target(name)
    assert {(r[1], r[2]) for r in rows} == {
        (check, dtype) for check in CHECKS for dtype in target.dtypes
    }
    # Every backend of the project conforms; a known failure only where its file lists it
    # for this backend (an entry that is not strict may pass as well).
    known = load_xfails(XFAILS.get(name))
    for r in rows:
        entry = find_xfail(known, (name, target.backend.name), r[1], r[2])
        allowed = {"PASS"} if entry is None else {"XFAIL"} if entry.strict else {"XFAIL", "PASS"}
        assert r[3] in allowed, r
    assert re.fullmatch(rf"{len(rows)}/{len(rows)} checks conform \(.* s, profile ci\)",
                        lines[-1])
