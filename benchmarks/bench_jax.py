"""Jitted JAX ``dirac_weight`` + conv, forward and backward, against the torch backend on CPU.

The layer of a DiracNet after NCReLU: 2*32 = 64 input channels -> 32, 3x3, batch 16, 16x16,
float32, CPU. One step computes ``W_hat = alpha * delta + beta * normalize(W)``, the spec's
``"same"`` convolution, and the gradients of a fixed output gradient with respect to the
input, ``W``, ``alpha`` and ``beta``: in JAX one ``jax.jit`` of ``jax.vjp`` through the public
``dirac_core`` functions (the backend's ``custom_vjp`` rules); in torch the same functions on
tensors under autograd (``dirac_torch``'s fused Dirac-weight node and ``conv2d``). The two are
timed alternately in blocks of steps, the order swapped every round; the ratio of the medians
(JAX / torch) is printed, below 1 when JAX is faster.

``--parts`` also times the two halves of the step on their own, each framework against the
other in the same rounds: the Dirac weight (``dirac_weight`` and its VJP, the gradient of the
weight given) and the convolution (``conv`` and its VJP with a plain weight), and prints each
part's median per-round ratio with its quartiles: it says whether a gap is the weight rule's
or the convolution's.

Run: ``python benchmarks/bench_jax.py [--rounds 15] [--steps 5] [--parts]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch
from timing import (  # this directory is on the path when run as a script
    interleaved_medians,
    interleaved_times,
    paired_ratio,
)

import dirac_core as dc


def layer(x, w, alpha, beta):
    """The timed step's function: the Dirac weight, then the spec's ``"same"`` conv."""
    return dc.conv(x, dc.dirac_weight(w, alpha, beta), padding="same")


def weight(w, alpha, beta):
    return dc.dirac_weight(w, alpha, beta)


def conv(x, w):
    return dc.conv(x, w, padding="same")


def jax_step(fn: Callable, args: list[np.ndarray], g: np.ndarray) -> Callable[[], None]:
    """``fn`` and the VJP of ``g`` through it, as one ``jax.jit``."""
    @jax.jit
    def step(*arrays):
        y, pull = jax.vjp(fn, *arrays)
        return y, pull(g)

    arrays = [jnp.asarray(a) for a in args]
    return lambda: jax.block_until_ready(step(*arrays))


def torch_step(fn: Callable, args: list[np.ndarray], g: np.ndarray) -> Callable[[], None]:
    """``fn`` on tensors under autograd and the backward of ``g`` through it."""
    leaves = [torch.from_numpy(a).requires_grad_() for a in args]
    grad = torch.from_numpy(g)

    def step() -> None:
        for t in leaves:
            t.grad = None
        fn(*leaves).backward(grad)

    return step


def parts(x, w, alpha, beta, g, rounds: int, steps: int) -> None:
    """Print JAX / torch for the weight rule alone and the convolution alone (median of the
    per-round ratios, quartiles in brackets), each pair timed in the same rounds."""
    dw = np.random.default_rng(1).standard_normal(w.shape).astype(w.dtype)
    cases = {"weight": (weight, [w, alpha, beta], dw), "conv": (conv, [x, w], g)}
    for name, (fn, args, grad) in cases.items():
        pair = {"jax": jax_step(fn, args, grad), "torch": torch_step(fn, args, grad)}
        for step in pair.values():
            step()
            step()
        times = interleaved_times(pair, rounds, steps)
        ratio, low, high = paired_ratio(times["jax"], times["torch"])
        jax_ms, torch_ms = (1e3 * float(np.median(times[k])) for k in ("jax", "torch"))
        print(f"{name}: jax {jax_ms:.2f} ms, torch {torch_ms:.2f} ms: ratio jax/torch "
              f"{ratio:.2f}x [{low:.2f}, {high:.2f}]")


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--parts", action="store_true",
                        help="also time the weight rule and the convolution on their own")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    c = args.channels
    x = rng.standard_normal((args.batch, 2 * c, args.size, args.size)).astype(np.float32)
    w = rng.standard_normal((c, 2 * c, 3, 3)).astype(np.float32)
    alpha, beta = np.full((), 5.0, np.float32), np.full((), 1e-3, np.float32)
    g = rng.standard_normal((args.batch, c, args.size, args.size)).astype(np.float32)
    inputs = [x, w, alpha, beta]
    steps = {"jax": jax_step(layer, inputs, g), "torch": torch_step(layer, inputs, g)}
    for step in steps.values():  # compile and warm up
        step()
        step()
    median = interleaved_medians(steps, args.rounds, args.steps)
    ratio = median["jax"] / median["torch"]
    print(f"jax (jit) {median['jax'] * 1e3:.2f} ms/step, torch {median['torch'] * 1e3:.2f} "
          f"ms/step: ratio jax/torch {ratio:.2f}x")
    if args.parts:
        parts(x, w, alpha, beta, g, args.rounds, args.steps)
    return ratio


if __name__ == "__main__":
    main()
