"""Run folders read back as untrusted input: load_run, config.json, metrics.jsonl, results.json
and checkpoints refuse what is not theirs with one documented error, never a traceback or a
silent mix-up."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from fuzz_inputs import MUTATIONS, replace
from hypothesis import HealthCheck, given, settings

from dirac_core.untrusted import UntrustedInputError
from diracnets import load_run
from diracnets.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diracnets.cli import main
from diracnets.metrics import read_metrics
from diracnets.plots import read_results
from diracnets.saved import read_run_config

FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def run(run_copy):
    return run_copy


def _edit_config(folder, value):
    (folder / "config.json").write_text(value if isinstance(value, str) else json.dumps(value))


def test_config_json_that_is_not_a_record(run):
    for value, message in (([1, 2], r"config.json=\[1, 2\] is a list"),
                           ("null", "config.json=None is null"),
                           ("[" * 5000 + "]" * 5000, "nested deeper than 32"),
                           ("{", "not valid JSON")):
        _edit_config(run, value)
        with pytest.raises(UntrustedInputError, match=message):
            load_run(run)


def test_an_architecture_that_is_a_string_or_disagrees_with_the_settings(run):
    record = json.loads((run / "config.json").read_text())
    _edit_config(run, {**record, "architecture": "DiracNet-10"})
    with pytest.raises(UntrustedInputError, match="expected a JSON object, got string"):
        load_run(run)
    _edit_config(run, {**record, "depth": 16})  # the settings say 16, the weights are of 10
    with pytest.raises(UntrustedInputError, match=r"recorded architecture \(DiracNet-10-1\) is "
                                                  r"not the network the settings describe"):
        load_run(run)
    _edit_config(run, {**record, "model_from_config": False, "depth": 16})
    assert load_run(run).config.depth == 16  # a model of the user's own: not compared


def test_a_checkpoint_of_another_run_or_without_a_model(run):
    state = load_checkpoint(run / "last.pt")
    save_checkpoint({**state, "run_id": "0" * 32}, run / "best.pt")  # copied in from elsewhere
    with pytest.raises(CheckpointError, match="is not of the run in its folder"):
        load_run(run, "best")
    without = {k: v for k, v in state.items() if k != "model"}
    save_checkpoint(without, run / "last.pt")
    with pytest.raises(CheckpointError, match="holds no model weights"):
        load_run(run, "last")
    save_checkpoint({**state, "model": {"w": torch.ones(2).expand(10**6, 2)}}, run / "last.pt")
    with pytest.raises(CheckpointError, match="expanded or overlapping"):
        load_run(run, "last")
    for payload in (["not", "a", "dict"], None):
        save_checkpoint(payload, run / "last.pt")
        with pytest.raises(CheckpointError):
            load_run(run, "last")


def test_nan_or_infinite_weights_in_a_run_are_refused(run):
    from safetensors.torch import load_file, save_file

    state = load_checkpoint(run / "last.pt")
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = torch.full_like(state["model"][key], float("inf"))
    save_checkpoint(state, run / "last.pt")
    with pytest.raises(CheckpointError, match=rf"last.pt'.*NaN or infinite values in \['{key}'\]"):
        load_run(run, "last")
    weights = load_file(str(run / "model.safetensors"))
    key = next(k for k, v in weights.items() if v.is_floating_point())
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, str(run / "model.safetensors"))
    with pytest.raises(UntrustedInputError,
                       match=rf"model.safetensors'.*NaN or infinite values in \['{key}'\]"):
        load_run(run)


def test_summary_json_is_read_as_untrusted(run):
    (run / "summary.json").write_text("[" * 100 + "]" * 100)
    with pytest.raises(UntrustedInputError, match=r"summary.json .* nested deeper"):
        load_run(run)


def test_metrics_and_results_are_read_as_untrusted(run, capsys):
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": ' + "[" * 10**5 + "\n")
    with pytest.raises(UntrustedInputError, match=r"metrics.jsonl:1: "):
        read_metrics(run / "metrics.jsonl")
    assert main(["plot", str(run)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "metrics.jsonl:1" in error
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": "x", "train_acc": 1, '
                                       '"val_loss": 1, "val_acc": 1}\n')
    with pytest.raises(UntrustedInputError, match="train_loss='x' is a string"):
        read_metrics(run / "metrics.jsonl")
    results = run / "results.json"
    for value, message in (({"rows": [{"depth": "10"}]}, "parameterization=None"),
                           ({"rows": 3}, "rows=3 is an int"),
                           ([], "is a list; accepted: an object")):
        results.write_text(json.dumps(value))
        with pytest.raises(UntrustedInputError, match=message):
            read_results(results)


@FAST
@given(MUTATIONS)
def test_fuzz_read_run_config(one_epoch_run, tmp_path, mutation):
    junk, where = mutation
    record = json.loads((one_epoch_run / "config.json").read_text())
    folder = tmp_path / "fuzz"
    folder.mkdir(exist_ok=True)
    _edit_config(folder, json.dumps(replace(record, where, junk)))
    with contextlib.suppress(UntrustedInputError):
        read_run_config(folder)


@FAST
@given(MUTATIONS)
def test_fuzz_read_metrics(tmp_path, mutation):
    junk, where = mutation
    record = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.9, "val_loss": 0.4, "val_acc": 0.9,
              "group0.0.alpha": [1.0, 2.0]}
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(replace(record, where, junk)) + "\n")
    with contextlib.suppress(UntrustedInputError):
        read_metrics(path)


@FAST
@given(MUTATIONS)
def test_fuzz_run_marker_and_results(tmp_path, mutation):
    """A run marker or a depth experiment's results.json with any value replaced: the marker
    is valid or not a marker (None), the results are read or refused with
    UntrustedInputError."""
    from diracnets.rundir import MARKER, Marker, read_marker

    junk, where = mutation
    marker = json.loads(Marker("0" * 32, "train", None, ["last.pt"]).to_json())
    (tmp_path / MARKER).write_text(json.dumps(replace(marker, where, junk)))
    found = read_marker(tmp_path)
    assert found is None or isinstance(found.run_id, str)
    results = {"rows": [{"parameterization": "dirac", "depth": 10, "train_loss": 0.5,
                         "val_acc": 0.9}]}
    (tmp_path / "results.json").write_text(json.dumps(replace(results, where, junk)))
    try:
        rows = read_results(tmp_path / "results.json")
    except UntrustedInputError:
        return
    assert all(isinstance(row["depth"], int) for row in rows)


def test_a_checkpoints_bad_map_location_is_named_before_the_file_is_read(tmp_path):
    save_checkpoint({"w": torch.ones(2)}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"^map_location='gpu' is not a torch device"):
        load_checkpoint(tmp_path / "c.pt", map_location="gpu")
    with pytest.raises(ValueError, match=r"^map_location='gpu' is not a torch device"):
        load_checkpoint(tmp_path / "missing.pt", map_location="gpu")
    assert load_checkpoint(tmp_path / "c.pt", map_location="cpu")["w"].tolist() == [1.0, 1.0]
