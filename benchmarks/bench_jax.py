"""Jitted JAX ``dirac_weight`` + conv, forward and backward, against the torch backend on CPU.

The layer of a DiracNet after NCReLU: 2*32 = 64 input channels -> 32, 3x3, batch 16, 16x16,
float32, CPU. One step computes ``W_hat = alpha * delta + beta * normalize(W)``, the spec's
``"same"`` convolution, and the gradients of a fixed output gradient with respect to the
input, ``W``, ``alpha`` and ``beta``: in JAX one ``jax.jit`` of ``jax.vjp`` through the public
``dirac_core`` functions (the backend's ``custom_vjp`` rules); in torch the same functions on
tensors under autograd (``dirac_torch``'s fused Dirac-weight node and ``conv2d``). The two are
timed alternately in blocks of steps, the order swapped every round; the ratio of the medians
(JAX / torch) is printed, below 1 when JAX is faster.

Run: ``python benchmarks/bench_jax.py [--rounds 15] [--steps 5]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch
from timing import interleaved_medians  # this directory is on the path when run as a script

import dirac_core as dc


def jax_step(x, w, alpha, beta, g) -> Callable[[], None]:
    def loss(*args):
        xv, wv, a, b = args
        return dc.conv(xv, dc.dirac_weight(wv, a, b), padding="same")

    @jax.jit
    def step(*args):
        y, pull = jax.vjp(loss, *args)
        return y, pull(g)

    arrays = [jnp.asarray(a) for a in (x, w, alpha, beta)]
    return lambda: jax.block_until_ready(step(*arrays))


def torch_step(x, w, alpha, beta, g) -> Callable[[], None]:
    leaves = [torch.from_numpy(a).requires_grad_() for a in (x, w, alpha, beta)]
    grad = torch.from_numpy(g)

    def step() -> None:
        for t in leaves:
            t.grad = None
        xv, wv, a, b = leaves
        dc.conv(xv, dc.dirac_weight(wv, a, b), padding="same").backward(grad)

    return step


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    c = args.channels
    x = rng.standard_normal((args.batch, 2 * c, args.size, args.size)).astype(np.float32)
    w = rng.standard_normal((c, 2 * c, 3, 3)).astype(np.float32)
    alpha, beta = np.full((), 5.0, np.float32), np.full((), 1e-3, np.float32)
    g = rng.standard_normal((args.batch, c, args.size, args.size)).astype(np.float32)
    steps = {"jax": jax_step(x, w, alpha, beta, g), "torch": torch_step(x, w, alpha, beta, g)}
    for step in steps.values():  # compile and warm up
        step()
        step()
    median = interleaved_medians(steps, args.rounds, args.steps)
    ratio = median["jax"] / median["torch"]
    print(f"jax (jit) {median['jax'] * 1e3:.2f} ms/step, torch {median['torch'] * 1e3:.2f} "
          f"ms/step: ratio jax/torch {ratio:.2f}x")
    return ratio


if __name__ == "__main__":
    main()
