"""``--sync-bn``: two gloo ranks x 32 examples train exactly as one process x 64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diracnets.sync_bn import desynchronize_batchnorm, synchronize_batchnorm


def test_synchronized_modules_stay_batch_norms_and_compute_the_same_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.BatchNorm2d(3))
    plain = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.BatchNorm2d(3))
    plain.load_state_dict(net.state_dict())
    assert synchronize_batchnorm(net) == 2 and synchronize_batchnorm(net) == 0
    assert isinstance(net[1], nn.BatchNorm2d)
    assert net.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(4, 2, 6, 6)
    # no process group: the ordinary forward, bit for bit
    torch.testing.assert_close(net(x), plain(x), rtol=0, atol=0)
    # back to plain batch norms, which fold_model folds
    from dirac_torch.fold import fold_model

    assert desynchronize_batchnorm(net) == 2 and type(net[1]) is nn.BatchNorm2d
    net.eval()
    conv_bn = net[:2]  # a convolution and the batch norm it feeds
    torch.testing.assert_close(fold_model(conv_bn)(x), conv_bn(x), rtol=1e-5, atol=1e-5)


def test_two_ranks_see_the_global_batch_of_one_process_crops_and_flips_included(digits):
    from dataclasses import replace

    from diracnets.datasets import Augment
    from diracnets.loaders import make_loaders

    data = replace(digits, augment=Augment(pad=2, flip=True))
    one = make_loaders(data, 64, seed=3, train_limit=256)[0]
    two = [make_loaders(data, 64, seed=3, rank=r, world=2, train_limit=256)[0] for r in (0, 1)]
    for epoch in (0, 1):
        for whole, *halves in zip(one.batches(epoch), *(t.batches(epoch) for t in two),
                                  strict=True):
            assert torch.equal(whole[0], torch.cat([h[0] for h in halves]))
            assert torch.equal(whole[1], torch.cat([h[1] for h in halves]))


@pytest.mark.distributed
def test_two_ranks_with_sync_bn_give_the_weights_of_one_process(launch_ranks, rank_tasks,
                                                                tmp_path):
    """One gloo job: two steps of a DiracNet-10 with ``sync_bn`` on digits with random crops
    and flips, global batch 64 as two ranks x 32; then three float64 SGD steps of a small net
    in DDP, with and without synchronized batch norm. Each against one process with the whole
    batch."""
    from diracnets.distributed import Context

    ranks = launch_ranks("sync_bn", world=2, timeout=150)
    rank0, rank1 = (torch.load(ranks / f"rank{r}.pt", weights_only=True) for r in range(2))
    one = rank_tasks.float64_steps(Context())
    off = {True: 0.0, False: 0.0}
    for name, value in one.items():
        for sync in off:
            theirs = rank0[f"float64-{sync}"][name]
            off[sync] = max(off[sync], (theirs - value).abs().max().item())
    # float64: the same arithmetic up to the order of sums; unsynchronized, each rank
    # normalises its own 6 examples: another training
    assert off[True] < 1e-12 and off[False] > 1e-3, off
    single = rank_tasks.train(tmp_path / "single", sync_bn=False)
    synced = {}
    for name, value in single.items():
        assert torch.equal(rank0["trainer"][name], rank1["trainer"][name])
        if value.is_floating_point():
            synced[name] = (rank0["trainer"][name] - value).abs().max().item()
    # float32: convolutions of 32 and of 64 images round differently (~1e-7 relative per
    # layer); two steps at lr 0.1 leave those differences below 1e-3 (without sync_bn they
    # are 1e-2 to 1)
    assert max(synced.values()) < 1e-3, max(synced.items(), key=lambda kv: kv[1])
