"""The meta-suite: run the checks against every faulty backend and count the kills.

A mutant is killed when any check on any dtype fails against it. The check the mutant names as
``first`` runs first and the search stops at the first failure, so a kill usually costs one
check; a mutant that survives costs the whole suite and is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checks import CHECKS, Check
from .mutants import MUTANTS, Mutant
from .runner import profile_settings, run_check
from .target import Target


@dataclass(frozen=True)
class Kill:
    """How one mutant fared: ``killed_by`` is ``"op/dtype"`` or ``""`` if it survived."""

    mutant: str
    bug: str
    killed_by: str
    message: str = ""


def _order(mutant: type[Mutant]) -> list[Check]:
    first = [CHECKS[mutant.first]] if mutant.first in CHECKS else []
    return first + [c for c in CHECKS.values() if c.name != mutant.first]


def hunt(mutant: type[Mutant], profile: str = "meta") -> Kill:
    """Run the checks against one mutant until one fails.

    Examples
    --------
    >>> from dirac_conformance.mutants import FoldWithoutEps
    >>> hunt(FoldWithoutEps).killed_by
    'fold_batchnorm/float64'
    """
    backend = mutant()
    target = Target(backend, None, mutant.__name__)
    config = profile_settings(profile)
    bug = " ".join((mutant.__doc__ or "").split())
    for check in _order(mutant):
        for dtype in target.dtypes:
            result = run_check(target, check, dtype, config)
            if result.status == "fail":
                return Kill(mutant.__name__, bug, f"{check.name}/{dtype}", result.message)
    return Kill(mutant.__name__, bug, "")


def hunt_all(profile: str = "meta") -> list[Kill]:
    """:func:`hunt` every mutant of :data:`dirac_conformance.mutants.MUTANTS`."""
    return [hunt(m, profile) for m in MUTANTS]


def kill_rate(kills: list[Kill]) -> float:
    """The share of mutants killed, in [0, 1]."""
    return sum(bool(k.killed_by) for k in kills) / len(kills) if kills else 0.0


def format_kills(kills: list[Kill]) -> str:
    """One line per mutant, then the kill rate."""
    width = max(len(k.mutant) for k in kills)
    lines = [
        f"{k.mutant.ljust(width)}  {'KILLED by ' + k.killed_by if k.killed_by else 'SURVIVED'}"
        for k in kills
    ]
    killed = sum(bool(k.killed_by) for k in kills)
    lines.append(f"kill rate: {killed}/{len(kills)} = {kill_rate(kills):.0%}")
    return "\n".join(lines)
