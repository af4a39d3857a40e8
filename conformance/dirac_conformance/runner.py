"""Running checks under hypothesis: profiles, one check x dtype at a time, and results.

The programmatic API of the suite::

    from dirac_conformance import run_suite, run_check
    report = run_suite("torch")                      # every check x dtype, profile "ci"
    report.ok, report.failures, print(report.table())
    result = run_check("numpy", "conv", "float32", profile="thorough")

Profiles are hypothesis settings profiles, registered here and applied to each property
explicitly, so loading this module never changes the settings of anyone else's tests:

- ``dirac-ci``: 100 examples per check x dtype, derandomized (the same examples from run to
  run of a check while the code stays the same: hypothesis also draws number literals of the
  loaded modules; inside a long pytest session one check was once seen to draw otherwise,
  so a known failure that only some examples show should not be strict), no deadline, no
  example database;
- ``dirac-thorough``: 300 random examples, for nightly and GPU runs;
- ``dirac-meta``: for the mutant meta-suite: stops at the first failure without shrinking.

Every profile first evaluates the check's boundary examples (:mod:`.boundaries`, hypothesis'
explicit phase), then draws its own. Explicit :class:`hypothesis.settings` may replace a
profile everywhere (``settings=``); without ``Phase.explicit`` they skip the boundary examples.
"""

from __future__ import annotations

import math
import numbers
import threading
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis.errors import InvalidArgument

from dirac_core.backend import Backend

from .case import Case
from .checks import CHECKS, Check
from .dtypes import SUPPORTED
from .reproduce import snippet
from .target import Target, load_target
from .tolerance import Mismatch
from .xfails import Xfail, find_xfail, load_xfails, unmatched

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
class Failure:
    """One distinct failure of a check: what differs, by how much, and how to rerun it.

    Attributes
    ----------
    output : str
        The output that differs (``"dw"``, ``"first call: u"``), or ``""`` for a crash.
    error : float
        Its worst error as a share of the tolerance (``inf`` for an exact output that
        differs, a crash, a wrong dtype).
    message : str
        The failing element: got, expected, the difference and the tolerance.
    reproducer : str
        A Python snippet that reruns the minimal failing example.
    """

    output: str
    error: float
    message: str
    reproducer: str


DEADLINE = 60.0
"""Seconds one example (every call it makes) may take before the check fails as a hang."""


POLL = 0.05
"""Seconds between two looks of the watcher at the example in progress."""

MIN_DEADLINE = 2 * POLL
"""The shortest deadline: the watcher looks every :data:`POLL` seconds, so a shorter one would
be honoured late by more than half of itself."""


def deadline_value(deadline: Any) -> float | None:
    """``deadline`` checked: None (no deadline) or a finite number of seconds, at least
    :data:`MIN_DEADLINE`.

    Raises
    ------
    TypeError
        Neither None nor a real number (a bool included).
    ValueError
        Zero, negative, infinite or NaN: every example would fail as a hang, or none could;
        or positive but below :data:`MIN_DEADLINE`.

    Examples
    --------
    >>> deadline_value(30)
    30.0
    """
    if deadline is None:
        return None
    if isinstance(deadline, bool) or not isinstance(deadline, numbers.Real):
        raise TypeError(f"deadline must be None or a number of seconds, got {deadline!r}")
    seconds = float(deadline)
    if not 0 < seconds < math.inf:
        raise ValueError(f"deadline must be a positive finite number of seconds, got "
                         f"{deadline!r}")
    if seconds < MIN_DEADLINE:
        raise ValueError(f"deadline must be at least {MIN_DEADLINE:g} seconds (the watcher "
                         f"looks every {POLL:g} s), got {deadline!r}")
    return seconds


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
        Examples evaluated; for a failure, up to and including the first failing one (the
        examples hypothesis evaluates to shrink it are not counted).
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
    failures : list of Failure
        Every distinct failure hypothesis found, each with its own minimal example and
        reproducer (``message`` and ``reproducer`` are the first one's).
    backend_name : str
        The backend's ``name`` attribute (xfail entries match it as well as the label).
    hung : bool
        An example passed the deadline: the suite stops after this result.
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
    failures: list[Failure] = field(default_factory=list)
    backend_name: str = ""
    hung: bool = False

    @property
    def failed(self) -> bool:
        """Whether this result fails a run: an unexpected failure or an unexpected pass."""
        return self.status in ("fail", "xpass")

    def as_dict(self) -> dict[str, object]:
        """The fields as a JSON-ready dict: ``worst`` and each failure's ``error`` are
        ``None`` where they are not finite (strict JSON has no infinity)."""
        data = asdict(self)
        data["worst"] = _finite_or_none(self.worst)
        for f in data["failures"]:
            f["error"] = _finite_or_none(f["error"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """A result from :meth:`as_dict` (as the pytest plugin passes results around); a
        ``None`` error reads as ``inf``."""
        failures = [Failure(**{**f, "error": _inf_if_none(f["error"])})
                    for f in data.get("failures", [])]
        return cls(**{**data, "worst": _inf_if_none(data["worst"]), "failures": failures})


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _inf_if_none(value: float | None) -> float:
    return math.inf if value is None else value


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
              profile: str = "ci", device: Any = None, deadline: float | None = DEADLINE
              ) -> Result:
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
        A known failure: a failure is then ``"xfail"``, and a pass ``"xpass"`` if strict. An
        expected failure fails the run neither way, so it is not shrunk: the search stops at
        the first failing example, which the result reports as it was drawn.
    profile : str
        ``"ci"``, ``"thorough"`` or ``"meta"``, when ``settings`` is not given.
    device : object, optional
        Device for a target given as a backend object.
    deadline : float or None
        Seconds one example may take (default :data:`DEADLINE`); past it the check fails as a
        hang, with the hanging example's reproducer. The call that hangs cannot be stopped: it
        keeps its thread (a daemon) until it returns or the process ends. None: no deadline.

    Returns
    -------
    Result
        The message of a failure holds the error; ``reproducer`` a snippet rebuilding the
        minimal failing example; ``failures`` every distinct failure.

    Raises
    ------
    ValueError
        An unknown check name or profile; a deadline that is not a positive finite number.
    TypeError
        A deadline that is neither None nor a number.

    Examples
    --------
    >>> run_check("numpy", "ncrelu", "float32", profile="meta").status
    'pass'
    """
    deadline = deadline_value(deadline)
    target = _target(target, device)
    check = as_check(check)
    config = settings if settings is not None else profile_settings(profile)
    if xfail is not None:
        config = _unshrunk(config)
    seen: dict[str, Any] = {"examples": 0, "worst": 0.0, "case": None, "since": None,
                            "first_failure": None}
    known: set[tuple[str, str]] = set()  # failures found in earlier rounds

    def conforms(case: Case) -> None:
        seen["examples"] += 1
        seen["case"], seen["since"] = case, time.monotonic()
        try:
            seen["worst"] = max(seen["worst"], check.run(target, case))
        except Exception as exc:
            if seen["first_failure"] is None:
                seen["first_failure"] = seen["examples"]
            if _kind(exc) in known:
                return  # reported already: look for other failures
            # Distinct outputs are distinct bugs to hypothesis (it tells bugs apart by their
            # exception type), so each gets its own minimal example and reproducer.
            failure = _distinct(exc)
            failure.dirac_case = case  # type: ignore[attr-defined]
            if failure is exc:
                raise
            raise failure from exc
        finally:
            seen["since"] = None

    # One hypothesis identity per check x dtype (the hook hypothesis' own pytest plugin uses
    # for parametrized tests): its own example database entries and, under derandomize, its
    # own fixed example sequence, the same for every backend.
    conforms._hypothesis_internal_add_digest = f"{check.name}/{dtype}".encode()  # type: ignore[attr-defined]
    prop = given(check.cases(dtype, target.dtypes))(conforms)
    # The boundary cases, evaluated first in every run (hypothesis' explicit phase), in order.
    for case in reversed(check.examples(dtype)):
        prop = example(case)(prop)
    prop = config(prop)
    source = xfail.source if xfail is not None else ""
    label = (target.label, check.name, dtype)
    found: list[BaseException] = []
    # Hypothesis stops at its first failures: search on without them (an expected failure:
    # once is enough).
    for _ in range(1 if xfail is not None else _ROUNDS):
        outcome = _watched(prop, seen, deadline)
        if outcome is None or isinstance(outcome, _Hang):
            break
        fresh = [exc for exc in _leaves(outcome) if _kind(exc) not in known]
        if not fresh:
            break
        found += fresh
        known.update(_kind(exc) for exc in fresh)
    if found and not isinstance(outcome, _Hang):
        outcome = None
    if isinstance(outcome, _Hang):
        case = seen["case"]
        message = (f"no result within the deadline of {deadline:g} s (the op hangs, or is far "
                   f"too slow) on {case!r}")
        failure = Failure("", math.inf, message, snippet(check.name, case, target))
        status = "fail" if xfail is None else "xfail"
        return Result(*label, status, seen["first_failure"] or seen["examples"], math.inf,
                      message, failure.reproducer, source, [failure], target.backend.name,
                      hung=True)
    if found:
        failures = [_failure(exc, check, target) for exc in found]
        status = "fail" if xfail is None else "xfail"
        first = failures[0]
        message = first.message if len(failures) == 1 else "\n".join(
            f"[{n}/{len(failures)}] {f.message}" for n, f in enumerate(failures, 1))
        return Result(*label, status, seen["first_failure"], max(f.error for f in failures),
                      message, first.reproducer, source, failures, target.backend.name)
    if xfail is not None and xfail.strict:
        where = f"{xfail.source}: " if xfail.source else ""
        message = (f"XPASS: expected to fail ({xfail.reason}) but conforms; delete the xfail "
                   f"entry {where}{xfail.line()}")
        return Result(*label, "xpass", seen["examples"], seen["worst"], message, "", source,
                      [], target.backend.name)
    return Result(*label, "pass", seen["examples"], seen["worst"], "", "", source, [],
                  target.backend.name)


_ROUNDS = 3
"""Searches per check: each one for failures of kinds not found before (a second output, a
crash besides a mismatch)."""


def _unshrunk(config: settings) -> settings:
    """``config`` without the shrink phase."""
    return settings(config, phases=[p for p in config.phases if p is not Phase.shrink])


def _kind(exc: BaseException) -> tuple[str, str]:
    """What makes failures the same: the exception type, or for a mismatch the outputs."""
    if isinstance(exc, Mismatch):
        return ("Mismatch", exc.output)
    return (type(exc).__name__, "")


class _Hang:
    """The outcome of a property whose current example passed its deadline."""


def _watched(prop: Any, seen: dict[str, Any], deadline: float | None
             ) -> BaseException | _Hang | None:
    """Run ``prop`` in a daemon thread, watching the example in progress: its exception, a
    :class:`_Hang`, or None. Ctrl-C reaches the caller as KeyboardInterrupt at once, even
    while a backend call runs."""
    box: dict[str, BaseException | None] = {"error": None}

    def run() -> None:
        try:
            with warnings.catch_warnings():
                # Overflow to inf in half precision, NaN from non-finite input: checked by
                # value; the warnings are noise.
                warnings.simplefilter("ignore", RuntimeWarning)
                with np.errstate(all="ignore"):
                    prop()
        except BaseException as exc:  # any exception from the backend is a failure
            box["error"] = exc

    worker = threading.Thread(target=run, name="dirac-conformance-check", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL)
        since = seen["since"]
        if deadline is not None and since is not None and time.monotonic() - since > deadline:
            return _Hang()
    return box["error"]


_DISTINCT: dict[tuple[type, str], type] = {}


def _distinct(exc: Exception) -> Exception:
    """``exc`` as an exception type of its own per (kind, output), so that hypothesis keeps a
    separate minimal example for each output that fails."""
    output = getattr(exc, "output", "")
    if not isinstance(exc, Mismatch) or not output:
        return exc
    key = (type(exc), output)
    if key not in _DISTINCT:
        _DISTINCT[key] = type(f"Mismatch[{output}]", (type(exc),), {})
    distinct: Exception = _DISTINCT[key](str(exc), exc.error, output)
    return distinct


def _leaves(exc: BaseException) -> list[BaseException]:
    """The failures in ``exc``: itself, or the members of hypothesis' group of distinct
    failures (nested groups flattened), each once."""
    group = getattr(exc, "exceptions", None)
    if not isinstance(group, tuple):
        return [exc]
    return [leaf for member in group for leaf in _leaves(member)]


def _failure(exc: BaseException, check: Check, target: Target) -> Failure:
    case = getattr(exc, "dirac_case", None)
    repro = snippet(check.name, case, target) if case is not None else ""
    output = getattr(exc, "output", "")
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    return Failure(output, float(getattr(exc, "error", math.inf)), _message(exc), repro)


def as_check(check: Check | str, what: str = "check") -> Check:
    """``check`` itself, or the check of :data:`~dirac_conformance.checks.CHECKS` it names:
    the rule of every door that takes checks one by one (:func:`run_check`, the meta-suite's
    ``checks``).

    Raises
    ------
    ValueError
        A name that is not a check; the message names ``what`` and lists the checks.
    TypeError
        Neither a name nor a :class:`~dirac_conformance.checks.Check`.
    """
    if isinstance(check, Check):
        return check
    if isinstance(check, str) and check in CHECKS:
        return CHECKS[check]
    if isinstance(check, str):
        raise ValueError(f"{what}={check!r} is not a check; known: {', '.join(CHECKS)}")
    raise TypeError(f"{what} takes check names or Check objects, got "
                    f"{type(check).__name__}: {check!r}")


def _message(exc: BaseException) -> str:
    if isinstance(exc, Mismatch):
        return str(exc)
    return "".join(traceback.format_exception_only(exc)).strip()


def run_suite(target: Target | Backend | str, profile: str = "ci",
              ops: Iterable[str] | str | None = None,
              xfails: list[Xfail] | str | Path | None = None, *,
              settings: settings | None = None, dtypes: Iterable[str] | str | None = None,
              device: Any = None, fail_fast: bool = False, deadline: float | None = DEADLINE
              ) -> Report:
    """Every selected check on every selected dtype the target declares, in suite order.

    Parameters
    ----------
    target : Target, Backend or str
        As for :func:`run_check`.
    profile : str
        ``"ci"`` (default) or ``"thorough"``; ignored when ``settings`` is given.
    ops : iterable of str or str, optional
        Check names (default: all of :data:`~dirac_conformance.checks.CHECKS`); a string is
        one name or a comma-separated list (:func:`selection`: blanks around a name are
        ignored; nothing selected, an empty name or one named twice is refused).
    xfails : list of Xfail, str or path, optional
        Known failures, or the path of an xfails file
        (:func:`dirac_conformance.xfails.load_xfails`). An entry's ``backend`` matches the
        target's label or its ``Backend.name``.
    settings : hypothesis.settings, optional
        Explicit hypothesis settings for every check.
    dtypes : iterable of str or str, optional
        A subset of the target's dtypes (a string: one, or a comma-separated list), read as
        ``ops`` is.
    device : object, optional
        Device for a target given as a backend object or spec; a loaded ``Target`` carries
        its own (another one here is refused).
    fail_fast : bool
        Stop after the first result that fails the run.
    deadline : float or None
        Seconds one example may take (:func:`run_check`); after a hang the run stops.

    Returns
    -------
    Report
        ``report.ok`` is true when at least one check ran and none failed.

    Raises
    ------
    ValueError
        An unknown op or profile, a dtype the target does not declare, an empty or repeated
        selection of ops or dtypes, an unreadable xfails file, a deadline that is not a
        positive finite number, a ``device`` beside a ``Target`` loaded for another.
    dirac_conformance.target.Broken
        The backend crashed while loading or reporting whether it is available.
    dirac_conformance.target.Unavailable
        The backend reports that it cannot run here.

    Examples
    --------
    >>> report = run_suite("numpy", ops="dirac_tensor", dtypes="float64")
    >>> report.ok, [(r.op, r.dtype, r.status) for r in report]
    (True, [('dirac_tensor', 'float64', 'pass')])
    """
    started = time.perf_counter()
    deadline = deadline_value(deadline)
    checks = selected_checks(ops)
    known = _xfail_list(xfails)
    target = _target(target, device)
    chosen = selected_dtypes(dtypes, target)
    assert chosen is not None  # given a target, None selects its dtypes
    names = (target.label, target.backend.name)
    results: list[Result] = []
    for check in checks:
        for dtype in chosen:
            xfail = find_xfail(known, names, check.name, dtype)
            results.append(run_check(target, check, dtype, settings, xfail, profile=profile,
                                     deadline=deadline))
            if results[-1].hung or (fail_fast and results[-1].failed):
                return Report(results, [], time.perf_counter() - started)
    return Report(results, unmatched(known, results), time.perf_counter() - started)


def _xfail_list(xfails: list[Xfail] | str | Path | None) -> list[Xfail]:
    if xfails is None:
        return []
    if isinstance(xfails, str | Path):
        return load_xfails(xfails)
    entries = list(xfails)
    wrong = [x for x in entries if not isinstance(x, Xfail)]
    if wrong:
        raise TypeError(f"xfails must be a path or a list of Xfail entries, got "
                        f"{type(wrong[0]).__name__}: {wrong[0]!r}")
    return entries


def selection(value: Iterable[str] | str | None, what: str) -> list[str] | None:
    """The names an op or dtype selection gives, the one rule every door applies: None (no
    selection: all of them), a comma-separated string or an iterable of strings; each name is
    stripped of surrounding blanks.

    Raises
    ------
    ValueError
        A selection of nothing (``""``, ``[]``), an empty name (``"a,,b"``, ``"a,"``) or a
        name given twice; the message names ``what`` (the argument or option).
    TypeError
        Something other than a string or an iterable of strings.

    Examples
    --------
    >>> selection("dirac_tensor, ncrelu", "ops")
    ['dirac_tensor', 'ncrelu']
    """
    if value is None:
        return None
    if isinstance(value, str):
        given: list[Any] = value.split(",")
    elif isinstance(value, Iterable):
        given = list(value)
    else:
        raise TypeError(f"{what} must be a comma-separated str or an iterable of names, got "
                        f"{type(value).__name__}: {value!r}")
    wrong = [v for v in given if not isinstance(v, str)]
    if wrong:
        raise TypeError(f"{what} must be names (str), got {type(wrong[0]).__name__}: "
                        f"{wrong[0]!r}")
    names = [v.strip() for v in given]
    if not names or "" in names:
        raise ValueError(f"{what}={value!r} selects nothing or holds an empty name; give one "
                         f"or more names, comma-separated (or None for all)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{what}={value!r} names {', '.join(map(repr, twice))} more than once")
    return names


def _target(target: Target | Backend | str, device: Any) -> Target:
    if isinstance(target, Target):
        if device is not None and device != target.device:  # as load_target refuses a spec's
            raise ValueError(f"target {target.label!r} is loaded for device "
                             f"{target.device!r} and device={device!r} names another; give the "
                             "device once (load_target(..., device=...))")
        return target
    return load_target(target, device=device)


def selected_dtypes(dtypes: Iterable[str] | str | None, target: Target | None = None,
                    what: str = "dtypes") -> tuple[str, ...] | None:
    """The dtypes a selection names (:func:`selection`), in the order given: each one the
    suite tests and, given a ``target``, one it declares (None selects all of the target's;
    without a target, None stays None).

    Raises
    ------
    ValueError
        A dtype the suite does not test or the target does not declare; an empty or repeated
        selection.
    TypeError
        Something other than names.

    Examples
    --------
    >>> selected_dtypes("float16,float64")
    ('float16', 'float64')
    """
    names = selection(dtypes, what)
    if names is None:
        return None if target is None else target.dtypes
    unknown = [d for d in names if d not in SUPPORTED]
    if unknown:
        raise ValueError(f"{what} {unknown} are not dtypes the suite tests; it knows "
                         f"{SUPPORTED}")
    if target is not None:
        unknown = [d for d in names if d not in target.dtypes]
        if unknown:
            raise ValueError(f"{what} {unknown} are not tested on {target.label}; it has "
                             f"{target.dtypes}")
    return tuple(names)


def selected_checks(ops: Iterable[str] | str | None = None, what: str = "ops") -> list[Check]:
    """The checks named in ``ops`` (a selection, :func:`selection`; all of them when None), in
    suite order.

    Raises
    ------
    ValueError
        A name that is not a check; an empty or repeated selection.
    TypeError
        Something other than names.
    """
    names = selection(ops, what)
    if names is None:
        return list(CHECKS.values())
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"{what}: unknown op(s) {unknown}; known: {', '.join(CHECKS)}")
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
