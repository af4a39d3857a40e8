"""``dirac-conformance``: run the suite against one backend, or the meta-suite.

Usage::

    dirac-conformance numpy
    dirac-conformance torch@cuda --profile thorough --json report.json --require-available
    dirac-conformance my_pkg.backend:MyBackend --xfails known.jsonl --ops conv,conv_vjp
    dirac-conformance path/to/my_backend.py[:MyBackend]
    dirac-conformance --mutants [my_pkg.mutants:MUTANTS | path/to/mutants.py] [--ops OP,...]

Exit status: 0 all checks passed (known failures excepted); 1 a check failed or hung past the
deadline, a strict xfail passed, no check ran, a mutant survived, the backend crashed while
loading or answering ``available()``, or (with ``--require-available``) the backend cannot run
here; 2 bad usage (a one-line error: an unknown op or dtype, an empty or repeated selection, a
mistyped device); 3 the backend reports that it cannot run here (the reason is printed); 130
interrupted (Ctrl-C), in one line. ``--json`` is written in one shape for 0, 1 and 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

UNAVAILABLE = 3
_PROG = "dirac-conformance"


class UsageError(Exception):
    """A mistake on the command line or in a file it names: one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Check a dirac_core backend against the float64 reference.",
    )
    parser.add_argument("backend", nargs="?",
                        help="entry-point name, module:attribute or file.py[:attribute], "
                             "optionally @DEVICE")
    parser.add_argument("--profile", choices=("ci", "thorough"), default=None,
                        help="ci: fast and deterministic (default); thorough: many examples "
                             "(with --mutants the default is the meta-suite's own: no "
                             "shrinking)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--ops", metavar="OP[,OP...]", help="only these checks")
    parser.add_argument("--dtypes", metavar="DTYPE[,DTYPE...]",
                        help="only these of the backend's dtypes")
    parser.add_argument("--xfails", metavar="FILE", help="known failures (JSON lines)")
    parser.add_argument("--fail-fast", action="store_true",
                        help="stop at the first check that fails")
    parser.add_argument("--require-available", action="store_true",
                        help="a backend that cannot run here is a failure (exit 1), not 3")
    parser.add_argument("--deadline", type=seconds, default=None, metavar="SECONDS",
                        help="seconds one example may take before its check fails as a hang "
                             "(default 60; with --mutants 5); the run stops there")
    parser.add_argument("--mutants", nargs="?", const="dirac_conformance.mutants:MUTANTS",
                        metavar="SET",
                        help="run the meta-suite against faulty backends and report the kill "
                             "rate; SET: module:ATTR or file.py[:ATTR] holding a sequence of "
                             "them (default: the project's own); takes --ops, --profile, "
                             "--deadline and --json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if bool(args.mutants) == bool(args.backend):
        parser.error("give either a BACKEND or --mutants")
    started = time.perf_counter()
    try:
        if args.json:
            _check_writable(args.json)
        if args.mutants:
            return _mutants(args, started)
        return _suite(args, started)
    except (UsageError, ValueError, TypeError) as exc:  # our one-line errors
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # also inside a backend call: the checks run in a worker thread
        print(f"{_PROG}: interrupted (Ctrl-C) after {time.perf_counter() - started:.1f} s; "
              f"no report", file=sys.stderr)
        return 130


def seconds(text: str) -> float:
    """A ``--deadline`` option's value, checked by :func:`runner.deadline_value` (the rule
    ``run_check`` applies)."""
    from .runner import deadline_value

    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive finite number of seconds, got {text!r}") from None
    try:
        value = deadline_value(number)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("deadline ")) from None
    assert value is not None
    return value


def _suite(args: argparse.Namespace, started: float) -> int:
    from .runner import DEADLINE, run_suite, selected_checks, selected_dtypes
    from .target import Broken, Unavailable, load_target
    from .xfails import load_xfails

    # A bad selection is a usage error before anything loads.
    ops = [c.name for c in selected_checks(args.ops, "--ops")]
    dtypes = selected_dtypes(args.dtypes, what="--dtypes")
    xfails = load_xfails(args.xfails)
    try:
        target = load_target(args.backend)
    except Broken as exc:
        print(f"FAILED: backend {args.backend!r} is broken (a crash is a failure, not a "
              f"skip): {exc}")
        _report_json(args, args.backend, time.perf_counter() - started, broken=str(exc))
        return 1
    except Unavailable as exc:
        _report_json(args, args.backend, time.perf_counter() - started, unavailable=str(exc))
        if args.require_available:
            print(f"FAILED: backend {args.backend!r} cannot run here "
                  f"(--require-available): {exc}")
            return 1
        print(f"SKIPPED: backend {args.backend!r} cannot run here: {exc}")
        return UNAVAILABLE
    if dtypes is not None:  # each one the backend declares, the error naming the option
        selected_dtypes(dtypes, target, "--dtypes")
    deadline = DEADLINE if args.deadline is None else args.deadline
    report = run_suite(target, _profile(args), ops, xfails, dtypes=dtypes,
                       fail_fast=args.fail_fast, deadline=deadline)
    print(report.table())
    for r in report.failures:
        if not r.failures:  # an unexpected pass
            print(f"\n--- {r.op} / {r.dtype}: {r.status.upper()}\n{r.message}")
        for n, f in enumerate(r.failures, 1):
            of = f" ({n} of {len(r.failures)} distinct failures)" if len(r.failures) > 1 else ""
            print(f"\n--- {r.op} / {r.dtype}: {r.status.upper()}{of}\n{f.message}")
            if f.reproducer:
                print(f"\nreproduce with:\n\n{_indent(f.reproducer)}")
    if report.results and report.results[-1].hung:
        print(f"\nstopped: {report.results[-1].op} / {report.results[-1].dtype} passed the "
              f"deadline of {deadline:g} s; the checks after it did not run")
    for x in report.unmatched_xfails:
        print(f"\nnote: xfail entry {x.source or x.line()} matches no check that ran")
    elapsed = time.perf_counter() - started
    failed = len(report.failures)
    print(f"\n{len(report) - failed}/{len(report)} checks conform ({elapsed:.1f} s, "
          f"profile {_profile(args)})")
    _report_json(args, target.label, elapsed, report)
    if not len(report):
        print(f"FAILED: no check ran: {target.label} declares dtypes {target.backend.dtypes}, "
              f"none of which the suite tests")
        return 1
    return 1 if failed else 0


def _report_json(args: argparse.Namespace, label: str, elapsed: float, report: Any = None, *,
                 unavailable: str | None = None, broken: str | None = None) -> None:
    """Write ``--json``, if given, in its one shape, whatever the outcome: a backend that
    cannot run here or is broken has no results and says why."""
    if not args.json:
        return
    from .runner import Report

    summary = (report if report is not None else Report([])).as_dict()
    _write_json(args.json, {"backend": label, "profile": _profile(args), **summary,
                            "seconds": elapsed, "unavailable": unavailable, "broken": broken})


def _profile(args: argparse.Namespace) -> str:
    """The profile of a run against one backend: ``--profile``, by default ``ci``."""
    return str(args.profile or "ci")


_NOT_FOR_MUTANTS = (("dtypes", "--dtypes"), ("xfails", "--xfails"), ("fail_fast", "--fail-fast"),
                    ("require_available", "--require-available"))
"""The options of a run against one backend that the meta-suite has no use for: it hunts on
every dtype a mutant declares, stops at the first failure, and counts a crash as a kill."""


def _mutants(args: argparse.Namespace, started: float) -> int:
    from .meta import META_DEADLINE, format_kills, hunt_all, kill_rate
    from .runner import selected_checks

    given = [flag for name, flag in _NOT_FOR_MUTANTS if getattr(args, name)]
    if given:
        raise UsageError(f"--mutants takes --ops, --profile, --deadline and --json, not "
                         f"{', '.join(given)}")
    checks = selected_checks(args.ops, "--ops")
    mutants = _mutant_set(args.mutants)
    deadline = META_DEADLINE if args.deadline is None else args.deadline
    kills = hunt_all(mutants, args.profile or "meta", checks=checks, deadline=deadline)
    print(format_kills(kills))
    elapsed = time.perf_counter() - started
    print(f"({elapsed:.1f} s)")
    if args.json:
        _write_json(args.json, {"kill_rate": kill_rate(kills), "seconds": elapsed,
                                "mutants": [k.__dict__ for k in kills]})
    return 0 if kill_rate(kills) == 1.0 else 1


def _mutant_set(spec: str) -> list[Any]:
    """The faulty backends a ``module:ATTR`` or ``file.py[:ATTR]`` spec names (default
    attribute ``MUTANTS``): a sequence of backend classes or objects."""
    import importlib

    from .target import import_file, is_file_spec

    where, _, attr = spec.partition(":") if spec.count(":") == 1 else (spec, "", "")
    try:
        module = (import_file(Path(where).resolve()) if is_file_spec(spec)
                  else importlib.import_module(where))
    except Exception as exc:  # the set's own code runs at import and may raise anything
        why = " ".join(str(exc).split()) or "no message"
        raise UsageError(f"--mutants {spec!r} could not be imported: "
                         f"{type(exc).__name__}: {why}") from None
    found = getattr(module, attr or "MUTANTS", None)
    if not isinstance(found, list | tuple) or not found:
        raise UsageError(f"--mutants {spec!r}: {attr or 'MUTANTS'} must be a non-empty "
                         f"sequence of backend classes or objects")
    return list(found)


def _check_writable(path: str) -> None:
    """Refuse a ``--json`` path that cannot be written, before a long run, not after."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--json {path!r} is a directory; give a file name")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--json {path!r}: folder {str(folder)!r} does not exist")
    if not os.access(target if target.exists() else folder, os.W_OK):
        raise UsageError(f"--json {path!r} is not writable")


def _write_json(path: str, payload: dict[str, object]) -> None:
    try:
        with open(path, "w") as f:
            json.dump(payload, f, indent=2, allow_nan=False)
            f.write("\n")
    except OSError as exc:
        raise UsageError(f"--json {path!r} could not be written: {exc.strerror}") from None


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" if line else "" for line in text.splitlines())


if __name__ == "__main__":
    sys.exit(main())
