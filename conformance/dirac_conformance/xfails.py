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

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from .checks import CHECKS
from .dtypes import SUPPORTED

_KEYS = {"op", "dtype", "backend", "reason", "strict"}


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

    def matches(self, backend: str, op: str, dtype: str) -> bool:
        """Whether this entry covers ``op`` on ``dtype`` of ``backend`` (``NAME@DEVICE``
        also matches an entry for ``NAME``)."""
        return (
            self.op == op
            and self.dtype in (None, dtype)
            and self.backend in (None, backend, backend.partition("@")[0])
        )


def load_xfails(path: str | Path | None) -> list[Xfail]:
    """Parse an xfails file; ``None`` gives no xfails.

    Raises
    ------
    ValueError
        A file that cannot be read; a line that is not a JSON object, has unknown keys, lacks
        ``op`` or ``reason``, or names an unknown op or dtype (the message gives the file and
        line number).
    """
    if path is None:
        return []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"xfails file {str(path)!r} cannot be read: {why}") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            try:
                entries.append(_entry(text, f"{path}:{number}"))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return entries


def _entry(text: str, source: str) -> Xfail:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(data, dict):
        raise ValueError(f"each line must be a JSON object, got {text!r}")
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; accepted: {sorted(_KEYS)}")
    for key in ("op", "reason"):
        if not isinstance(data.get(key), str):
            raise ValueError(f"{key!r} (a string) is required, got {data.get(key)!r}")
    if data["op"] not in CHECKS:
        raise ValueError(f"op={data['op']!r} is not a check; known: {', '.join(CHECKS)}")
    if data.get("dtype") not in (None, *SUPPORTED):
        raise ValueError(f"dtype={data['dtype']!r} is not one of {SUPPORTED}")
    if not isinstance(data.get("strict", True), bool):
        raise ValueError(f"strict must be true or false, got {data['strict']!r}")
    return Xfail(**data, source=source)


def find_xfail(xfails: list[Xfail], backend: str, op: str, dtype: str) -> Xfail | None:
    """The first entry matching ``backend``/``op``/``dtype``, or None."""
    return next((x for x in xfails if x.matches(backend, op, dtype)), None)


class _Ran(Protocol):
    backend: str
    op: str
    dtype: str


def unmatched(xfails: list[Xfail], ran: Iterable[_Ran]) -> list[Xfail]:
    """The entries of ``xfails`` that match none of the checks that ran (each a
    :class:`~dirac_conformance.runner.Result`, or anything with ``backend``, ``op`` and
    ``dtype``): misspelt or stale entries."""
    done = list(ran)
    return [x for x in xfails if not any(x.matches(r.backend, r.op, r.dtype) for r in done)]
