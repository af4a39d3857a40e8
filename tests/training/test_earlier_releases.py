"""Runs saved by an earlier release (architecture format_version 1, before the v1 families lost
the ReLU before the pool) load as they were trained, with a warning that says what changed;
any other difference is still refused."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from dirac_core.nets import spec_to_dict
from dirac_core.untrusted import UntrustedInputError
from dirac_torch.saving import FORMAT_VERSION, METADATA_KEY
from diracnets import EarlierReleaseWarning, load_run
from diracnets.config import TrainConfig
from diracnets.saved import read_run_config


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


def _write_format_1(folder):
    """Turn the run in ``folder`` into one a format-1 release wrote: ``config.json``'s
    architecture and ``model.safetensors``, whose classifier was the head's third layer."""
    record = _record(folder)
    old = _as_format_1(record["architecture"])
    _write(folder, {**record, "architecture": old})
    path = folder / "model.safetensors"
    state = {key.replace("head.1.", "head.2."): value for key, value in load_file(path).items()}
    assert "head.2.weight" in state
    save_file(state, path, metadata={METADATA_KEY: json.dumps(old)})


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


def test_a_format_1_paper_imagenet_run_names_the_family_it_now_is(run_copy):
    record = _record(run_copy)
    config = {**record, "arch": "jun2017_imagenet", "depth": 34, "per_channel": False}
    old = _as_format_1(_described(config, record["architecture"]))
    _write(run_copy, {**config, "arch": "paper_imagenet", "architecture": old})
    with pytest.warns(EarlierReleaseWarning, match="'paper_imagenet' then named the network "
                                                   "that is now 'jun2017_imagenet'") as caught:
        read_run_config(run_copy)
    assert "the same settings now describe no network" in str(caught[0].message)
