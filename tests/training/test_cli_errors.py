"""Every user mistake is one line on stderr and exit status 2, naming the option."""

from __future__ import annotations

import errno
import io
import json
import pickle
import shutil
import tarfile

import numpy as np
import pytest
from fuzz_inputs import MUTATIONS, replace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diracnets import checkpoint as ck
from diracnets.checkpoint import load_checkpoint, save_checkpoint
from diracnets.cli import main
from diracnets.config import TrainConfig
from diracnets.rundir import RunFolder
from diracnets.trainer import Trainer

TINY = ["--depth", "10", "--batch-size", "32", "--train-limit", "64", "--no-progress",
        "--device", "cpu"]


def usage_error(capsys, argv: list[str]) -> str:
    """Run the command; it must fail with status 2 and one line; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("diracnets: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, digits):
    """A run folder with a checkpoint after one epoch (the training loop alone: quick)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    config = TrainConfig(depth=10, epochs=1, batch_size=32, train_limit=64, progress=False,
                         device="cpu", out=str(out))
    Trainer(config, dataset=digits).fit()
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of a finished run folder (marker included: still that run's folder)."""
    return shutil.copytree(finished_run, tmp_path / "run")


@pytest.mark.parametrize("device", ["gpu", "mps", "meta", "cuda:x", "cpu:0"])
def test_unsupported_devices(tmp_path, capsys, device):
    err = usage_error(capsys, ["train", *TINY, "--device", device, "--out", str(tmp_path / "r")])
    assert f"device={device!r} is not accepted" in err and "cuda:N" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_seeds_out_of_range(tmp_path, capsys, seed):
    err = usage_error(capsys, ["train", *TINY, "--seed", seed, "--out", str(tmp_path / "r")])
    assert f"seed={int(seed)} is not accepted" in err


@pytest.mark.parametrize("option", [["--preset", "v2"], ["--preset", "v1"], ["--overwrite"]])
def test_resume_refuses_options_it_would_ignore(run_copy, capsys, option):
    before = (run_copy / "last.pt").read_bytes()
    err = usage_error(capsys, ["train", "--resume", str(run_copy / "last.pt"), *option])
    assert f"{option[0]} cannot be used with --resume" in err
    assert (run_copy / "last.pt").read_bytes() == before


def test_checkpoint_with_a_valid_digest_but_the_wrong_structure(run_copy, capsys):
    state = load_checkpoint(run_copy / "last.pt")
    for broken in ({"config": state["config"]}, {**state, "epoch": "two"}, [1, 2, 3],
                   {**state, "meter": [1.0]}, {**state, "config": {**state["config"],
                                                                    "milestones": 5}}):
        save_checkpoint(broken, run_copy / "last.pt")
        err = usage_error(capsys, ["train", "--resume", str(run_copy / "last.pt")])
        assert "Traceback" not in err


def test_a_full_disk_says_how_to_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    replace, calls = ck.os.replace, []

    def disk_full_at_second_checkpoint(src, dst):
        if str(dst).endswith("last.pt"):
            calls.append(dst)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", disk_full_at_second_checkpoint)
    err = usage_error(capsys, ["train", *TINY, "--epochs", "3", "--out", str(out)])
    assert "no space left on device while writing" in err
    assert f"diracnets train --resume {out / 'last.pt'}" in err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_plot_refuses_metrics_of_the_wrong_schema(tmp_path, capsys):
    RunFolder.new(tmp_path / "run").release()
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.write_text('{"epoch": 1, "loss": 0.5}\n')
    assert "not a diracnets metrics record" in usage_error(capsys, ["plot", str(metrics.parent)])
    metrics.write_text("epoch,loss\n1,0.5\n")
    assert "metrics.jsonl:1: not valid JSON" in usage_error(capsys, ["plot", str(metrics.parent)])
    # good metrics, but not in a run folder (or no folder at all): nothing is drawn there
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "metrics.jsonl").write_text(json.dumps(
        {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5}))
    for folder in (tmp_path / "mine", tmp_path / "none"):
        assert "not a diracnets run folder" in usage_error(capsys, ["plot", str(folder)])
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["metrics.jsonl"]


def _cifar_python_archive(path, batch: bytes | None = None) -> None:
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    good = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for name in files:
            blob = batch if batch is not None and name == "data_batch_2" else good
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("case", ["corrupt", "truncated", "empty", "hostile", "empty-batch",
                                  "garbage-batch"])
def test_bad_cifar_downloads(tmp_path, capsys, case):
    archive = tmp_path / "cifar-10-python.tar.gz"
    if case == "hostile":
        _cifar_python_archive(archive, pickle.dumps({b"data": Exploit()}, protocol=2))
    elif case == "empty-batch":
        _cifar_python_archive(archive, b"")
    elif case == "garbage-batch":
        _cifar_python_archive(archive, b"\x80\x02garbage" * 10)
    else:
        _cifar_python_archive(archive)
        blob = archive.read_bytes()
        archive.write_bytes({"corrupt": blob[:20] + bytes(len(blob) - 20),
                             "truncated": blob[: len(blob) // 2], "empty": b""}[case])
    out = tmp_path / "run"
    err = usage_error(capsys, ["train", *TINY, "--data", "cifar10", "--data-dir", str(archive),
                               "--out", str(out)])
    assert str(archive) in err or "data_batch_2" in err
    assert not out.exists()


def test_a_model_too_deep_for_the_images_is_refused_before_the_folder_is_claimed(tmp_path,
                                                                                 capsys):
    out = tmp_path / "r"
    err = usage_error(capsys, ["train", "--model", "diracnet18_025_imagenet", "--batch-size",
                               "32", "--train-limit", "64", "--no-progress", "--device", "cpu",
                               "--out", str(out)])
    assert "DiracNet-18-0.25 does not take digits's 1x8x8 images" in err
    assert "cifar models for small images" in err
    assert not out.exists()  # nothing claimed: the same folder can be used right away


@pytest.mark.parametrize("model, option", [("diracnet10_1_cifar", "plain"),
                                           ("plain10_1_cifar", "dirac"),
                                           ("diracnet10_1_cifar", "resnet")])
def test_a_parameterization_the_model_name_does_not_fix_is_refused(tmp_path, capsys, model,
                                                                   option):
    out = tmp_path / "r"
    err = usage_error(capsys, ["train", *TINY, "--model", model, "--parameterization", option,
                               "--out", str(out)])
    fixed = "plain" if model.startswith("plain") else "dirac"
    assert f"--model {model} sets parameterization={fixed!r}" in err
    assert "drop --parameterization" in err
    assert not out.exists()


def test_an_arch_of_the_other_preset_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    err = usage_error(capsys, ["train", *TINY, "--preset", "v1", "--arch", "v2_cifar",
                               "--out", str(out)])
    assert "preset='v1' cannot be combined with arch='v2_cifar'" in err
    assert not out.exists()


_NUMBERS = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from(["1e39", "1e308", "-0", "10000006", "nan", "", "x"]))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["--depth", "--width", "--lr", "--weight-decay", "--batch-size",
                        "--epochs", "--momentum", "--init-std", "--seed", "--workers"]),
       _NUMBERS)
def test_fuzz_train_numbers_are_one_line_refusals(tmp_path, capsys, option, value):
    """Whatever number an option gets, the command ends in one line (here on data that is
    not there, if the settings are fine), never a traceback and never a build."""
    argv = ["train", option, str(value), "--data", "imagefolder", "--data-dir",
            str(tmp_path / "no-data"), "--out", str(tmp_path / "run"), "--no-progress"]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: not a number at all
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 or err.startswith("usage:")


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MUTATIONS)
def test_fuzz_plot_of_edited_metrics(tmp_path, capsys, mutation):
    """`diracnets plot` on a run whose metrics.jsonl was edited anywhere: the plots, or one
    line and exit status 2."""
    folder = tmp_path / "run"
    if not folder.exists():
        RunFolder.new(folder).release()
    record = {"epoch": 1, "lr": 0.1, "train_loss": 0.5, "train_acc": 0.9, "val_loss": 0.4,
              "val_acc": 0.9, "group0.1.alpha": 4.9, "group0.1.beta": 0.01}
    junk, where = mutation
    (folder / "metrics.jsonl").write_text(json.dumps(replace(record, where, junk)) + "\n")
    code = main(["plot", str(folder)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
    assert code == 0 or err.count("\n") == 1
