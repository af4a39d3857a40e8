"""The meta-suite: run checks against faulty backends ("mutants") and count the kills.

A mutant is killed when any check on any dtype fails against it. The check the mutant names as
``first`` runs first and the search stops at the first failure, so a kill usually costs one
check; a mutant that survives costs the whole suite and is reported as such.

Any backend can be a mutant: a class (instantiated with no arguments) or an object, with an
optional ``first`` (a check name) and ``fault`` (a label for the kind of bug), its docstring
describing the bug. So a backend author proves that their own extra checks bite::

    from dirac_conformance.meta import hunt_all, format_kills
    kills = hunt_all([MyBrokenBackend, MyOtherBrokenBackend], checks=[*CHECKS.values(), mine])
    print(format_kills(kills))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import settings as Settings

from dirac_core.errors import BrokenBackendError
from dirac_core.registry import instantiate

from .checks import CHECKS, Check
from .mutants import MUTANTS
from .runner import as_check, deadline_value, profile_settings, run_check
from .target import Broken, Target, Unavailable, load_target


@dataclass(frozen=True)
class Kill:
    """How one mutant fared.

    Attributes
    ----------
    mutant : str
        Its name.
    bug : str
        Its docstring, on one line.
    killed_by : str
        ``"check/dtype"`` of the first failing check, or ``""`` if it survived.
    message : str
        The failure that killed it.
    fault : str
        Its fault class (``""`` if it declares none).
    """

    mutant: str
    bug: str
    killed_by: str
    message: str = ""
    fault: str = ""


def _order(first: str, checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if c.name == first] + [c for c in checks if c.name != first]


META_DEADLINE = 5.0
"""The meta-suite's default deadline, in seconds, shorter than a run's
(:data:`~dirac_conformance.runner.DEADLINE`): the project's mutants are the NumPy reference with
one bug, whose examples take milliseconds, and one of them hangs on purpose. An example past it
counts as a kill (a hang): give a slower mutant (one that compiles per shape) more."""


def hunt(mutant: Any, profile: str = "meta", *, checks: Iterable[Check | str] | None = None,
         settings: Settings | None = None, deadline: float | None = META_DEADLINE) -> Kill:
    """Run the checks against one faulty backend until one fails.

    Parameters
    ----------
    mutant : Backend class or object
        The faulty backend; its ``first`` attribute (a check name) runs first.
    profile : str
        Hypothesis profile (default ``"meta"``: no shrinking); ignored with ``settings``.
    checks : iterable of Check or str, optional
        The checks to hunt with (default: every check of the suite): names of
        :data:`~dirac_conformance.checks.CHECKS`, or your own :class:`Check` objects.
    settings : hypothesis.settings, optional
        Explicit hypothesis settings.
    deadline : float or None
        Seconds one example may take before the mutant counts as killed by a hang (default
        :data:`META_DEADLINE`, 5; None: no deadline).

    Raises
    ------
    ValueError
        A check name that is not a check; a deadline
        :func:`~dirac_conformance.runner.deadline_value` refuses.
    TypeError
        ``checks`` holds something other than names and checks.

    Examples
    --------
    >>> from dirac_conformance.mutants import FoldWithoutEps
    >>> hunt(FoldWithoutEps).killed_by
    'fold_batchnorm/float64'
    """
    name = getattr(mutant, "__name__", type(mutant).__name__)
    chosen = _checks(checks)
    deadline = deadline_value(deadline)  # before a mutant that fails at loading returns
    config = settings if settings is not None else profile_settings(profile)
    bug = " ".join((getattr(mutant, "__doc__", "") or "").split())
    fault = str(getattr(mutant, "fault", ""))
    try:
        target = load_target(instantiate(mutant, name))
    except (Broken, Unavailable, BrokenBackendError) as exc:  # a crash before any check
        return Kill(name, bug, "load", str(exc), fault)
    target = Target(target.backend, None, name)
    for check in _order(str(getattr(mutant, "first", "")), chosen):
        for dtype in target.dtypes:
            result = run_check(target, check, dtype, config, deadline=deadline)
            if result.status == "fail":
                return Kill(name, bug, f"{check.name}/{dtype}", result.message, fault)
    return Kill(name, bug, "", "", fault)


def _checks(checks: Iterable[Check | str] | None) -> list[Check]:
    if checks is None:
        return list(CHECKS.values())
    if isinstance(checks, str | Check):
        checks = [checks]
    return [as_check(check, "checks") for check in checks]


def hunt_all(mutants: Iterable[Any] = MUTANTS, profile: str = "meta", *,
             checks: Iterable[Check | str] | None = None, settings: Settings | None = None,
             deadline: float | None = META_DEADLINE) -> list[Kill]:
    """:func:`hunt` every mutant (default: the project's own, :data:`~.mutants.MUTANTS`)."""
    chosen = _checks(checks)
    return [hunt(m, profile, checks=chosen, settings=settings, deadline=deadline)
            for m in mutants]


def kill_rate(kills: list[Kill]) -> float:
    """The share of mutants killed, in [0, 1]."""
    return sum(bool(k.killed_by) for k in kills) / len(kills) if kills else 0.0


def format_kills(kills: list[Kill]) -> str:
    """One line per mutant, the kills per fault class, then the kill rate."""
    width = max((len(k.mutant) for k in kills), default=0)
    lines = [
        f"{k.mutant.ljust(width)}  {'KILLED by ' + k.killed_by if k.killed_by else 'SURVIVED'}"
        for k in kills
    ]
    faults = sorted({k.fault for k in kills if k.fault})
    for fault in faults:
        mine = [k for k in kills if k.fault == fault]
        lines.append(f"class {fault}: {sum(bool(k.killed_by) for k in mine)}/{len(mine)} killed")
    killed = sum(bool(k.killed_by) for k in kills)
    lines.append(f"kill rate: {killed}/{len(kills)} = {kill_rate(kills):.0%}")
    return "\n".join(lines)
