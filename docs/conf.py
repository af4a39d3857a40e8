"""Sphinx configuration: the pages of docs/ plus an API reference generated from docstrings.

Built with warnings as errors (``make docs``), so a broken cross-reference, a malformed
docstring or a public object without a docstring fails the build.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Build from the source tree, installed or not.
for sub in ("", "backends", "conformance"):
    sys.path.insert(0, str(ROOT / sub))

project = "diracnets"
author = "the diracnets authors"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures already show them; the docstrings explain them
suppress_warnings = ["myst.xref_missing"]  # links to source files outside docs/
html_theme = "alabaster"


def _require_docstring(app: Any, what: str, name: str, obj: Any, options: Any,
                       lines: list[str]) -> None:
    """A public object of the API reference without a docstring is a build error."""
    documented = what in ("module", "class", "function", "method", "exception")
    if documented and not any(line.strip() for line in lines):
        from sphinx.util import logging

        logging.getLogger(__name__).warning("%s %s has no docstring", what, name)


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _require_docstring)
