"""pytest plugin: ``pytest --pyargs dirac_conformance --dirac-backend NAME``.

Options (all inert unless ``--dirac-backend`` is given, so the plugin, auto-loaded in every
pytest run of an environment that has it installed, otherwise adds nothing):

``--dirac-backend NAME[@DEVICE]``
    repeatable; an entry-point name of the ``dirac_core.backends`` group or
    ``module:attribute``. A backend that cannot run here (no GPU, library missing) yields one
    skipped test giving the reason; a mistyped device (``torch@gpu``, ``numpy@``; the rule is
    :mod:`dirac_conformance.target`'s) is a usage error.
``--dirac-profile {ci,thorough}``
    hypothesis profile (default ``ci``).
``--dirac-xfails FILE``
    known failures, JSON lines (see :mod:`dirac_conformance.xfails`).
``--dirac-ops OP[,OP...]``
    only these checks.
``--dirac-dtypes DTYPE[,DTYPE...]``
    only these of each backend's dtypes (each backend must declare them). Both lists are read
    as the CLI's ``--ops`` and ``--dtypes`` and ``run_suite``'s ``ops`` and ``dtypes`` are
    (:func:`dirac_conformance.runner.selection`).
``--dirac-require-available``
    a backend that cannot run here is a failing test, not a skip (so a CI run that tested
    nothing is not green). A backend that *crashes* while loading (its module or constructor
    raises) or answering ``available()`` is a failing test with or without this flag.
``--dirac-deadline SECONDS``
    seconds one example may take before its check fails as a hang (default 60).

Every mistake in these options (an unknown op or dtype, a dtype a backend does not declare, a
mistyped device, an unreadable xfails file, a backend that yields no test) is a usage error
at startup, in one line, before anything is collected, as the CLI refuses it before any check
runs.

Each check x dtype x backend is one test (works with pytest-xdist); the terminal summary ends
with the table of the worst share of the tolerance per check (a failure shows its failing
error) and lists xfail entries that matched no test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from .cli import seconds

# Only pytest and the standard library (the CLI's option parser) at import time: the plugin
# loads in every pytest run of this environment, and the suite (hypothesis, dirac_core,
# backends) is imported only once it is asked for.

_PROPERTY = "dirac_conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dirac-conformance", "dirac_conformance backend conformance suite")
    group.addoption("--dirac-backend", action="append", default=[], dest="dirac_backends",
                    metavar="NAME[@DEVICE]",
                    help="backend to check (repeatable): entry-point name or module:attribute")
    group.addoption("--dirac-profile", choices=("ci", "thorough"), default="ci",
                    help="hypothesis profile: ci (default) or thorough")
    group.addoption("--dirac-xfails", metavar="FILE", default=None,
                    help="known failures, one JSON object per line")
    group.addoption("--dirac-ops", metavar="OP[,OP...]", default=None,
                    help="only run these checks")
    group.addoption("--dirac-dtypes", metavar="DTYPE[,DTYPE...]", default=None,
                    help="only these of each backend's dtypes")
    group.addoption("--dirac-require-available", action="store_true", default=False,
                    help="fail, instead of skipping, for a backend that cannot run here")
    group.addoption("--dirac-deadline", type=seconds, default=None, metavar="SECONDS",
                    help="seconds one example may take before its check fails as a hang "
                         "(default 60)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("dirac_backends"):
        # Every usage error (an op, a dtype, a device, the xfails file) stops the run here, in
        # one line, before anything is collected: as the CLI stops before any check runs.
        _plan(config)
        config.pluginmanager.register(_Summary(), "dirac-conformance-summary")


@dataclass(frozen=True)
class Job:
    """One test: a backend spec, a check and a dtype (and its xfail entry, if any)."""

    spec: str
    op: str
    dtype: str
    unavailable: str = ""
    xfail: Any = None

    def __str__(self) -> str:
        return f"{self.spec}-{self.op}-{self.dtype}"


@dataclass(frozen=True)
class _Plan:
    """What the options select, read once by the rules the CLI and ``run_suite`` apply
    (:mod:`dirac_conformance.runner`): the checks, the xfail entries, and per
    ``--dirac-backend`` its target and dtypes, or why it cannot run (``Broken`` or
    ``Unavailable``: a failing or skipped test, not a usage error)."""

    checks: list[Any]
    xfails: list[Any]
    backends: list[tuple[str, Any]]


_PLAN = pytest.StashKey[_Plan]()


def _plan(config: pytest.Config) -> _Plan:
    """The session's :class:`_Plan`; a mistake in the options is a ``pytest.UsageError``."""
    if _PLAN not in config.stash:
        try:
            config.stash[_PLAN] = _read_plan(config)
        except (ValueError, TypeError, OSError) as exc:
            raise pytest.UsageError(f"dirac_conformance: {exc}") from exc
    return config.stash[_PLAN]


def _read_plan(config: pytest.Config) -> _Plan:
    from .runner import selected_checks, selected_dtypes
    from .target import Broken, Unavailable
    from .xfails import load_xfails

    checks = selected_checks(config.getoption("dirac_ops"), "--dirac-ops")
    dtypes = config.getoption("dirac_dtypes")
    selected_dtypes(dtypes, what="--dirac-dtypes")  # the names, before any backend loads
    xfails = load_xfails(config.getoption("dirac_xfails"))
    backends: list[tuple[str, Any]] = []
    for spec in config.getoption("dirac_backends"):
        try:
            target = _target(spec)
        except (Broken, Unavailable) as exc:
            backends.append((spec, exc))
            continue
        chosen = selected_dtypes(dtypes, target, "--dirac-dtypes")
        if not chosen:
            raise ValueError(f"{spec} yields no test: it declares dtypes "
                             f"{target.backend.dtypes}, none of which the suite tests")
        backends.append((spec, (target, chosen)))
    return _Plan(checks, xfails, backends)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dirac_job" not in metafunc.fixturenames:
        return
    config = metafunc.config
    params = []
    if config.getoption("dirac_backends"):
        plan = _plan(config)
        params = [p for spec, loaded in plan.backends
                  for p in _params(config, plan, spec, loaded)]
    if not params:
        params = [pytest.param(None, id="no-backend",
                               marks=pytest.mark.skip(reason="no --dirac-backend given"))]
    metafunc.parametrize("dirac_job", params)


def _params(config: pytest.Config, plan: _Plan, spec: str, loaded: Any) -> list[Any]:
    from .target import Broken
    from .xfails import find_xfail

    if isinstance(loaded, Broken):
        job = Job(spec, "broken", "", f"{spec} is broken (a crash is a failure, not a skip): "
                  f"{loaded}")
        return [pytest.param(job, id=f"{spec}-broken")]
    if isinstance(loaded, Exception):  # Unavailable
        if config.getoption("dirac_require_available"):
            job = Job(spec, "unavailable", "", f"{spec} cannot run here "
                      f"(--dirac-require-available): {loaded}")
            return [pytest.param(job, id=f"{spec}-unavailable")]
        skip = pytest.mark.skip(reason=str(loaded))
        return [pytest.param(None, id=f"{spec}-unavailable", marks=skip)]
    target, dtypes = loaded
    params = []
    for check in plan.checks:
        for dtype in dtypes:
            known = find_xfail(plan.xfails, (target.label, target.backend.name), check.name,
                               dtype)
            job = Job(spec, check.name, dtype, xfail=known)
            marks = []
            if known:
                where = f" ({known.source}: delete the entry once this passes)"
                reason = known.reason + (where if known.source else "")
                marks = [pytest.mark.xfail(reason=reason, strict=known.strict)]
            params.append(pytest.param(job, id=str(job), marks=marks))
    return params


def _unmatched(config: pytest.Config) -> list[Any]:
    """The xfail entries that match no job of this session (from the plan, so it works on an
    xdist controller too, which collects nothing)."""
    from .xfails import unmatched

    plan = _plan(config)
    ran = [_Ran(target.label, check.name, dtype, target.backend.name)
           for _, loaded in plan.backends if isinstance(loaded, tuple)
           for target, dtypes in [loaded] for check in plan.checks for dtype in dtypes]
    return unmatched(plan.xfails, ran)


@dataclass
class _Ran:
    backend: str
    op: str
    dtype: str
    backend_name: str


@cache
def _target(spec: str) -> Any:
    from .target import load_target

    return load_target(spec)


def run_job(job: Job, config: pytest.Config, record_property: Any) -> None:
    """Run one job; record its result for the summary table and fail the test on failure."""
    from .checks import CHECKS
    from .runner import DEADLINE, profile_settings, run_check

    if job.unavailable:
        pytest.fail(job.unavailable, pytrace=False)
    settings = profile_settings(config.getoption("dirac_profile"))
    deadline = config.getoption("dirac_deadline")
    deadline = DEADLINE if deadline is None else deadline
    # The xfail entry too: an expected failure is not shrunk (pytest's xfail mark still judges
    # the outcome, strict or not).
    result = run_check(_target(job.spec), CHECKS[job.op], job.dtype, settings, job.xfail,
                       deadline=deadline)
    record_property(_PROPERTY, json.dumps(result.as_dict()))
    if result.status in ("fail", "xfail"):
        parts = []
        for n, f in enumerate(result.failures, 1):
            head = f"[{n} of {len(result.failures)}] " if len(result.failures) > 1 else ""
            repro = f"\n\nreproduce with:\n\n{f.reproducer}" if f.reproducer else ""
            parts.append(f"{head}{f.message}{repro}")
        pytest.fail("\n\n".join(parts) or result.message, pytrace=False)


class _Summary:
    """Collects results (also from xdist workers) and prints the table at the end."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        from .runner import Result

        for key, value in report.user_properties:
            if key == _PROPERTY:
                self.results.append(Result.from_dict(json.loads(str(value))))

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        for x in _unmatched(config):
            terminalreporter.write_line(
                f"dirac_conformance: xfail entry {x.source or x.line()} matches no test")
        if not self.results:
            return
        from .dtypes import SUPPORTED
        from .runner import format_table

        terminalreporter.section("dirac_conformance: worst error / tolerance per op x dtype")
        order = {name: i for i, name in enumerate((*_check_names(), *SUPPORTED))}
        rows = sorted(self.results, key=lambda r: (r.backend, order[r.op], order[r.dtype]))
        terminalreporter.write_line(format_table(rows))


def _check_names() -> list[str]:
    from .checks import CHECKS

    return list(CHECKS)
