"""The ``diracnets`` command: ``train``, ``experiment depth``, ``demo``, ``models`` and ``plot``.

Run ``diracnets COMMAND --help`` for the options; ``docs/training.md`` has the full guide.
Exit status: 0 done, 1 the run diverged (or another failure), 2 a usage mistake (a bad
option, unreadable data or checkpoint, a run folder that may not be used, a full disk, a missing
dependency), 130 stopped by Ctrl-C/SIGTERM after saving a checkpoint. Errors are one line on
stderr, and so is the warning that a run was saved by an earlier release.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FAILED, USAGE, INTERRUPTED = 1, 2, 130
MISSING_DEPENDENCY = USAGE
# import name -> distribution: what the command needs beyond NumPy (the `train` extra)
REQUIRED = {"torch": "torch", "safetensors": "safetensors", "tqdm": "tqdm",
            "matplotlib": "matplotlib", "sklearn": "scikit-learn"}


def _train_options(parser: argparse.ArgumentParser) -> None:
    """Every :class:`TrainConfig` field as an option whose default (``None``) means "not given"."""
    from dirac_core import nets
    from dirac_torch.registry import families

    from .config import PRESETS
    from .datasets import DATASETS
    from .recipes import RECIPES

    add = parser.add_argument
    flag = argparse.BooleanOptionalAction
    add("--preset", choices=sorted(PRESETS),
        help="v1: the paper's families (--arch cifar or imagenet); v2: the authors' v2 "
             "(v2_cifar, v2_imagenet with --arch imagenet); default: none, --arch as given "
             "(default cifar, the paper's network)")
    add("--recipe", choices=list(RECIPES),
        help="ours (default), or the authors' train.py item by item: authors-v1-cifar, "
             "authors-v2-cifar, authors-v1-imagenet, authors-v2-imagenet (sets their numbers, "
             "which other options may change, and their procedure; docs/training.md)")
    add("--data", choices=DATASETS, help="dataset (default: digits, built in, no download)")
    add("--data-dir", help="CIFAR folder or .tar.gz (binary or python version); class folders")
    add("--model", help="a name from `diracnets models` (sets --arch, --depth, --width and "
        "--parameterization)")
    add("--arch", choices=sorted(families()),
        help="model family (default cifar; `diracnets models` describes them)")
    add("--depth", type=int, help="layers: 6n+4 for cifar (default 34), 18 or 34 for imagenet")
    add("--width", type=float, help="width multiplier (default 1; fractions like 0.75 too)")
    add("--activation", choices=nets.ACTIVATIONS, help="default: the family's")
    add("--parameterization", choices=nets.PARAMETERIZATIONS,
        help="dirac (default), plain (the paper's control) or resnet (eq. 14)")
    add("--per-channel", action=flag, default=None,
        help="one alpha/beta per output channel (default: the family's)")
    add("--image-size", type=int, help="class-folder crop size (default 224)")
    add("--epochs", type=int, help="default 200")
    add("--batch-size", type=int, help="global batch size, split over ranks (default 128)")
    add("--lr", type=float, help="default 0.1")
    add("--momentum", type=float, help="default 0.9")
    add("--nesterov", action=flag, default=None)
    add("--weight-decay", type=float, help="default 5e-4")
    add("--decay-scales", action=flag, default=None,
        help="weight decay on alpha and beta too (default on, as in the paper)")
    add("--milestones", type=int, nargs="+",
        help="epochs at which lr *= lr-gamma (default 30/60/80 %% of epochs)")
    add("--lr-gamma", type=float, help="default 0.2")
    add("--alpha-init", type=float, help="initial alpha (default: the family's; v1 5, v2 1)")
    add("--beta-init", type=float, help="initial beta (default: the family's; v1 1e-3, v2 0.1)")
    add("--init-std", type=float,
        help="W ~ N(0, init-std^2) for the Dirac convs (default: the family's; v1 0.1 as in "
             "the authors' code, v2 Kaiming-normal; the paper's text: 1)")
    add("--precise-bn", action=flag, default=None,
        help="recompute the batch-norm statistics for the current weights before each "
             "evaluation (one pass over the training batches; default off)")
    add("--sync-bn", action=flag, default=None,
        help="under torchrun, batch norm normalises over the global batch (all ranks), so N "
             "ranks train exactly as one process; default off: each rank's own examples")
    add("--seed", type=int, help="default 0")
    add("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    add("--amp", action=flag, default=None, help="float16 autocast on CUDA (default on)")
    add("--workers", type=int, help="data-loading workers for class folders (default 4)")
    add("--train-limit", type=int, help="use only the first N training examples")
    add("--out", help="run directory (default runs/<data>-diracnet<depth>-<width>-"
                      "<parameterization>[-<arch> unless cifar], e.g. "
                      "runs/cifar10-diracnet34-1-dirac-v2_cifar)")
    add("--onnx", action=flag, default=None, help="export the folded model to ONNX at the end")
    add("--progress", action=flag, default=None,
        help="tqdm progress bars, on a terminal only (default on); one line per epoch always")
    add("--overwrite", action="store_true",
        help="start afresh in --out even if it holds an earlier run (the files that run "
             "wrote are removed, nothing else)")


def _given(args: argparse.Namespace, skip: Sequence[str] = ()) -> dict[str, Any]:
    from .config import TrainConfig

    fields = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items()
              if k in fields and k not in skip and v is not None}
    if getattr(args, "model", None):
        values.update(_model_fields(args.model, values))
    if "milestones" in values:
        values["milestones"] = tuple(values["milestones"])
    return values


def _model_fields(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The config fields a registry model name sets; a conflicting option is an error."""
    from dirac_core.catalog import KINDS, parse_name

    kind, depth, width, family = parse_name(name)
    fields: dict[str, Any] = {"arch": family, "depth": depth, "width": width,
                              "parameterization": KINDS[kind]}
    clash = sorted(k for k in fields if k in given and given[k] != fields[k])
    if clash:
        raise ValueError(f"--model {name} sets {', '.join(f'{k}={fields[k]!r}' for k in clash)}"
                         f"; drop --{' --'.join(clash)}")
    return fields


def cmd_models(args: argparse.Namespace) -> int:
    from dirac_core.catalog import FAMILIES, create_spec, listed_networks
    from dirac_core.nets import count_parameters

    rows = listed_networks(args.pattern)
    width = max((len(name) for name, _, _ in rows), default=5)
    print(f"{'model':<{width}}  {'network':<34} {'code':<4} {'kind':<8} {'paper':<26} "
          f"{'parameters':>12} {'published':>9}")
    for name, family, row in rows:
        spec = create_spec(name)
        kind = "plain" if row.kind == "plain" else "dirac"
        published = row.published + ("*" if row.published_in else "") or "-"
        print(f"{name:<{width}}  {spec.name:<34} {family.version:<4} {kind:<8} "
              f"{row.table or '-':<26} {count_parameters(spec):>12,} {published:>9}")
    elsewhere = sorted({row.published_in for _, _, row in rows if row.published_in})
    print("\ncode: the authors' code generation (v1 the paper's, v2 their later master); paper: "
          "the table of arXiv:1706.00388 a row reproduces; published: its count in that table"
          + (f", or (marked *) in {'; '.join(elsewhere)}" if elsewhere else "") + ".")
    print("\nfamilies (any depth and width: {kind}{depth}[_{width}]_{family}, kind diracnet or "
          "plain):")
    for name, family in FAMILIES.items():
        print(f"  {name:<17} {family.summary}\n  {'':<17} reproduces {family.source}")
    return 0


def default_run_dir(config: Any) -> str:
    """``train``'s folder when ``--out`` is not given: data, depth, width, parameterization
    and the family (``--arch``) unless it is the default one, so that two families' runs of
    one size do not share a folder.

    >>> from diracnets.config import TrainConfig
    >>> default_run_dir(TrainConfig(data="digits", arch="v2_cifar"))
    'runs/digits-diracnet34-1-dirac-v2_cifar'
    """
    from .config import TrainConfig

    family = "" if config.arch == TrainConfig.arch else f"-{config.arch}"
    return (f"runs/{config.data}-diracnet{config.depth}-{config.width:g}-"
            f"{config.parameterization}{family}")


def cmd_train(args: argparse.Namespace) -> int:
    from .config import preset_config
    from .run import format_summary, run_training

    overrides = _given(args)
    if args.resume:
        for option, given in (("--preset", args.preset is not None),
                              ("--overwrite", args.overwrite)):
            if given:
                raise ValueError(f"{option} cannot be used with --resume: a resumed run keeps "
                                 "its checkpoint's settings and folder")
        summary = run_training(resume=args.resume, overrides=overrides)
    else:
        if args.preset is not None and args.model:
            raise ValueError("--preset cannot be used with --model: the model name says which "
                             "family it is")
        config = preset_config(args.preset, **overrides)
        if "out" not in overrides:
            config.out = default_run_dir(config)
        summary = run_training(config, overwrite=args.overwrite)
    if summary.get("fold"):
        print(format_summary(summary))
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiment import depth_experiment

    settings = _given(args, skip=("depth", "out"))
    rows = depth_experiment(tuple(args.depths), out=args.out, **settings)
    from .experiment import markdown_table

    print(markdown_table(rows))
    print(f"\nwritten: {args.out}/results.md, results.json, depth.png")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, epochs=args.epochs, depth=args.depth, width=args.width,
             onnx=args.onnx, progress=args.progress, overwrite=args.overwrite)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import replot
    from .rundir import RunFolder

    with RunFolder.existing(args.folder, "FOLDER"):  # plots go only into a run's own folder
        written = replot(args.folder)
    print("written:", ", ".join(str(p) for p in written))
    return 0


# a quick look at the experiment before the full grid (docs/training.md shows it too)
SMALL_DEPTH_RUN = ("diracnets experiment depth --depths 10 28 --epochs 2 --train-limit 512 "
                   "--out runs/depth-small")
_DEPTH_OPTIONS = (
    ("--epochs", int, "epochs per cell"), ("--batch-size", int, "batch size"),
    ("--lr", float, "learning rate"), ("--seed", int, "seed of every cell"),
    ("--train-limit", int, "use only the first N training examples"),
    ("--width", float, "width multiplier"),
    ("--init-std", float, "std of the Dirac convs' initial W"),
)


def _depth_default(field: str) -> str:
    """The value the depth experiment uses for ``field`` when it is not given."""
    from dirac_core.catalog import FAMILIES

    from .config import TrainConfig
    from .experiment import DEFAULTS

    value = DEFAULTS.get(field, TrainConfig.__dataclass_fields__[field].default)
    if value is None and field == "init_std":  # None: the family's
        value = FAMILIES[TrainConfig.arch].init.init_std
    if isinstance(value, bool):
        return "on" if value else "off"
    return "all" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diracnets", description="Train DiracNets, run the depth experiment or the demo.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a DiracNet (paper defaults)")
    _train_options(train)
    train.add_argument("--resume", metavar="RUN_DIR_OR_CHECKPOINT",
                       help="continue a run in its own folder (that folder's last.pt, or a "
                            "checkpoint file in it) with its settings; only epochs, milestones, "
                            "progress, onnx, workers, device, data_dir, amp may change")
    train.set_defaults(func=cmd_train)

    experiment = commands.add_parser("experiment", help="experiments from the paper")
    kinds = experiment.add_subparsers(dest="experiment", required=True)
    depth = kinds.add_parser(
        "depth", help="plain vs Dirac at growing depth, on the digits",
        description="Plain vs Dirac networks at growing depth on scikit-learn's 8x8 digits. "
                    "Rerun the same command to continue a stopped experiment: finished cells "
                    "are reused, an interrupted one resumes.",
        epilog=f"a small run first: {SMALL_DEPTH_RUN}")
    from .experiment import DEFAULT_DEPTHS

    depth.add_argument("--depths", type=int, nargs="+", default=list(DEFAULT_DEPTHS),
                       help=f"6n+4 depths (default {' '.join(map(str, DEFAULT_DEPTHS))})")
    depth.add_argument("--out", default="runs/depth", help="default runs/depth")
    for option, kind, what in _DEPTH_OPTIONS:
        field = option.removeprefix("--").replace("-", "_")
        depth.add_argument(option, type=kind, help=f"{what} (default {_depth_default(field)})")
    depth.add_argument("--precise-bn", action=argparse.BooleanOptionalAction, default=None,
                       help="recompute batch-norm statistics before each evaluation "
                            f"(default {_depth_default('precise_bn')})")
    depth.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bars on a terminal (default on)")
    depth.set_defaults(func=cmd_experiment)

    demo = commands.add_parser("demo", help="train, fold, verify and export a small DiracNet")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--depth", type=int, default=None)
    demo.add_argument("--width", type=float, default=None)
    demo.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True)
    demo.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    demo.add_argument("--overwrite", action="store_true",
                      help="replace an earlier run in --out (without it that is refused)")
    demo.set_defaults(func=cmd_demo)

    models = commands.add_parser("models", help="list the registered models and families")
    models.add_argument("pattern", nargs="?", default="*",
                        help="shell-style filter, e.g. '*imagenet' (default: all)")
    models.set_defaults(func=cmd_models)

    plot = commands.add_parser(
        "plot", help="redraw the plots of a run folder (metrics.jsonl) or of a depth "
                     "experiment folder (results.json)")
    plot.add_argument("folder")
    plot.set_defaults(func=cmd_plot)
    return parser


def _disk_full(exc: OSError) -> str:
    """What to say when a write failed for lack of space: the file, and how to go on."""
    written = exc.filename or "a file"
    last = Path(str(exc.filename)).parent / "last.pt" if exc.filename else None
    then = (f"continue with: diracnets train --resume {last}" if last and last.is_file()
            else "start the run again")
    return (f"no space left on device while writing {written}; the files written before are "
            f"intact: free some space, then {then}")


def _stopped(command: str, stop: Any) -> str:
    """What to say when Ctrl-C stopped a run: ``train`` resumes with ``--resume``; the demo and
    the experiment continue their own runs when the same command is run again."""
    if command == "train":
        return str(stop)
    return (f"stopped at epoch {stop.epoch + 1}, batch {stop.batch}; a checkpoint is saved: "
            f"rerun the same command to continue where it stopped")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diracnets`` console script."""
    missing = missing_dependencies()
    if missing:
        print(f"diracnets: needs {', '.join(missing)}, not installed in {sys.executable}; "
              f"install with: pip install {' '.join(missing)}", file=sys.stderr)
        return MISSING_DEPENDENCY
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line(warnings.showwarning)
        return _run(args)


def _warning_line(show: Any) -> Any:
    """``warnings.showwarning`` that writes an earlier release's run warning as one line (it
    is meant for the user, not a pointer into the code); ``show`` writes any other."""

    def write(message: Warning | str, category: type[Warning], *where: Any,
              **kw: Any) -> None:
        from .config import EarlierReleaseWarning  # imported by whatever warned

        if issubclass(category, EarlierReleaseWarning):
            print(f"diracnets: warning: {_one_line(message)}", file=sys.stderr)
        else:
            show(message, category, *where, **kw)

    return write


def _run(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; an error is one line on stderr and an exit status."""
    from .checkpoint import CheckpointError
    from .divergence import DivergenceError
    from .trainer import TrainingInterrupted

    try:
        return args.func(args)
    except TrainingInterrupted as stop:
        print(f"diracnets: {_stopped(args.command, stop)}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print("diracnets: aborted; the last checkpoint written (if any) is kept", file=sys.stderr)
        return INTERRUPTED
    except DivergenceError as exc:
        print(f"diracnets: error: {_one_line(exc)}", file=sys.stderr)
        return FAILED
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        print(f"diracnets: error: {_disk_full(exc) if full else _one_line(exc)}",
              file=sys.stderr)
        return USAGE
    except (CheckpointError, ValueError, ImportError) as exc:
        print(f"diracnets: error: {_one_line(exc)}", file=sys.stderr)
        return USAGE


def missing_dependencies() -> list[str]:
    """The distributions of :data:`REQUIRED` that cannot be imported."""
    return [distribution for module, distribution in REQUIRED.items()
            if not _importable(module)]


def _importable(module: str) -> bool:
    try:  # finding without importing keeps the check cheap
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
