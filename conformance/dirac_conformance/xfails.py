"""Known failures: a file of JSON lines, one expected failure per line.

Format (blank lines and lines starting with ``#`` are ignored)::

    {"op": "conv_vjp", "dtype": "bfloat16", "reason": "gh-123: dw accumulates in bf16"}
    {"backend": "mybackend", "op": "normalize_filters", "reason": "no overflow guard yet"}
    {"op": "dirac_weight", "reason": "flaky rounding", "strict": false}

``op`` is required (a check name, e.g. an op of ``dirac_core.OPS`` or ``identity_eq1``);
``backend`` and ``dtype`` default to every backend/dtype; ``reason`` is required;
``strict`` (default true) makes an unexpected pass a failure, so fixed bugs get noticed (the
report names the entry to delete). Entries that match no check that ran are reported too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from dirac_core.untrusted import UntrustedInputError, from_dict, read_json_lines

from .checks import CHECKS
from .dtypes import SUPPORTED

_KEYS = {"op", "dtype", "backend", "reason", "strict"}
XFAILS_LIMIT = 2**20  # bytes: thousands of entries


@dataclass(frozen=True)
class Xfail:
    """One expected failure (``None`` fields match anything); ``source`` is ``file:line``."""

    op: str
    reason: str
    dtype: str | None = None
    backend: str | None = None
    strict: bool = True
    source: str = field(default="", compare=False)

    def line(self) -> str:
        """The entry as a JSON line, as it would be written in the file."""
        data = {k: v for k, v in asdict(self).items() if v is not None and k != "source"}
        if data["strict"]:
            del data["strict"]
        return json.dumps(data)

    def matches(self, backend: str | tuple[str, ...], op: str, dtype: str) -> bool:
        """Whether this entry covers ``op`` on ``dtype`` of ``backend``: the label the
        backend was loaded from (``NAME@DEVICE`` also matches an entry for ``NAME``), or
        several names of it (the label and ``Backend.name``)."""
        names = (backend,) if isinstance(backend, str) else backend
        known = {form for name in names if name for form in (name, name.partition("@")[0])}
        return self.op == op and self.dtype in (None, dtype) and (
            self.backend is None or self.backend in known)


def load_xfails(path: str | Path | None) -> list[Xfail]:
    """Parse an xfails file; ``None`` gives no xfails.

    The file is read as untrusted input (:mod:`dirac_core.untrusted`): a regular file (not a
    FIFO, a device or a sparse file) of at most :data:`XFAILS_LIMIT` bytes, strict JSON lines
    nested at most :data:`~dirac_core.untrusted.MAX_DEPTH` deep.

    Raises
    ------
    ValueError
        (:class:`~dirac_core.untrusted.UntrustedInputError`, or ``FileNotFoundError``'s
        message as one) A file that cannot be read; a line that is not a JSON object, has
        unknown keys, lacks ``op`` or ``reason``, has a value of the wrong type, or names an
        unknown op or dtype (the message gives the file and line number).
    """
    if path is None:
        return []
    try:
        lines = list(read_json_lines(path, "xfails file", XFAILS_LIMIT))
    except FileNotFoundError as exc:
        raise UntrustedInputError(str(exc)) from None
    return [_entry(data, f"{path}:{number}") for number, data in lines]


def _entry(data: object, source: str) -> Xfail:
    entry = from_dict(Xfail, data, source)
    if entry.source:
        raise UntrustedInputError(f"{source}: unknown fields ['source']; accepted: "
                                  f"{sorted(_KEYS)}")
    if entry.op not in CHECKS:
        raise UntrustedInputError(f"{source}: op={entry.op!r} is not a check; known: "
                                  f"{', '.join(CHECKS)}")
    if entry.dtype not in (None, *SUPPORTED):
        raise UntrustedInputError(f"{source}: dtype={entry.dtype!r} is not one of {SUPPORTED}")
    return dataclasses.replace(entry, source=source)


def find_xfail(xfails: list[Xfail], backend: str | tuple[str, ...], op: str, dtype: str
               ) -> Xfail | None:
    """The first entry matching ``backend`` (a label, or the label and ``Backend.name``),
    ``op`` and ``dtype``, or None."""
    return next((x for x in xfails if x.matches(backend, op, dtype)), None)


class _Ran(Protocol):
    backend: str
    op: str
    dtype: str


def unmatched(xfails: list[Xfail], ran: Iterable[_Ran]) -> list[Xfail]:
    """The entries of ``xfails`` that match none of the checks that ran (each a
    :class:`~dirac_conformance.runner.Result`, or anything with ``backend``, ``op`` and
    ``dtype``): misspelt or stale entries."""
    done = [((r.backend, getattr(r, "backend_name", "")), r.op, r.dtype) for r in ran]
    return [x for x in xfails if not any(x.matches(*r) for r in done)]
