"""Runs saved by an earlier release (architecture format_version 1, before the v1 families lost
the ReLU before the pool) load, and resume, as they were trained, with a warning that says what
changed; any other difference is still refused."""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from dirac_core.nets import spec_to_dict
from dirac_core.untrusted import UntrustedInputError
from dirac_torch.models import build
from dirac_torch.saving import FORMAT_VERSION, METADATA_KEY, load_model
from diracnets import EarlierReleaseWarning, experiment, load_run
from diracnets.checkpoint import load_checkpoint, save_checkpoint
from diracnets.cli import main
from diracnets.config import TrainConfig
from diracnets.experiment import depth_experiment
from diracnets.saved import read_run_config
from diracnets.trainer import Trainer, TrainingInterrupted


def _record(folder):
    return json.loads((folder / "config.json").read_text())


def _write(folder, record):
    (folder / "config.json").write_text(json.dumps(record))


def _as_format_1(architecture):
    """``architecture`` as a format-1 release wrote it for the same settings: a ReLU first in
    the head, ``head_relu`` true, no ``family`` option."""
    old = copy.deepcopy(architecture)
    old["format_version"] = 1
    options = old["spec"]["options"]
    del options["family"]
    options["head_relu"] = True
    head = old["spec"]["stages"][-1]
    assert head["name"] == "head" and head["layers"][0]["type"] != "ReLU"
    head["layers"].insert(0, {"type": "ReLU"})
    return old


def _relu_head_keys(state):
    """``state`` with the classifier as the head's third layer (behind the format-1 ReLU)."""
    state = {key.replace("head.1.", "head.2."): value for key, value in state.items()}
    assert "head.2.weight" in state
    return state


def _write_format_1(folder):
    """Turn the run in ``folder`` into one a format-1 release wrote: ``config.json``'s
    architecture, ``model.safetensors`` and the checkpoints, whose classifier was the head's
    third layer."""
    record = _record(folder)
    old = _as_format_1(record["architecture"])
    _write(folder, {**record, "architecture": old})
    path = folder / "model.safetensors"
    save_file(_relu_head_keys(load_file(path)), path, metadata={METADATA_KEY: json.dumps(old)})
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(folder / name)
        save_checkpoint({**state, "model": _relu_head_keys(state["model"])}, folder / name)


def _described(config, architecture):
    """The architecture the settings ``config`` describe now, for the recorded data."""
    spec = architecture["spec"]
    settings = {k: v for k, v in config.items() if k not in ("architecture", "model_from_config")}
    now = TrainConfig.from_dict(settings, "settings").spec(
        spec["num_classes"], spec["in_channels"], spec["image_size"])
    return {"format_version": FORMAT_VERSION, "folded": False, "spec": spec_to_dict(now)}


def test_the_current_writer_records_the_current_format(run_copy):
    assert FORMAT_VERSION == 2
    assert _record(run_copy)["architecture"]["format_version"] == 2


def test_a_format_1_v1_run_loads_as_trained_with_a_warning(run_copy):
    new = load_run(run_copy)
    _write_format_1(run_copy)
    with pytest.warns(EarlierReleaseWarning) as caught:
        run = load_run(run_copy)
    message = str(caught[0].message)
    for part in ("format_version 1", "ReLU before the global pool", "pool the last batch norm",
                 "rebuilt as it was trained", "recorded accuracy is that network's"):
        assert part in message
    assert [type(layer).__name__ for layer in run.model.spec.stages[-1].layers][:2] == [
        "ReLU", "GlobalAvgPool"]
    # The same weights; the old head clips the pooled features at 0, the new one does not.
    images = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(run.folded(images), run.model(images), rtol=1e-4, atol=1e-4)
        features = new.model.forward_features(images)
        classifier = new.model.get_classifier()
        old_head = classifier(features.clamp(min=0).mean((2, 3)))
        torch.testing.assert_close(run.model(images), old_head, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(new.model(images), old_head, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("edit", ["depth", "stage", "format_2"])
def test_an_edited_run_is_still_refused(run_copy, edit):
    record = _record(run_copy)
    old = _as_format_1(record["architecture"])
    if edit == "depth":
        record["depth"] = 16  # the settings say 16, the weights are of 10
    elif edit == "stage":
        old["spec"]["stages"][1]["layers"].pop()
    else:
        old["format_version"] = 2  # the ReLU is no known change of the current format
    _write(run_copy, {**record, "architecture": old})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UntrustedInputError, match="edited or mixed up"):
            load_run(run_copy)


def test_a_format_1_run_whose_network_did_not_change_loads_silently(run_copy):
    record = _record(run_copy)
    record["architecture"]["format_version"] = 1  # written by this release before the bump
    for config in (record, {**record, "arch": "v2_cifar", "activation": "relu",
                            "per_channel": True}):
        architecture = _described(config, record["architecture"])
        architecture["format_version"] = 1
        if config["arch"] == "v2_cifar":  # the v2 head already had the ReLU: only the
            del architecture["spec"]["options"]["family"]  # family option is new
        _write(run_copy, {**config, "architecture": architecture})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert read_run_config(run_copy)[1] == architecture


@pytest.mark.parametrize("version", [1, 2])
def test_a_plain_run_recorded_under_its_earlier_name_loads(run_copy, version):
    # Earlier releases named the plain control DiracNet-10-1; the name is only a label.
    record = {**_record(run_copy), "parameterization": "plain", "alpha_init": None,
              "beta_init": None, "init_std": None}
    architecture = _described(record, record["architecture"])
    assert architecture["spec"]["name"] == "Plain-10-1"
    architecture["spec"]["name"] = "DiracNet-10-1"
    architecture["format_version"] = version
    if version == 1:
        architecture = _as_format_1({**architecture, "format_version": 2})
    _write(run_copy, {**record, "architecture": architecture})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if version == 1 else "error")
        assert read_run_config(run_copy)[1] == architecture
    edited = copy.deepcopy(architecture)
    edited["spec"]["stages"][1]["layers"].pop()  # anything but the name must still agree
    _write(run_copy, {**record, "architecture": edited})
    with pytest.raises(UntrustedInputError, match="edited or mixed up"):
        read_run_config(run_copy)


def test_a_format_1_paper_imagenet_run_names_the_family_it_now_is(run_copy):
    record = _record(run_copy)
    config = {**record, "arch": "jun2017_imagenet", "depth": 34, "per_channel": False}
    old = _as_format_1(_described(config, record["architecture"]))
    _write(run_copy, {**config, "arch": "paper_imagenet", "architecture": old})
    with pytest.warns(EarlierReleaseWarning, match="'paper_imagenet' then named the network "
                                                   "that is now 'jun2017_imagenet'") as caught:
        read_run_config(run_copy)
    assert "the same settings now describe no network" in str(caught[0].message)


def _relu_head(config, dataset):
    """The network a format-1 release trained for ``config``: a ReLU before the pool."""
    spec = config.spec(dataset.num_classes, dataset.in_channels, dataset.image_size,
                       head_relu=True)
    return build(spec, alpha_init=config.alpha_init, beta_init=config.beta_init,
                 init_std=config.init_std)


def _head(model):
    return [type(layer).__name__ for layer in model.spec.stages[-1].layers]


def test_a_format_1_run_resumes_exactly_the_network_it_was_trained_as(tiny_config, small_digits,
                                                                      tmp_path):
    whole = Trainer(tiny_config(out=str(tmp_path / "whole")), model_factory=_relu_head,
                    dataset=small_digits, log=None)
    whole.fit()

    def stop_in_epoch_2(event, trainer):
        if event == "batch_end" and (trainer.epoch, trainer.batch) == (1, 2):
            trainer.request_stop()

    config = tiny_config()
    with pytest.raises(TrainingInterrupted):
        Trainer(config, model_factory=_relu_head, dataset=small_digits,
                callbacks=[stop_in_epoch_2], log=None).fit()
    # what a format-1 release recorded for this run: the network built from its settings
    record = _record(tmp_path / "run")
    old = copy.deepcopy(record["architecture"])
    old["format_version"] = 1
    del old["spec"]["options"]["family"]
    _write(tmp_path / "run", {**record, "architecture": old, "model_from_config": True})

    with pytest.warns(EarlierReleaseWarning, match="resuming the run continues that network"):
        resumed = Trainer.from_checkpoint(config.out, dataset=small_digits, log=None)
    assert _head(resumed.model)[:2] == ["ReLU", "GlobalAvgPool"]
    resumed.fit()
    expected = whole.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    # the folder still records the run as its release wrote it, and loads as it did
    assert _record(tmp_path / "run")["architecture"] == old
    with pytest.warns(EarlierReleaseWarning):
        assert _head(load_run(tmp_path / "run", "last").model)[:2] == ["ReLU", "GlobalAvgPool"]


def test_diracnets_train_resume_finishes_a_format_1_run_as_trained(run_copy, capsys):
    _write_format_1(run_copy)
    assert main(["train", "--resume", str(run_copy), "--epochs", "2", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "epoch 2/2" in out
    # the warning is one line, as an error is
    (line,) = [line for line in err.splitlines() if "earlier release" in line]
    assert line.startswith(f"diracnets: warning: config.json {str(run_copy / 'config.json')!r}")
    assert "format_version 1" in line and "resuming the run continues that network" in line
    with pytest.warns(EarlierReleaseWarning):
        run = load_run(run_copy)
    assert len(run.history) == 2 and _head(run.model)[:2] == ["ReLU", "GlobalAvgPool"]
    # the weights files describe the network they hold: it needs no settings to rebuild
    for name in ("model.safetensors", "folded.safetensors"):
        assert "ReLU" in _head(load_model(run_copy / name))


@pytest.mark.parametrize("edit", ["format_2", "kernel"])
def test_resuming_an_edited_run_is_refused_naming_config_json(run_copy, digits, edit):
    _write_format_1(run_copy)
    record = _record(run_copy)
    if edit == "format_2":
        record["architecture"]["format_version"] = 2  # a ReLU head is no change of format 2
        message = "edited or mixed up"
    else:
        # a network that runs (its channels chain), but not the one the settings build
        record["architecture"]["spec"]["stages"][0]["layers"][0]["kernel_size"] = 5
        message = "not the network the settings describe"
    _write(run_copy, record)
    with pytest.raises(UntrustedInputError, match=f"config.json .*{message}"):
        Trainer.from_checkpoint(run_copy, dataset=digits, log=None)


def test_resuming_on_other_data_is_refused(run_copy, digits):
    fewer = dataclasses.replace(digits, num_classes=4)
    with pytest.raises(UntrustedInputError, match="trained on data of 10 classes"):
        Trainer.from_checkpoint(run_copy, dataset=fewer, log=None)


def test_without_config_json_a_run_resumes_from_its_settings(run_copy, digits):
    (run_copy / "config.json").unlink()
    trainer = Trainer.from_checkpoint(run_copy, {"epochs": 1}, dataset=digits, log=None)
    trainer.close()
    assert _head(trainer.model)[0] != "ReLU"


def test_a_finished_format_1_experiment_cell_is_reused_with_the_warning(tmp_path, monkeypatch):
    settings = {"epochs": 1, "batch_size": 32, "train_limit": 64, "progress": False,
                "device": "cpu"}
    (first,) = depth_experiment((10,), kinds=("dirac",), out=tmp_path, **settings)
    cell = tmp_path / "dirac-10"
    record = _record(cell)
    _write(cell, {**record, "architecture": _as_format_1(record["architecture"])})

    class Trained(Exception):
        """The cell was about to be trained again."""

    def must_not_train(*_args):
        raise Trained

    monkeypatch.setattr(experiment, "_trainer", must_not_train)
    with pytest.warns(EarlierReleaseWarning, match="format_version 1"):
        (again,) = depth_experiment((10,), kinds=("dirac",), out=tmp_path, **settings)
    assert again["val_acc"] == first["val_acc"]
    # a record that does not read (settings of depth 16, a network of depth 10) is no
    # finished cell: it is trained again
    _write(cell, {**record, "depth": 16})
    with pytest.raises(Trained):
        depth_experiment((10,), kinds=("dirac",), out=tmp_path, **settings)
