"""Precise batch norm: running statistics recomputed exactly for the current weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diracnets.config import TrainConfig
from diracnets.precise_bn import recalibrate_batchnorm


def batches(n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 2, 7, 7, generator=gen, dtype=torch.float64) * 3 + 1, None)
            for _ in range(n)]


def test_running_statistics_become_the_exact_average_of_the_batch_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 4, 3),
                        nn.BatchNorm2d(4)).double().eval()
    bn1, bn2 = net[1], net[4]
    bn1.running_mean.fill_(7.0)  # stale statistics from "training"
    bn2.running_var.fill_(50.0)
    data = batches()
    assert recalibrate_batchnorm(net, data) == len(data)
    assert not net.training and bn1.momentum == bn2.momentum == 0.1
    with torch.no_grad():
        h = [net[0](x) for x, _ in data]
        means = torch.stack([t.mean((0, 2, 3)) for t in h]).mean(0)
        variances = torch.stack([t.transpose(0, 1).flatten(1).var(1) for t in h]).mean(0)
        # the second batch norm sees the first normalized with each batch's own statistics
        h2 = [net[3](net[2](nn.functional.batch_norm(
            t, None, None, bn1.weight, bn1.bias, training=True))) for t in h]
        means2 = torch.stack([t.mean((0, 2, 3)) for t in h2]).mean(0)
    torch.testing.assert_close(bn1.running_mean, means, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn1.running_var, variances, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn2.running_mean, means2, rtol=1e-12, atol=1e-12)


def test_no_batches_leaves_the_statistics_alone():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)).double().train()
    net[1].running_mean.fill_(2.0)
    assert recalibrate_batchnorm(net, []) == 0
    assert torch.equal(net[1].running_mean, torch.full((3,), 2.0, dtype=torch.float64))
    assert net.training and net[1].momentum == 0.1


def test_a_run_with_precise_bn_evaluates_with_recalibrated_statistics(tmp_path):
    from diracnets.trainer import Trainer

    common = {"data": "digits", "depth": 10, "epochs": 1, "batch_size": 64,
              "train_limit": 256, "progress": False}
    runs = {}
    for flag in (False, True):
        trainer = Trainer(TrainConfig(**common, precise_bn=flag, out=str(tmp_path / str(flag))))
        trainer.fit()
        runs[flag] = trainer
    # same training (batch statistics), different running statistics
    a, b = (dict(runs[f].model.named_buffers()) for f in (False, True))
    assert torch.equal(runs[False].model.stem[0].weight, runs[True].model.stem[0].weight)
    assert not torch.equal(a["stem.1.running_mean"], b["stem.1.running_mean"])
    expected = runs[True].model
    copy = Trainer(TrainConfig(**common, out=str(tmp_path / "c"))).model
    copy.load_state_dict(expected.state_dict())
    recalibrate_batchnorm(copy, runs[True].train_loader.batches(0))
    for name, value in copy.named_buffers():
        if "running" in name:
            torch.testing.assert_close(value, b[name], rtol=0, atol=0)


@pytest.mark.parametrize("bad", [1, "yes"])
def test_precise_bn_is_a_flag_in_the_config(bad):
    assert TrainConfig(precise_bn=True).precise_bn is True
    with pytest.raises(TypeError, match="precise_bn"):
        TrainConfig(precise_bn=bad)


@pytest.mark.distributed
def test_two_ranks_get_the_statistics_of_one_process_over_both_shards(launch_ranks, rank_tasks):
    """Each gloo rank recalibrates on its own three batches; the reduced statistics equal one
    process's over all six, on both ranks (float64 sums: round-off only)."""
    from diracnets.distributed import Context

    shard, small_net = rank_tasks.shard, rank_tasks.small_net

    ranks = launch_ranks("precise_bn", world=2)
    single = small_net()
    everything = shard(Context(0, 2), 3) + shard(Context(1, 2), 3)
    assert recalibrate_batchnorm(single, everything) == 6
    for r in range(2):
        saved = torch.load(ranks / f"rank{r}.pt", weights_only=True)
        assert saved["count"] == 6
        for name, value in single.named_buffers():
            torch.testing.assert_close(saved["buffers"][name], value, rtol=1e-12, atol=1e-12)
    # a rank's own shard alone gives other statistics: the reduction did something
    alone = small_net()
    recalibrate_batchnorm(alone, shard(Context(0, 2), 3))
    assert not torch.allclose(alone[1].running_var, single[1].running_var)
