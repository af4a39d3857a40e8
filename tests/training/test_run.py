"""A whole job: train, fold and verify, time, save safetensors, export and check ONNX."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from diracnets.finalize import fold_and_verify, output_error
from diracnets.run import format_summary, run_training


def test_job_folds_verifies_exports_and_summarises(tiny_config, small_digits, tmp_path):
    summary = run_training(tiny_config(epochs=1, onnx=True), dataset=small_digits)
    run = tmp_path / "run"
    assert json.loads((run / "summary.json").read_text())["fold"] == summary["fold"]
    assert summary["fold"]["ok"] and summary["fold"]["max_rel_error"] < 1e-4
    assert summary["onnx"]["max_rel_error"] < 1e-4
    assert (run / "model.onnx").stat().st_size > 10_000
    assert summary["speed"]["folded_images_per_s"] > 0 and summary["speed"]["speedup"] > 0
    weights = load_file(str(run / "model.safetensors"))
    assert summary["parameters"] == sum(
        v.numel() for k, v in weights.items() if "running" not in k and "num_batches" not in k)
    for name in ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "alpha.png",
                 "config.json"):
        assert (run / name).exists(), name
    text = format_summary(summary)
    assert "folded vs unfolded" in text and "ONNX (onnxruntime)" in text and "OK" in text


def test_fold_check_catches_a_wrong_fold(monkeypatch, small_digits):
    from dirac_torch.models import diracnet_cifar

    model = diracnet_cifar(10, in_channels=1, image_size=8).eval()
    images = torch.randn(8, 1, 8, 8)
    folded, report = fold_and_verify(model, images)
    assert report["ok"]
    next(folded.parameters()).data.mul_(1.5)  # a fold that got one weight wrong
    with torch.no_grad():
        bad = output_error(model(images), folded(images))
    assert bad["max_rel_error"] > 1e-3


def test_output_error_is_relative_to_the_largest_output():
    err = output_error(torch.tensor([10.0, -20.0]), torch.tensor([10.0, -19.0]))
    assert err == {"max_abs_error": 1.0, "max_rel_error": pytest.approx(0.05)}


def test_the_speed_ratio_is_printed_only_with_its_spread():
    from diracnets.finalize import compare_speed

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
    speed = compare_speed(model, model, torch.randn(4, 1, 8, 8), repeats=5)
    low, high = speed["speedup_range"]
    assert low <= speed["speedup"] <= high and speed["passes"] == 5
    summary = {"final": {"val_acc": 0.5}, "fold": {"max_rel_error": 0.0, "max_abs_error": 0.0,
                                                   "ok": True},
               "epochs": 1, "best_epoch": 0, "parameters": 10, "run_dir": "r"}
    noisy = {"speedup": 0.44, "speedup_range": [0.3, 1.6], "passes": 10,
             "unfolded_images_per_s": 1.0, "folded_images_per_s": 1.0}
    text = format_summary({**summary, "speed": noisy})
    assert "folded 0.44x unfolded (spread 0.30x-1.60x over 10 paired passes" in text
    assert "no difference measurable here" in text
    old = {k: v for k, v in noisy.items() if k not in ("speedup_range", "passes")}
    assert "0.44x" not in format_summary({**summary, "speed": old})  # no spread: no ratio
