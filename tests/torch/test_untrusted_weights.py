"""Weight files and state dicts from outside (dirac_torch.untrusted): checked before anything
is built, every refusal a ValueError naming the file."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from fuzz_inputs import MUTATIONS, replace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from dirac_core import nets
from dirac_core.untrusted import UntrustedInputError
from dirac_torch import models
from dirac_torch.saving import METADATA_KEY, architecture, load_model, read_architecture
from dirac_torch.untrusted import check_parameter_count, safetensors_header, stored_tensors

FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _with_metadata(path, description, tensors=None):
    text = description if isinstance(description, str) else json.dumps(description)
    save_file(tensors or {"w": torch.ones(2)}, str(path), metadata={METADATA_KEY: text})
    return path


@pytest.mark.parametrize(("description", "message"), [
    (None, "expected a JSON object, got null"),
    ([1, 2], "expected a JSON object, got list"),
    ("a string", "expected a JSON object, got str"),
    ({"format_version": 1, "folded": False}, r"lacks the fields \['spec'\]"),
    ({"format_version": 1, "folded": "no", "spec": {}}, "folded='no' is a string"),
    ({"format_version": 1, "folded": False, "spec": []}, "spec=.* is a list"),
])
def test_load_model_metadata_of_the_wrong_shape(tmp_path, description, message):
    path = _with_metadata(tmp_path / "m.safetensors", json.dumps(description))
    with pytest.raises(UntrustedInputError, match=message):
        load_model(path)


def test_negative_sizes_and_wrong_types_in_the_spec(tmp_path):
    good = architecture(models.diracnet_cifar(10))
    for layer_edit, message in (({"out_channels": -16}, r"out_channels=-16; accepted: an int"),
                                ({"in_channels": "3"}, "in_channels='3' is a string"),
                                ({"kernel_size": 10**9}, "kernel_size=1000000000")):
        description = json.loads(json.dumps(good))
        description["spec"]["stages"][0]["layers"][0].update(layer_edit)
        with pytest.raises(UntrustedInputError, match=message):
            load_model(_with_metadata(tmp_path / "m.safetensors", description))
    description = json.loads(json.dumps(good))
    description["spec"]["num_classes"] = -1
    with pytest.raises(UntrustedInputError, match="num_classes=-1"):
        read_architecture(_with_metadata(tmp_path / "m.safetensors", description))


def test_a_huge_described_network_is_refused_before_it_is_built(tmp_path, monkeypatch):
    """300 512x512 convs (3 GB of float32) described in a few KB: refused from the parameter
    count against the values the file stores, before any module is made."""
    conv = {"type": "Conv", "in_channels": 512, "out_channels": 512, "kernel_size": 3,
            "stride": 1, "padding": "same", "bias": False, "parameterization": "none",
            "per_channel": False, "policy": "tile"}
    spec = nets.spec_to_dict(nets.diracnet_cifar(10))
    stem, head = {**conv, "in_channels": 3}, {"type": "Linear", "in_features": 512,
                                               "out_features": 10}
    spec["stages"] = [{"name": "stem", "layers": [stem]},
                      {"name": "group0", "layers": [conv] * 300},
                      {"name": "head", "layers": [{"type": "GlobalAvgPool"}, head]}]
    description = {**architecture(models.diracnet_cifar(10)), "spec": spec}
    path = _with_metadata(tmp_path / "huge.safetensors", description)

    def never(*_args, **_kw):
        raise AssertionError("the network was built")

    monkeypatch.setattr(models, "build", never)
    with pytest.raises(UntrustedInputError, match=r"has 707,\d+,\d+ parameters but the file "
                                                  r"stores 2 values"):
        load_model(path)


def test_a_file_that_is_not_safetensors_is_named(tmp_path):
    path = tmp_path / "junk.safetensors"
    for content in (b"", b"abc", struct.pack("<Q", 10**12) + b"{}",
                    struct.pack("<Q", 4) + b"[1] ", struct.pack("<Q", 2) + b"{}"):
        path.write_bytes(content)
        with pytest.raises(UntrustedInputError, match=r"junk\.safetensors"):
            load_model(path)
    # a header whose byte ranges lie outside the file
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]},
                         "__metadata__": {METADATA_KEY: "{}"}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(UntrustedInputError, match="does not match its bytes"):
        safetensors_header(path)
    with pytest.raises(UntrustedInputError, match="is a directory"):
        load_model(tmp_path)


def test_expanded_tensors_are_refused():
    small = torch.ones(4)
    with pytest.raises(UntrustedInputError, match="expanded or overlapping"):
        stored_tensors({"conv": small.expand(10**6, 4)}, "authors' file")
    with pytest.raises(UntrustedInputError, match="is a list, not a tensor"):
        stored_tensors({"conv": [1, 2]}, "authors' file")
    with pytest.raises(UntrustedInputError, match="got list"):
        stored_tensors([torch.ones(1)], "authors' file")
    assert stored_tensors({"w": small}, "f")["w"] is small


def test_parameter_count_limit():
    spec = nets.diracnet_cifar(10)
    count = nets.count_parameters(spec)
    assert check_parameter_count(spec, count, "f") == count
    with pytest.raises(UntrustedInputError, match="at most 10 are built"):
        check_parameter_count(spec, count, "f", limit=10)


GOOD = architecture(models.diracnet_cifar(10, num_classes=3))


@FAST
@given(MUTATIONS)
def test_fuzz_load_model_metadata(tmp_path, monkeypatch, mutation):
    """Any edit of a valid description: a documented error, or (when the edit still
    describes a valid network) weights that do not fit; never another exception, and never a
    network larger than the file's values built."""
    junk, where = mutation
    built = []
    real_build = models.build
    monkeypatch.setattr(models, "build", lambda spec, **kw: built.append(spec)
                        or real_build(spec, **kw))
    path = _with_metadata(tmp_path / "f.safetensors", json.dumps(replace(GOOD, where, junk)))
    with pytest.raises((UntrustedInputError, ValueError)):
        load_model(path)
    assert all(nets.count_parameters(spec) <= 2 for spec in built)



def test_authors_files_are_checked_before_building(tmp_path):
    from dirac_torch.pretrained import AuthorsCheckpointError, authors_model, authors_state_dict
    from dirac_torch.registry import create_model

    theirs = authors_state_dict(create_model("diracnet10_1_v2_cifar"))
    for key, value, message in (
            ("conv", torch.ones(()), r"'conv' has shape \(\); a conv weight has 4"),
            ("conv", torch.ones(16), r"'conv' has shape \(16,\)"),
            ("fc.weight", torch.ones(10), r"'fc.weight' has shape \(10,\); a linear weight"),
            ("fc.weight", torch.ones(4).expand(10**6, 4), "expanded or overlapping"),
            ("conv", [1.0], "is a list, not a tensor")):
        with pytest.raises(AuthorsCheckpointError, match=message):
            authors_model({**theirs, key: value})
    with pytest.raises(AuthorsCheckpointError, match="expected a mapping"):
        authors_model({"params": [torch.ones(1)]})
    # a saved view of 4 bytes that describes a 4096-wide stem: refused, nothing is built
    wide = {**theirs, "conv": torch.zeros(1).expand(4096, 3, 3, 3)}
    torch.save(wide, tmp_path / "wide.pth")
    loaded = torch.load(tmp_path / "wide.pth", weights_only=True)
    assert loaded["conv"].untyped_storage().nbytes() == 4
    with pytest.raises(AuthorsCheckpointError, match="expanded or overlapping"):
        authors_model(loaded)
    assert isinstance(authors_model(theirs), torch.nn.Module)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64), st.integers(0, 2**64 - 1))
def test_fuzz_safetensors_header_bytes(tmp_path, body, length):
    """Any header length and bytes: a documented error naming the file, and nothing read past
    the file's own size."""
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(struct.pack("<Q", length) + body)
    try:
        safetensors_header(path)
    except UntrustedInputError as exc:
        assert "fuzz.safetensors" in str(exc)


@settings(max_examples=30, deadline=None)
@given(MUTATIONS)
def test_fuzz_authors_model(mutation):
    """Any entry of an authors' file (or the whole file) replaced by junk: only the documented
    errors."""
    from dirac_torch.pretrained import AuthorsCheckpointError, authors_model

    junk, where = mutation
    with pytest.raises((AuthorsCheckpointError, TypeError)):
        authors_model(replace(THEIRS, where, junk))


def _theirs():
    from dirac_torch.pretrained import authors_state_dict
    from dirac_torch.registry import create_model

    return authors_state_dict(create_model("diracnet10_1_v2_cifar"))


THEIRS = _theirs()


def test_a_bad_map_location_is_named_not_blamed_on_the_file(tmp_path):
    """It read as "model file ... cannot be read: device ... is invalid"; the safetensors
    loader now checks it first, as layers check ``device``."""
    path = tmp_path / "net.safetensors"
    from dirac_torch.saving import save_model

    save_model(models.diracnet_cifar(10), path)
    with pytest.raises(ValueError, match=r"^map_location='no-such-device' is not a torch device"):
        load_model(path, map_location="no-such-device")
    with pytest.raises(ValueError, match=r"^map_location='cuda:7' is not available"):
        load_model(path, map_location="cuda:7")
    with pytest.raises(ValueError, match=r"^map_location='meta' holds no values"):
        load_model(path, map_location="meta")  # blamed on the file too
    assert next(load_model(path, map_location=None).parameters()).device.type == "cpu"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_weights_are_refused_by_load_model_and_authors_model(tmp_path, bad):
    from dirac_torch.pretrained import AuthorsCheckpointError, authors_model, authors_state_dict
    from dirac_torch.registry import create_model
    from dirac_torch.saving import save_model

    model = create_model("diracnet10_1_v2_cifar")
    with torch.no_grad():
        model.head[-1].bias[3] = bad  # head.2: a v2 network's head has a ReLU
    save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(UntrustedInputError,
                       match=r"m.safetensors'.*NaN or infinite values in \['head.2.bias'\]"):
        load_model(tmp_path / "m.safetensors")
    with pytest.raises(AuthorsCheckpointError,
                       match=r"NaN or infinite values in \['fc.bias'\]"):
        authors_model(authors_state_dict(model))
    many = {f"w{i}": torch.full((2,), bad) for i in range(5)}
    with pytest.raises(UntrustedInputError,
                       match=r"^'f': NaN or infinite values in \['w0', 'w1', 'w2'\] and 2 more"):
        stored_tensors({"ok": torch.ones(2), **many, "n": torch.tensor([7])}, "'f'")


def test_integer_or_bool_values_for_floating_weights_are_refused(tmp_path):
    """A file's int64 or bool tensor is not silently cast into a floating weight, whichever
    door reads it (our layout, the authors')."""
    from dirac_torch.pretrained import AuthorsCheckpointError, authors_model, authors_state_dict
    from dirac_torch.registry import create_model

    model = create_model("diracnet10_1_v2_cifar")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["head.2.bias"] = torch.arange(10)
    _with_metadata(tmp_path / "int.safetensors", architecture(model), state)
    # one rule, one message at both doors: the source, its key and the model's weight
    with pytest.raises(UntrustedInputError,
                       match=r"int.safetensors': 'head.2.bias' holds torch.int64 values where "
                             r"the model's 'head.2.bias' is a floating-point weight$"):
        load_model(tmp_path / "int.safetensors")
    theirs = authors_state_dict(model)
    theirs["fc.bias"] = torch.ones(10, dtype=torch.bool)
    with pytest.raises(AuthorsCheckpointError,
                       match=r"^checkpoint: 'fc.bias' holds torch.bool values where the "
                             r"model's 'head.2.bias' is a floating-point weight$"):
        authors_model(theirs)
