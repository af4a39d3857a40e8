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
