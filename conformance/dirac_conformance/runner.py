"""Running checks under hypothesis: profiles, one check x dtype at a time, and results.

The programmatic API of the suite::

    from dirac_conformance import run_suite, run_check
    report = run_suite("torch")                      # every check x dtype, profile "ci"
    report.ok, report.failures, print(report.table())
    result = run_check("numpy", "conv", "float32", profile="thorough")

Profiles are hypothesis settings profiles, registered here and applied to each property
explicitly, so loading this module never changes the settings of anyone else's tests:

- ``dirac-ci``: 100 examples per check x dtype, derandomized (the same examples every run,
  so CI is stable and an xfail stays an xfail), no deadline, no example database;
- ``dirac-thorough``: 300 random examples, for nightly and GPU runs;
- ``dirac-meta``: for the mutant meta-suite: stops at the first failure without shrinking.

Explicit :class:`hypothesis.settings` may replace a profile everywhere (``settings=``).
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import InvalidArgument

from dirac_core.backend import Backend

from .case import Case
from .checks import CHECKS, Check
from .reproduce import snippet
from .target import Target, load_target
from .tolerance import Mismatch
from .xfails import Xfail, find_xfail, unmatched

_COMMON: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": False,
}
# No "explain" phase: its report of covered lines means nothing to a backend's author.
_SEARCH = [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
settings.register_profile("dirac-ci", max_examples=100, derandomize=True, database=None,
                          phases=_SEARCH, **_COMMON)
settings.register_profile("dirac-thorough", max_examples=300, phases=_SEARCH, **_COMMON)
settings.register_profile(
    "dirac-meta", max_examples=150, derandomize=True, database=None,
    phases=[Phase.explicit, Phase.generate], **_COMMON,
)

PROFILES = ("ci", "thorough")
"""The profiles meant for users (``meta`` is the mutant meta-suite's)."""


def profile_settings(profile: str) -> settings:
    """The hypothesis settings of a profile name (``ci``, ``thorough`` or ``meta``).

    Raises
    ------
    ValueError
        An unknown profile name.

    Examples
    --------
    >>> profile_settings("ci").max_examples
    100
    """
    try:
        return settings.get_profile(f"dirac-{profile}")
    except InvalidArgument as exc:
        raise ValueError(f"profile={profile!r} is not known; use one of {PROFILES}") from exc


@dataclass
class Result:
    """The outcome of one check on one dtype.

    Attributes
    ----------
    backend, op, dtype : str
        What ran: the target's label, the check's name, the dtype.
    status : str
        ``"pass"``, ``"fail"``, ``"xfail"`` (failed as expected) or ``"xpass"`` (expected to
        fail, passed: the xfail entry must go).
    examples : int
        Examples evaluated.
    worst : float
        For a pass, the largest share of the tolerance any example used (see
        :mod:`dirac_conformance.tolerance`; <= 1); for a failure, the failing example's
        (``inf`` for an exact output that differs, a crash, a wrong dtype).
    message : str
        Why it failed (or, for an xpass, which xfail entry to delete).
    reproducer : str
        For a failure, a Python snippet that rebuilds the minimal failing case.
    xfail : str
        Where the matching xfail entry is (``file:line``), if any.
    """

    backend: str
    op: str
    dtype: str
    status: str
    examples: int
    worst: float
    message: str = ""
    reproducer: str = ""
    xfail: str = ""

    @property
    def failed(self) -> bool:
        """Whether this result fails a run: an unexpected failure or an unexpected pass."""
        return self.status in ("fail", "xpass")

    def as_dict(self) -> dict[str, object]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


@dataclass
class Report:
    """The results of a suite run, in suite order, iterable as :class:`Result` objects.

    Attributes
    ----------
    results : list of Result
    unmatched_xfails : list of Xfail
        Entries of the xfails list that matched no check run (a typo, or a stale entry).
    seconds : float
        Wall time of the run.
    """

    results: list[Result]
    unmatched_xfails: list[Xfail] = field(default_factory=list)
    seconds: float = 0.0

    def __iter__(self) -> Iterator[Result]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> Result:
        return self.results[index]

    @property
    def failures(self) -> list[Result]:
        """The results that fail the run."""
        return [r for r in self.results if r.failed]

    @property
    def ok(self) -> bool:
        """True when at least one check ran and none failed."""
        return bool(self.results) and not self.failures

    def table(self) -> str:
        """The results as :func:`format_table` prints them."""
        return format_table(self.results)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary: every result and the unmatched xfail entries."""
        return {"ok": self.ok, "seconds": self.seconds,
                "results": [r.as_dict() for r in self.results],
                "unmatched_xfails": [x.source or x.op for x in self.unmatched_xfails]}


def run_check(target: Target | Backend | str, check: Check | str, dtype: str,
              settings: settings | None = None, xfail: Xfail | None = None, *,
              profile: str = "ci", device: Any = None) -> Result:
    """Run one check on one dtype; failures are returned, not raised.

    Parameters
    ----------
    target : Target, Backend or str
        What to check: a loaded target, a backend object, or a spec (``"torch"``,
        ``"pkg.mod:Backend"``, ``"path/to/file.py"``, with ``@DEVICE``).
    check : Check or str
        A check of :data:`dirac_conformance.checks.CHECKS` (or a name of one), or your own.
    dtype : str
        One of the target's dtypes.
    settings : hypothesis.settings, optional
        Explicit hypothesis settings; default: those of ``profile``.
    xfail : Xfail, optional
        A known failure: a failure is then ``"xfail"``, and a pass ``"xpass"`` if strict.
    profile : str
        ``"ci"``, ``"thorough"`` or ``"meta"``, when ``settings`` is not given.
    device : object, optional
        Device for a target given as a backend object.

    Returns
    -------
    Result
        The message of a failure holds the error; ``reproducer`` a snippet rebuilding the
        minimal failing example.

    Examples
    --------
    >>> run_check("numpy", "ncrelu", "float32", profile="meta").status
    'pass'
    """
    target = _target(target, device)
    check = CHECKS[check] if isinstance(check, str) else check
    config = settings if settings is not None else profile_settings(profile)
    seen: dict[str, Any] = {"examples": 0, "worst": 0.0, "failing": None, "error": 0.0}

    def conforms(case: Case) -> None:
        seen["examples"] += 1
        try:
            seen["worst"] = max(seen["worst"], check.run(target, case))
        except Exception as exc:
            # hypothesis replays the minimal failing example last: this ends up being it.
            seen["failing"], seen["error"] = case, getattr(exc, "error", float("inf"))
            raise

    # One hypothesis identity per check x dtype (the hook hypothesis' own pytest plugin uses
    # for parametrized tests): its own example database entries and, under derandomize, its
    # own fixed example sequence, the same for every backend.
    conforms._hypothesis_internal_add_digest = f"{check.name}/{dtype}".encode()  # type: ignore[attr-defined]
    prop = config(given(check.strategy(dtype))(conforms))
    source = xfail.source if xfail is not None else ""
    try:
        with warnings.catch_warnings():
            # Overflow to inf in half precision is checked by value; the warning is noise.
            warnings.simplefilter("ignore", RuntimeWarning)
            prop()
    except Exception as exc:  # any exception from the backend is a conformance failure
        status = "fail" if xfail is None else "xfail"
        message = _message(exc)
        failing = seen["failing"]
        repro = snippet(check.name, failing, target) if failing is not None else ""
        return Result(target.label, check.name, dtype, status, seen["examples"], seen["error"],
                      message, repro, source)
    if xfail is not None and xfail.strict:
        where = f"{xfail.source}: " if xfail.source else ""
        message = (f"XPASS: expected to fail ({xfail.reason}) but conforms; delete the xfail "
                   f"entry {where}{xfail.line()}")
        return Result(target.label, check.name, dtype, "xpass", seen["examples"],
                      seen["worst"], message, "", source)
    return Result(target.label, check.name, dtype, "pass", seen["examples"], seen["worst"],
                  "", "", source)


def _message(exc: BaseException) -> str:
    if isinstance(exc, Mismatch):
        return str(exc)
    return "".join(traceback.format_exception_only(exc)).strip()


def run_suite(target: Target | Backend | str, profile: str = "ci",
              ops: Iterable[str] | None = None, xfails: list[Xfail] | None = None, *,
              settings: settings | None = None, dtypes: Iterable[str] | None = None,
              device: Any = None, fail_fast: bool = False) -> Report:
    """Every selected check on every selected dtype the target declares, in suite order.

    Parameters
    ----------
    target : Target, Backend or str
        As for :func:`run_check`.
    profile : str
        ``"ci"`` (default) or ``"thorough"``; ignored when ``settings`` is given.
    ops : iterable of str, optional
        Check names (default: all of :data:`~dirac_conformance.checks.CHECKS`).
    xfails : list of Xfail, optional
        Known failures (:func:`dirac_conformance.xfails.load_xfails`).
    settings : hypothesis.settings, optional
        Explicit hypothesis settings for every check.
    dtypes : iterable of str, optional
        A subset of the target's dtypes.
    device : object, optional
        Device for a target given as a backend object.
    fail_fast : bool
        Stop after the first result that fails the run.

    Returns
    -------
    Report
        ``report.ok`` is true when at least one check ran and none failed.

    Raises
    ------
    ValueError
        An unknown op or profile, or a dtype the target does not declare.

    Examples
    --------
    >>> report = run_suite("numpy", ops=["dirac_tensor"], dtypes=["float64"])
    >>> report.ok, [(r.op, r.dtype, r.status) for r in report]
    (True, [('dirac_tensor', 'float64', 'pass')])
    """
    started = time.perf_counter()
    target = _target(target, device)
    checks = selected_checks(ops)
    chosen = _dtypes(target, dtypes)
    known = xfails or []
    results: list[Result] = []
    for check in checks:
        for dtype in chosen:
            xfail = find_xfail(known, target.label, check.name, dtype)
            results.append(run_check(target, check, dtype, settings, xfail, profile=profile))
            if fail_fast and results[-1].failed:
                return Report(results, [], time.perf_counter() - started)
    return Report(results, unmatched(known, results), time.perf_counter() - started)


def _target(target: Target | Backend | str, device: Any) -> Target:
    if isinstance(target, Target):
        return target
    return load_target(target, device=device)


def _dtypes(target: Target, dtypes: Iterable[str] | None) -> tuple[str, ...]:
    if dtypes is None:
        return target.dtypes
    chosen = tuple(dtypes)
    unknown = [d for d in chosen if d not in target.dtypes]
    if unknown:
        raise ValueError(f"dtypes {unknown} are not tested on {target.label}; it has "
                         f"{target.dtypes}")
    return chosen


def selected_checks(ops: Iterable[str] | None = None) -> list[Check]:
    """The checks named in ``ops`` (all of them when None), in suite order.

    Raises
    ------
    ValueError
        A name that is not a check.
    """
    if ops is None:
        return list(CHECKS.values())
    names = list(ops)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; known: {', '.join(CHECKS)}")
    return [c for c in CHECKS.values() if c.name in names]


def is_failure(result: Result) -> bool:
    """Whether a result should fail a run: an unexpected failure or an unexpected pass."""
    return result.failed


def format_table(results: Iterable[Result]) -> str:
    """A plain-text table: op x dtype, status, examples run, worst share of the tolerance
    (for a failure: the failing example's)."""
    header = ("backend", "op", "dtype", "status", "examples", "err/tol")
    rows = [
        (r.backend, r.op, r.dtype, r.status.upper(), str(r.examples), f"{r.worst:.2e}")
        for r in results
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
