"""A run folder belongs to one run: new runs only in new or empty folders, resumes only in the
run's own folder, one process at a time, ``--overwrite`` replacing only the run's files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from diracnets import rundir
from diracnets.atomic import announce_write
from diracnets.checkpoint import load_checkpoint
from diracnets.cli import main
from diracnets.experiment import depth_experiment
from diracnets.rundir import LOCK, MARKER, RunFolder, RunFolderBusy, RunFolderError

TINY = ["--depth", "10", "--batch-size", "32", "--train-limit", "64", "--no-progress",
        "--device", "cpu", "--epochs", "1"]


def _files(folder) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes (the lock file's state aside)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("diracnets: error: ") and err.count("\n") == 1, err
    return err


def test_resume_writes_only_into_the_checkpoints_own_run_folder(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", *TINY, "--out", str(a)]) == 0
    assert main(["train", *TINY, "--seed", "1", "--out", str(b)]) == 0
    capsys.readouterr()
    before_b = _files(b)

    # --out naming another run: refused, that run untouched
    assert main(["train", "--resume", str(a / "last.pt"), "--out", str(b), "--epochs", "2"]) == 2
    assert "continues in its own folder" in _one_line_error(capsys)
    assert _files(b) == before_b

    # a checkpoint copied into another run's folder, or into an empty one: not its folder
    shutil.copy(a / "last.pt", b / "copied.pt")
    before_b = _files(b)
    (tmp_path / "c").mkdir()
    shutil.copy(a / "last.pt", tmp_path / "c" / "last.pt")
    for copy in (b / "copied.pt", tmp_path / "c" / "last.pt"):
        assert main(["train", "--resume", str(copy), "--epochs", "2"]) == 2
        assert "not the folder of the run that wrote it" in _one_line_error(capsys)
    assert _files(b) == before_b
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["last.pt"]

    # the whole run folder moved: it resumes there; the (absolute) folder stored in the
    # checkpoint is never written to; leftovers of a killed write are cleaned up
    moved = tmp_path / "moved"
    shutil.move(a, moved)
    (moved / ".last.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (moved / ".curves.png.tmp.png").write_bytes(b"half a plot")
    assert main(["train", "--resume", str(moved / "last.pt"), "--epochs", "2"]) == 0
    assert not a.exists()
    assert json.loads((moved / "summary.json").read_text())["run_dir"] == str(moved)
    assert json.loads((moved / "config.json").read_text())["out"] == str(moved)
    assert not [p for p in moved.iterdir() if rundir.is_temporary(p.name)]
    marker = json.loads((moved / MARKER).read_text())
    assert load_checkpoint(moved / "last.pt")["run_id"] == marker["run_id"]


@pytest.mark.parametrize("files", [{"config.json": "{}"}, {"summary.json": "[]"},
                                   {"model.onnx": "mine", "last.pt": "mine too"}])
def test_a_folder_that_holds_no_run_is_never_written_to(tmp_path, capsys, files):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    for extra in ([], ["--overwrite"]):
        assert main(["train", *TINY, "--out", str(folder), *extra]) == 2
        assert "holds no diracnets run" in _one_line_error(capsys)
    assert main(["demo", "--out", str(folder), "--no-onnx", "--no-progress"]) == 2
    assert "holds no diracnets run" in _one_line_error(capsys)
    assert _files(folder) == {name: text.encode() for name, text in files.items()}
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # not even a lock file


def test_out_must_be_a_folder_of_its_own(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("the user's")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    for out, message in (("", "give a run folder"), ("notes.txt", "is a file"),
                         ("notes.txt/run", "is a file"),
                         ("dangling", "is a symbolic link to"),
                         ("dangling/run", "which does not exist")):
        assert main(["train", *TINY, "--out", out]) == 2
        assert message in _one_line_error(capsys)
        assert main(["demo", "--out", out]) == 2
        assert message in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "notes.txt"]


def test_demo_replaces_an_earlier_run_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    demo = ["demo", "--out", str(out), "--epochs", "1", "--depth", "10", "--no-onnx",
            "--no-progress"]
    assert main(demo) == 0
    capsys.readouterr()
    before = _files(out)
    assert main(demo) == 2
    assert "already holds a run" in _one_line_error(capsys)
    assert _files(out) == before


def test_a_second_process_on_a_running_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    train = [sys.executable, "-m", "diracnets.cli", "train", *TINY, "--epochs", "1000",
             "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(train, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists():  # an epoch has finished: it is training
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.1)
        # even --overwrite, which would replace a finished run, cannot touch a running one
        second = subprocess.run([*train, "--overwrite"], capture_output=True, text=True,
                                env=env, timeout=120)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1, second.stderr
        assert "in use by another diracnets process" in second.stderr
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    saved = load_checkpoint(out / "last.pt")
    assert saved["epoch"] >= 1
    assert saved["run_id"] == json.loads((out / MARKER).read_text())["run_id"]


def test_overwrite_replaces_only_the_files_the_run_wrote(tmp_path):
    folder = tmp_path / "run"
    with RunFolder.new(folder) as run:
        first_id = run.run_id
        for name in ("last.pt", "metrics.jsonl"):
            announce_write(folder / name)
            (folder / name).write_text("the run's")
    (folder / "model.onnx").write_text("the user's")  # not written by the run
    with pytest.raises(RunFolderError, match="already holds a run"):
        RunFolder.new(folder)
    with RunFolder.new(folder, overwrite=True) as run:
        assert run.run_id != first_id and len(run.run_id) == 32
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, LOCK, "model.onnx"]


def test_the_lock_and_the_marker_decide_not_the_file_names(tmp_path):
    folder = tmp_path / "run"
    held = RunFolder.new(folder)
    with pytest.raises(RunFolderBusy, match="in use by another diracnets process"):
        RunFolder.new(folder, overwrite=True)
    with pytest.raises(RunFolderBusy):
        RunFolder.reopen(folder, held.run_id)
    held.release()
    with pytest.raises(RunFolderError, match="not the folder of the run"):
        RunFolder.reopen(folder, "another run's id")
    RunFolder.reopen(folder, held.run_id).release()
    # a marker that lists a path outside the folder is not a marker: nothing is deleted
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    marker = json.loads((folder / MARKER).read_text())
    (folder / MARKER).write_text(json.dumps({**marker, "files": ["../victim.txt"]}))
    with pytest.raises(RunFolderError, match="holds no diracnets run"):
        RunFolder.new(folder, overwrite=True)
    assert victim.read_text() == "keep me"


def test_experiment_never_touches_a_run_that_is_not_its_own(tmp_path):
    settings = {"epochs": 1, "batch_size": 32, "train_limit": 64, "progress": False,
                "device": "cpu"}
    # a folder holding the user's run is not an experiment folder
    with RunFolder.new(tmp_path / "runs" / "plain-10") as run:
        (run.path / "last.pt").write_text("the user's run")
    with pytest.raises(RunFolderError, match="holds no diracnets run"):
        depth_experiment((10,), out=tmp_path / "runs", **settings)
    # an experiment folder where a cell holds a run of someone else's
    out = tmp_path / "exp"
    RunFolder.new(out, kind="experiment").release()
    with RunFolder.new(out / "plain-10") as run:
        (run.path / "last.pt").write_text("another run")
    before = _files(out)
    with pytest.raises(RunFolderError, match="not part of this experiment"):
        depth_experiment((10,), out=out, **settings)
    assert _files(out) == before
