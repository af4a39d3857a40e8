"""``dirac-conformance``: run the suite against one backend, or the meta-suite.

Usage::

    dirac-conformance numpy
    dirac-conformance torch@cuda --profile thorough --json report.json
    dirac-conformance my_pkg.backend:MyBackend --xfails known.jsonl --ops conv,conv_vjp
    dirac-conformance --mutants

Exit status: 0 all checks passed (known failures excepted); 1 a check failed, a strict xfail
passed, or a mutant survived; 2 bad usage; 3 the backend cannot run here (the reason is
printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from .meta import format_kills, hunt_all, kill_rate
from .runner import PROFILES, format_table, is_failure, run_suite
from .target import Unavailable, load_target
from .xfails import load_xfails

UNAVAILABLE = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dirac-conformance",
        description="Check a dirac_core backend against the float64 reference.",
    )
    parser.add_argument("backend", nargs="?",
                        help="entry-point name or module:attribute, optionally @DEVICE")
    parser.add_argument("--profile", choices=PROFILES, default="ci",
                        help="ci: fast and deterministic (default); thorough: many examples")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--ops", metavar="OP[,OP...]", help="only these checks")
    parser.add_argument("--xfails", metavar="FILE", help="known failures (JSON lines)")
    parser.add_argument("--mutants", action="store_true",
                        help="run the meta-suite against the faulty backends; report kill rate")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.mutants == bool(args.backend):
        parser.error("give either a BACKEND or --mutants")
    started = time.perf_counter()
    try:
        if args.mutants:
            return _mutants(args, started)
        return _suite(args, started)
    except ValueError as exc:  # unknown backend, op or malformed xfails file
        parser.error(str(exc))
    return 2  # parser.error exits; this keeps type checkers content


def _suite(args: argparse.Namespace, started: float) -> int:
    try:
        target = load_target(args.backend)
    except Unavailable as exc:
        print(f"SKIPPED: backend {args.backend!r} cannot run here: {exc}")
        return UNAVAILABLE
    ops = args.ops.split(",") if args.ops else None
    results = run_suite(target, args.profile, ops, load_xfails(args.xfails))
    print(format_table(results))
    for r in results:
        if is_failure(r):
            print(f"\n--- {r.op} / {r.dtype}: {r.status.upper()}\n{r.message}")
    failed = sum(is_failure(r) for r in results)
    elapsed = time.perf_counter() - started
    print(f"\n{len(results) - failed}/{len(results)} checks conform ({elapsed:.1f} s, "
          f"profile {args.profile})")
    if args.json:
        _write_json(args.json, {"backend": target.label, "profile": args.profile,
                                "seconds": elapsed, "results": [r.as_dict() for r in results]})
    return 1 if failed else 0


def _mutants(args: argparse.Namespace, started: float) -> int:
    kills = hunt_all()
    print(format_kills(kills))
    elapsed = time.perf_counter() - started
    print(f"({elapsed:.1f} s)")
    if args.json:
        _write_json(args.json, {"kill_rate": kill_rate(kills), "seconds": elapsed,
                                "mutants": [k.__dict__ for k in kills]})
    return 0 if kill_rate(kills) == 1.0 else 1


def _write_json(path: str, payload: dict[str, object]) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
