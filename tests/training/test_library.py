"""diracnets as a library: the package's names, early stopping that still finalises the run,
one name per setting in Python and on the command line, presets equal to model builders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import diracnets
from diracnets import EarlyStopping, TrainConfig, Trainer, format_summary, run_training

ROOT = Path(__file__).parents[2]


def test_the_package_exports_the_library_without_importing_torch_first():
    for name in diracnets.__all__:
        assert getattr(diracnets, name) is not None, name
    assert diracnets.Trainer is Trainer and "load_run" in dir(diracnets)
    with pytest.raises(AttributeError, match="no attribute 'Trainr'"):
        diracnets.Trainr  # noqa: B018
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys, diracnets; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_a_callback_stopping_mid_epoch_ends_the_run_with_fold_and_summary(
        tiny_config, small_digits, tmp_path):
    def time_is_up(event, trainer):
        if event == "batch_end" and (trainer.epoch, trainer.batch) == (1, 2):
            trainer.stop("time budget spent")

    lines: list[str] = []
    summary = run_training(tiny_config(epochs=4), dataset=small_digits, callbacks=[time_is_up],
                           log=lines.append)
    run = tmp_path / "run"
    assert summary["stopped_early"] == {"reason": "time budget spent", "epoch": 1, "batch": 2}
    assert summary["epochs"] == 1 and summary["final"]["batches"] == 2
    assert summary["fold"]["ok"]
    assert json.loads((run / "summary.json").read_text())["stopped_early"]["batch"] == 2
    assert (run / "folded.safetensors").stat().st_size > 0
    assert lines[-1] == "stopped early in epoch 2, after batch 2: time budget spent"
    text = format_summary(summary)
    assert "after 1 epochs and 2 batches" in text and "stopped early          time budget" in text
    # the checkpoint holds that exact point: the run can still be continued
    from diracnets.checkpoint import load_checkpoint

    saved = load_checkpoint(run / "last.pt")
    assert (saved["epoch"], saved["batch"]) == (1, 2)


def test_early_stopping_at_an_epoch_end(tiny_config, small_digits, tmp_path):
    # "epoch" only grows, so in "min" mode it never improves after the first epoch
    stopper = EarlyStopping("epoch", patience=1, mode="min")
    summary = run_training(tiny_config(epochs=5), dataset=small_digits, callbacks=[stopper],
                           log=None)
    assert summary["epochs"] == 2 and "batches" not in summary["final"]
    assert summary["stopped_early"]["reason"] == "epoch did not improve on 1 for 1 epochs"
    assert summary["fold"]["ok"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_early_stopping_rejects_bad_settings_and_unknown_metrics(tiny_config, small_digits):
    for kw, message in (({"patience": 0}, "patience must be a positive int, got 0"),
                        ({"mode": "up"}, "mode='up' is not accepted"),
                        ({"min_delta": -1.0}, "min_delta must be a finite number >= 0")):
        with pytest.raises(ValueError, match=message):
            EarlyStopping(**kw)
    trainer = Trainer(tiny_config(epochs=1), dataset=small_digits,
                      callbacks=[EarlyStopping("val_accuracy")], log=None)
    with pytest.raises(ValueError, match="monitor='val_accuracy' is not in the epoch records"):
        trainer.fit()


def test_one_name_per_setting_in_python_config_and_command_line(small_digits):
    from dirac_torch import DiracConv2d
    from dirac_torch.models import diracnet_cifar
    from diracnets.cli import build_parser
    from diracnets.trainer import build_model

    args = build_parser().parse_args(["train", "--alpha-init", "2", "--beta-init", "0.5"])
    assert (args.alpha_init, args.beta_init) == (2.0, 0.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--alpha0", "2"])
    config = TrainConfig(depth=10, alpha_init=2.0, beta_init=0.5)
    model = build_model(config, small_digits)
    same = diracnet_cifar(10, alpha_init=2.0, beta_init=0.5, in_channels=1, image_size=8)
    for built in (model, same):
        convs = [m for m in built.modules() if isinstance(m, DiracConv2d)]
        assert convs and all(c.alpha.item() == 2.0 and c.beta.item() == 0.5 for c in convs)
    # checkpoints written before the rename still load
    old = {**config.to_dict(), "alpha0": 3.0}
    del old["alpha_init"]
    assert TrainConfig.from_dict(old).alpha_init == 3.0
    # those releases wrote alpha0/beta0 for plain runs too, where they set nothing: read as
    # None with the earlier-release warning (they were refused under their old names)
    plain = {**TrainConfig(data="digits", depth=10, parameterization="plain").to_dict(),
             "alpha0": 5.0, "beta0": 1e-3}
    del plain["alpha_init"], plain["beta_init"]
    with pytest.warns(diracnets.EarlierReleaseWarning, match="alpha0=5.0, beta0=0.001"):
        assert TrainConfig.from_dict(plain).alpha_init is None


@pytest.mark.parametrize("arch, builder, depth", [("cifar", "diracnet_v2_cifar", 10),
                                                  ("imagenet", "diracnet_v2_imagenet", 18)])
def test_preset_v2_is_the_v2_builder(arch, builder, depth, small_digits):
    from dirac_torch import models
    from diracnets import preset_config
    from diracnets.trainer import build_model

    trained = build_model(preset_config("v2", arch=arch, depth=depth), small_digits)
    built = getattr(models, builder)(depth, num_classes=10, in_channels=1, image_size=8)
    assert trained.spec == built.spec
    assert trained.spec.options == built.spec.options
