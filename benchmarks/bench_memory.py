"""Peak memory of a training step: a DiracNet against its plain control, each in a fresh process.

Every measurement runs in a new Python process (``--worker``), so that nothing one model
allocated (or left to the allocator) counts against the other. The worker builds the model,
records its memory, runs ``--steps`` SGD training steps (forward, cross-entropy, backward,
``optimizer.step`` with momentum, so every parameter has its gradient and momentum buffer) and
reports the peak:

- on the CPU the peak resident set size (``ru_maxrss``), both in total (interpreter, torch and
  all) and above the worker's own peak just before the model was built;
- on CUDA (``--device cuda``) ``torch.cuda.max_memory_allocated``, which counts only tensors.

The workers of the two models alternate, ``--repeat`` times each; the medians and the ratio
DiracNet / plain are printed with every run's numbers, so the spread is visible. Two sizes are
of interest: ``--width 4 --batch 8`` (DiracNet-34-4, 56 MiB of parameters: the weights
dominate) and ``--width 1 --batch 64`` (activations dominate).

Run ``python benchmarks/bench_memory.py [--depth 34] [--width 4] [--batch 8] [--size 32]
[--steps 2] [--repeat 3] [--threads 1] [--device cpu|cuda] [--compile]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

KINDS = ("dirac", "plain")


def _rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> dict[str, float]:
    """Build one model and train it for ``args.steps`` steps; its peak memory in MiB."""
    import torch
    from torch import nn

    from dirac_torch.models import diracnet_cifar, plain_cifar

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    before = _rss_mib()
    build = diracnet_cifar if args.worker == "dirac" else plain_cifar
    model = build(args.depth, args.width).to(device)
    params = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    buffers = sum(b.numel() * b.element_size() for b in model.buffers()) / 2**20
    step_model = torch.compile(model, fullgraph=True) if args.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    for _ in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(step_model(x), y).backward()
        optimizer.step()
    out = {"params_mib": params, "buffers_mib": buffers}
    if device.type == "cuda":
        torch.cuda.synchronize()
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["above_mib"] = out["peak_mib"] - start / 2**20
    else:
        out["peak_mib"] = _rss_mib()
        out["above_mib"] = out["peak_mib"] - before
    return out


def run_worker(args: argparse.Namespace, kind: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", kind, "--depth", str(args.depth),
               "--width", str(args.width), "--batch", str(args.batch), "--size", str(args.size),
               "--steps", str(args.steps), "--threads", str(args.threads),
               "--device", args.device] + ["--compile"] * args.compile
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=34)
    parser.add_argument("--width", type=float, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--steps", type=int, default=2, help="training steps per process")
    parser.add_argument("--repeat", type=int, default=3, help="processes per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return {}
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    for _ in range(args.repeat):
        for kind in KINDS:
            runs[kind].append(run_worker(args, kind))
    what = "max_memory_allocated" if args.device.startswith("cuda") else "peak RSS"
    print(f"DiracNet-{args.depth}-{args.width:g} vs plain, batch {args.batch}, "
          f"{args.size}x{args.size}, float32, {args.device}"
          f"{', compiled' if args.compile else ''}, {args.steps} steps per process, {what} "
          f"(MiB), {args.repeat} processes each")
    ratios = {}
    for key in ("peak_mib", "above_mib"):
        medians = {kind: statistics.median(r[key] for r in runs[kind]) for kind in KINDS}
        for kind in KINDS:
            values = ", ".join(f"{r[key]:.0f}" for r in runs[kind])
            print(f"  {key:<10} {kind:<6} median {medians[kind]:8.1f}  ({values})")
        ratios[key] = medians["dirac"] / medians["plain"]
        print(f"  {key}: dirac / plain {ratios[key]:.3f}x")
    for kind in KINDS:
        first = runs[kind][0]
        print(f"  {kind}: parameters {first['params_mib']:.1f} MiB, buffers "
              f"{first['buffers_mib']:.1f} MiB")
    return ratios


if __name__ == "__main__":
    main()
