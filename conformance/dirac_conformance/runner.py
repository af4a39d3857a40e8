"""Running checks under hypothesis: profiles, one check x dtype at a time, and results.

Profiles are hypothesis settings profiles, registered here and applied to each property
explicitly, so loading this module never changes the settings of anyone else's tests:

- ``dirac-ci``: 100 examples per check x dtype, derandomized (the same examples every run,
  so CI is stable and an xfail stays an xfail), no deadline, no example database;
- ``dirac-thorough``: 300 random examples, for nightly and GPU runs;
- ``dirac-meta``: for the mutant meta-suite: stops at the first failure without shrinking.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import InvalidArgument

from .checks import CHECKS, Check
from .target import Target
from .xfails import Xfail, find_xfail

_COMMON = {
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


def profile_settings(profile: str) -> settings:
    """The hypothesis settings of a profile name (``ci``, ``thorough`` or ``meta``).

    Raises
    ------
    ValueError
        An unknown profile name.
    """
    try:
        return settings.get_profile(f"dirac-{profile}")
    except InvalidArgument as exc:
        raise ValueError(f"profile={profile!r} is not known; use one of {PROFILES}") from exc


@dataclass
class Result:
    """The outcome of one check on one dtype.

    ``status`` is ``"pass"``, ``"fail"``, ``"xfail"`` (failed as expected) or ``"xpass"``
    (expected to fail but passed). ``worst`` is the largest scaled error seen over the
    examples that compared (see :mod:`dirac_conformance.tolerance`).
    """

    backend: str
    op: str
    dtype: str
    status: str
    examples: int
    worst: float
    message: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_check(target: Target, check: Check, dtype: str, config: settings,
              xfail: Xfail | None = None) -> Result:
    """Run one check on one dtype under ``config``; failures are returned, not raised.

    The message of a failure holds hypothesis' minimal falsifying example and the error.
    With an ``xfail`` a failure is ``"xfail"``, and a pass is ``"xpass"`` if it is strict.
    """
    seen = {"examples": 0, "worst": 0.0}

    def conforms(case: object) -> None:
        seen["examples"] += 1
        seen["worst"] = max(seen["worst"], check.run(target, case))

    # One hypothesis identity per check x dtype (the hook hypothesis' own pytest plugin uses
    # for parametrized tests): its own example database entries and, under derandomize, its
    # own fixed example sequence, the same for every backend.
    conforms._hypothesis_internal_add_digest = f"{check.name}/{dtype}".encode()  # type: ignore[attr-defined]
    prop = config(given(check.strategy(dtype))(conforms))

    try:
        with warnings.catch_warnings():
            # Overflow to inf in half precision is checked by value; the warning is noise.
            warnings.simplefilter("ignore", RuntimeWarning)
            prop()
    except Exception as exc:  # any exception from the backend is a conformance failure
        status = "fail" if xfail is None else "xfail"
        message = "".join(traceback.format_exception_only(exc)).strip()
        return Result(target.label, check.name, dtype, status, seen["examples"], seen["worst"],
                      message)
    status = "xpass" if xfail is not None and xfail.strict else "pass"
    return Result(target.label, check.name, dtype, status, seen["examples"], seen["worst"])


def run_suite(target: Target, profile: str = "ci", ops: Iterable[str] | None = None,
              xfails: list[Xfail] | None = None) -> list[Result]:
    """Every selected check on every dtype the target declares, in suite order."""
    config = profile_settings(profile)
    return [
        run_check(target, check, dtype, config,
                  find_xfail(xfails or [], target.label, check.name, dtype))
        for check in selected_checks(ops)
        for dtype in target.dtypes
    ]


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
    return result.status in ("fail", "xpass")


def format_table(results: list[Result]) -> str:
    """A plain-text table: op x dtype, status, examples run, worst relative error."""
    header = ("backend", "op", "dtype", "status", "examples", "worst rel err")
    rows = [
        (r.backend, r.op, r.dtype, r.status.upper(), str(r.examples), f"{r.worst:.2e}")
        for r in results
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
