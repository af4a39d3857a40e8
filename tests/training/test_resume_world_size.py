"""A run resumed with another number of ranks (2 -> 1, 1 -> 2) continues at its global step:
same global batch, same data order and augmentation, checkpoints portable both ways."""

from __future__ import annotations

import pytest
import torch

from diracnets.checkpoint import load_checkpoint


@pytest.mark.distributed
def test_resuming_with_another_world_size_continues_the_same_training(
        launch_ranks, rank_tasks, tmp_path):
    # 1 -> 2: a single process interrupted after 2 of 4 steps, continued by two ranks
    one_to_two = tmp_path / "resume-2" / "one-to-two"
    rank_tasks.train(one_to_two, sync_bn=True, steps=4, stop_after=2)
    assert load_checkpoint(one_to_two / "last.pt")["batch"] == 2
    ranks = launch_ranks("resume", world=2, timeout=150)
    # 2 -> 1: two ranks interrupted (they agree on the stop one batch later: after batch 2),
    # continued by a single process from the checkpoint rank 0 wrote
    two_to_one = ranks / "two-to-one"
    state = load_checkpoint(two_to_one / "last.pt")
    assert (state["epoch"], state["batch"]) == (0, 2)
    continued = rank_tasks.resumed(two_to_one)
    reference = rank_tasks.train(tmp_path / "whole", sync_bn=True, steps=4)
    rank0, rank1 = (torch.load(ranks / f"rank{r}.pt", weights_only=True) for r in range(2))
    for name, value in reference.items():
        assert torch.equal(rank0[name], rank1[name])
        if value.is_floating_point():
            # float32 round-off of 2 ranks x 32 vs 1 x 64 (test_sync_bn), over 4 steps
            for got in (rank0[name], continued[name]):
                torch.testing.assert_close(got, value, rtol=0, atol=5e-3)
    for folder in (one_to_two, two_to_one):
        done = load_checkpoint(folder / "last.pt")
        assert (done["epoch"], done["batch"]) == (1, 0) and len(done["history"]) == 1
