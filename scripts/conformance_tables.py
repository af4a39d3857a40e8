"""Regenerate the conformance tables of docs/conformance.md by running ``dirac-conformance``.

Each backend's table is the command's own output (``dirac-conformance BACKEND``, profile ci),
pasted between the markers ``<!-- conformance: BACKEND -->`` and ``<!-- /conformance -->``;
a backend that cannot run here keeps the command's one-line SKIPPED verdict. Run it with
``make conformance-docs`` (JAX in 64-bit mode, so that float64 is tested):

    JAX_ENABLE_X64=1 python scripts/conformance_tables.py --write [BACKEND ...]

Without ``--write`` it prints the tables instead. ``tests/test_conformance_docs.py`` checks
that the tables in the docs list exactly the suite's current checks for each backend.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "conformance.md"
BACKENDS = ("numpy", "torch", "cupy", "jax", "array_api", "dirac_array_api:ON_NUMPY",
            "dirac_array_api:ON_TORCH", "dirac_array_api:ON_JAX")
# Known failures passed with a backend's run (see the file for why).
XFAILS = {name: "backends/dirac_array_api/xfails.jsonl"
          for name in ("jax", "dirac_array_api:ON_JAX")}
MARKERS = re.compile(r"(<!-- conformance: (\S+) -->\n)(.*?)(<!-- /conformance -->)", re.S)


def run(backend: str) -> str:
    """The command's table and closing line for ``backend`` (or its SKIPPED line)."""
    xfails = ["--xfails", str(DOC.parents[1] / XFAILS[backend])] if backend in XFAILS else []
    done = subprocess.run(
        [sys.executable, "-m", "dirac_conformance.cli", backend, "--profile", "ci", *xfails],
        capture_output=True, text=True, check=False,
    )
    if done.returncode not in (0, 1) and not done.stdout.startswith("SKIPPED"):
        raise RuntimeError(f"dirac-conformance {backend} failed:\n{done.stdout}{done.stderr}")
    return table(done.stdout)


def table(output: str) -> str:
    """The docs block of one ``dirac-conformance`` output."""
    lines = output.rstrip("\n").splitlines()
    if lines[0].startswith("SKIPPED"):
        table = lines[:1]
    else:  # the table and the "n/m checks conform" line; failure details are not for docs
        table = [*lines[: lines.index("")], "", lines[-1]]
    return "```text\n" + "\n".join(table) + "\n```\n"


def write(tables: dict[str, str]) -> None:
    text = DOC.read_text()

    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        body = tables.get(name, match.group(3))
        return match.group(1) + body + match.group(4)

    DOC.write_text(MARKERS.sub(replace, text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", nargs="*", default=list(BACKENDS))
    parser.add_argument("--write", action="store_true", help="update docs/conformance.md")
    parser.add_argument("--saved", nargs=2, action="append", default=[],
                        metavar=("BACKEND", "FILE"),
                        help="take BACKEND's table from a saved run of the command instead")
    args = parser.parse_args(argv)
    saved = {name: table(Path(path).read_text()) for name, path in args.saved}
    tables = {name: saved.get(name) or run(name) for name in args.backends}
    if args.write:
        write(tables)
    else:
        for name, text in tables.items():
            print(f"{name}:\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
