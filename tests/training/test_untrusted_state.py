"""Checkpoint states, callbacks and run folders that must not mix up runs or lose files: values
out of range are refused at resume, a reused EarlyStopping starts afresh, stop(None) stops, a
demo never replaces a train run, a run never writes over a user's file, and run files honour
the umask."""

from __future__ import annotations

import math
import os
import types

import pytest
import torch
from fuzz_inputs import MUTATIONS, replace
from hypothesis import HealthCheck, given, settings

from diracnets.atomic import atomic_write_bytes
from diracnets.callbacks import EarlyStopping
from diracnets.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diracnets.demo import run_demo
from diracnets.rundir import RunFolder, RunFolderError, read_marker
from diracnets.trainer import Trainer
from diracnets.training_state import check_state


@pytest.fixture
def one_epoch(run_copy):
    """A private copy of the finished run's last.pt (in a copy of its folder), and its state."""
    return run_copy / "last.pt", load_checkpoint(run_copy / "last.pt")


@pytest.mark.parametrize(("edit", "message"), [
    ({"meter": [math.nan, 0.0, 0.0]}, "meter="),
    ({"meter": [1.0, 5.0, 2.0]}, "correct <= seen"),
    ({"best_acc": math.nan}, "best_acc=nan"),
    ({"best_acc": 7.0}, "best_acc=7.0"),
    ({"best_epoch": 9}, "best_epoch=9"),
    ({"batch": -1}, "batch=-1"),
    ({"history": []}, "0 history records for 1 finished epochs"),
    ({"history": [{"epoch": 1}]}, r"history\[0\]"),
    ({"history": [{"epoch": 1, "train_loss": math.inf, "train_acc": 1, "val_loss": 1,
                   "val_acc": 1}]}, r"history\[0\]"),
    ({"history": "not a list"}, r"wrong history \(str\)"),
])
def test_values_out_of_range_are_refused_at_resume(one_epoch, digits, edit, message):
    path, state = one_epoch
    edited = {**state, **edit}
    with pytest.raises(CheckpointError, match=message):
        check_state(edited, path)
    save_checkpoint(edited, path)  # a valid digest over nonsense
    with pytest.raises(CheckpointError, match=message):
        Trainer.from_checkpoint(path, dataset=digits, log=None)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MUTATIONS)
def test_fuzz_check_state_raises_only_checkpoint_error(one_epoch, mutation):
    """A valid digest over nonsense: any value of a state replaced by any JSON value."""
    path, state = one_epoch
    junk, where = mutation
    try:
        check_state(replace(state, where, junk), path)
    except CheckpointError as exc:
        assert "\n" not in str(exc)


def test_a_batch_index_beyond_the_epoch_is_refused(one_epoch, digits):
    path, state = one_epoch
    save_checkpoint({**state, "batch": 10**6}, path)
    with pytest.raises(CheckpointError, match="at batch 1000000 of an epoch of 5 batches"):
        Trainer.from_checkpoint(path, dataset=digits, log=None)


def test_an_early_stopping_reused_for_another_run_starts_afresh():
    stopper = EarlyStopping("val_acc", patience=1)
    stops = []

    def run(history):
        trainer = types.SimpleNamespace(history=[], stop=stops.append)
        for record in history:
            trainer.history.append({"val_acc": record})
            stopper("epoch_end", trainer)

    run([0.9, 0.95])
    assert stopper.best == 0.95 and not stops
    run([0.5, 0.6, 0.7])  # never as good as the first run: it must not be stopped for that
    assert stops == [] and stopper.best == 0.7
    # a run resumed in a new trainer: its history so far counts, the rest is new
    resumed = types.SimpleNamespace(history=[{"val_acc": 0.8}, {"val_acc": 0.7}],
                                    stop=stops.append)
    stopper("epoch_end", resumed)
    assert stopper.best == 0.8 and len(stops) == 1


def test_stop_none_stops_with_the_default_reason(tiny_config, small_digits):
    def stop_now(event, trainer):
        if event == "batch_end" and trainer.batch == 2:
            trainer.stop(None)

    trainer = Trainer(tiny_config(epochs=2), dataset=small_digits, callbacks=[stop_now],
                      log=None)
    trainer.fit()
    assert trainer.stopped == {"reason": "stopped by a callback", "epoch": 0, "batch": 2}
    with pytest.raises(TypeError, match="reason must be a string or None, got int"):
        trainer.stop(3)


def test_a_demo_never_replaces_a_train_run(tmp_path):
    folder = tmp_path / "demo"
    with RunFolder.new(folder, kind="train"):
        pass
    (folder / "curves.png").write_bytes(b"the user's run")
    with pytest.raises(RunFolderError, match="holds a train run, not a demo run"):
        run_demo(out=folder, overwrite=True, epochs=1, depth=10, onnx=False, progress=False)
    assert (folder / "curves.png").read_bytes() == b"the user's run"
    assert read_marker(folder).kind == "train"


def test_a_run_never_writes_over_a_file_it_did_not_write(tmp_path):
    folder = tmp_path / "run"
    with RunFolder.new(folder) as run:
        atomic_write_bytes(folder / "last.pt", b"ours")
        (folder / "model.onnx").write_bytes(b"the user's model")
        with pytest.raises(RunFolderError, match=r"model\.onnx' was not written by this run"):
            atomic_write_bytes(folder / "model.onnx", b"export")
        atomic_write_bytes(folder / "last.pt", b"ours again")  # its own files: fine
        assert run.marker.files == ["last.pt"]
    assert (folder / "model.onnx").read_bytes() == b"the user's model"
    with RunFolder.new(folder, overwrite=True):
        pass
    assert (folder / "model.onnx").exists() and not (folder / "last.pt").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_run_files_honour_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "summary.json", b"{}")
        save_checkpoint({"w": torch.ones(1)}, tmp_path / "last.pt")
    finally:
        os.umask(previous)
    for name in ("summary.json", "last.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
    assert path.read_bytes() == b"{}"


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(MUTATIONS)
def test_fuzz_checkpoint_envelopes(tmp_path, mutation):
    """Any field of a checkpoint's envelope (or the whole of it) replaced by any JSON value:
    only CheckpointError, one line."""
    path = save_checkpoint({"w": torch.ones(2)}, tmp_path / "last.pt")
    envelope = torch.load(path, weights_only=True)
    junk, where = mutation
    torch.save(replace(envelope, where, junk), path)
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        assert "\n" not in str(exc)
