"""Network specs: shapes chain, parameter counts, variants."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dirac_core import catalog, nets
from dirac_core.padding import output_size, resolve_padding


def _walk(spec):
    """Follow channels through the spec, asserting each layer accepts what the last produced."""
    c = spec.in_channels
    for name, layer in spec.layers():
        if isinstance(layer, nets.Conv):
            assert layer.in_channels == c, name
            c = layer.out_channels
        elif isinstance(layer, (nets.BatchNorm, nets.NCReLU)):
            assert layer.channels == c, name
            c = 2 * c if isinstance(layer, nets.NCReLU) else c
        elif isinstance(layer, nets.Linear):
            assert layer.in_features == c, name
            c = layer.out_features
    return c


@pytest.mark.parametrize("depth", [10, 16, 28, 34])
@pytest.mark.parametrize("activation", ["ncrelu", "relu"])
def test_cifar_shapes_chain_and_depth(depth, activation):
    spec = nets.diracnet_cifar(depth, 2, activation=activation)
    assert _walk(spec) == 10
    convs = [layer for _, layer in spec.layers() if isinstance(layer, nets.Conv)]
    assert len(convs) == 1 + 6 * ((depth - 4) // 6)
    assert sum(isinstance(layer, nets.MaxPool) for _, layer in spec.layers()) == 2


def test_cifar_parameter_count_by_hand():
    # depth 10, width 1: n = 1, two Dirac layers per group, NCReLU doubles conv inputs.
    spec = nets.diracnet_cifar(10, 1)
    stem = 3 * 16 * 9 + 2 * 16
    layer = lambda cin, cout: 2 * cin * cout * 9 + 2 + 2 * cout  # noqa: E731
    groups = (layer(16, 16) * 2) + (layer(16, 32) + layer(32, 32)) + (layer(32, 64) + layer(64, 64))
    assert nets.count_parameters(spec) == stem + groups + 64 * 10 + 10


def test_variants_change_only_what_they_should():
    base = nets.count_parameters(nets.diracnet_cifar(16, 1))
    plain = nets.count_parameters(nets.diracnet_cifar(16, 1, parameterization="plain"))
    resnet = nets.count_parameters(nets.diracnet_cifar(16, 1, parameterization="resnet"))
    per = nets.count_parameters(nets.diracnet_cifar(16, 1, per_channel=True))
    dirac_convs = 6 * 2
    assert base - plain == 2 * dirac_convs and plain == resnet
    widths = [16] * 4 + [32] * 4 + [64] * 4
    assert per - plain == sum(2 * w for w in widths)


@pytest.mark.parametrize("depth,layers", [(18, 16), (34, 32)])
def test_imagenet(depth, layers):
    spec = nets.diracnet_imagenet(depth, 1)
    assert _walk(spec) == 1000
    dirac = [ly for _, ly in spec.layers() if isinstance(ly, nets.Conv) and ly.parameterization
             == "dirac"]
    assert len(dirac) == layers
    assert spec.stages[0].layers[0].kernel_size == 7 and spec.stages[0].layers[0].stride == 2


@pytest.mark.parametrize("kwargs,word", [
    ({"depth": 12}, "depth"), ({"depth": 4}, "depth"), ({"width": 0}, "width"),
    ({"activation": "gelu"}, "activation"), ({"parameterization": "skip"}, "parameterization"),
    ({"num_classes": 0}, "num_classes"),
])
def test_bad_specs(kwargs, word):
    with pytest.raises(ValueError, match=word):
        nets.diracnet_cifar(**kwargs)


@pytest.mark.parametrize("build, depth", [
    (nets.diracnet_cifar, 10), (lambda d: nets.diracnet_imagenet(d, 0.5), 18),
    (lambda d: catalog.FAMILIES["jun2017_imagenet"].spec(d, 0.5), 34),
])
def test_depth_is_an_int_by_the_rule_of_every_int(build, depth):
    # A NumPy integer is an int (and the spec holds a Python int); a float is the wrong type.
    spec = build(np.int64(depth))
    assert spec == build(depth) and type(spec.options["depth"]) is int
    assert json.loads(json.dumps(nets.spec_to_dict(spec)))["options"]["depth"] == depth
    for wrong in (float(depth), True, "10"):
        with pytest.raises(TypeError, match=rf"^depth must be a positive int, got "
                                            rf"{type(wrong).__name__}: {wrong!r}$"):
            build(wrong)


def test_counts_from_numpy_are_python_ints_in_the_spec():
    spec = nets.diracnet_cifar(10, num_classes=np.int64(3), in_channels=np.int32(1),
                               image_size=np.int16(8))
    assert [type(n) for n in (spec.num_classes, spec.in_channels, spec.image_size)] == [int] * 3
    assert spec == nets.diracnet_cifar(10, num_classes=3, in_channels=1, image_size=8)


@settings(max_examples=40, deadline=None)
@given(depth=st.sampled_from([10, 16, 22]), width=st.integers(1, 3),
       num_classes=st.integers(1, 20), in_channels=st.integers(1, 4),
       activation=st.sampled_from(nets.ACTIVATIONS),
       parameterization=st.sampled_from(nets.PARAMETERIZATIONS), per_channel=st.booleans(),
       imagenet=st.booleans())
def test_specs_survive_json(depth, width, num_classes, in_channels, activation,
                            parameterization, per_channel, imagenet):
    build = nets.diracnet_imagenet if imagenet else nets.diracnet_cifar
    spec = build(18 if imagenet else depth, width, num_classes, activation=activation,
                 parameterization=parameterization, per_channel=per_channel,
                 in_channels=in_channels)
    again = nets.spec_from_dict(json.loads(json.dumps(nets.spec_to_dict(spec))))
    assert again == spec and again.options == spec.options
    assert nets.count_parameters(again) == nets.count_parameters(spec)


def test_a_bad_description_names_what_is_wrong():
    data = nets.spec_to_dict(nets.diracnet_cifar(10))
    data["stages"][0]["layers"][0]["type"] = "Conv3d"
    with pytest.raises(ValueError, match="layer type='Conv3d' is not accepted"):
        nets.spec_from_dict(data)
    data["stages"][0]["layers"][0] = {"type": "ReLU", "channels": 3}
    with pytest.raises(ValueError, match=r"\(ReLU\): unknown fields \['channels'\]"):
        nets.spec_from_dict(data)
    del data["stages"]
    with pytest.raises(ValueError, match=r"lacks the fields \['stages'\]"):
        nets.spec_from_dict(data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(in_channels=1),
         r"layer stem.0 \(Conv\) has in_channels=3, but the layers before it give 1 channels"),
        (lambda d: d["stages"][0]["layers"][1].update(channels=8),
         r"layer stem.1 \(BatchNorm\) has channels=8, but the layers before it give 16"),
        (lambda d: d["stages"][-1]["layers"][-1].update(in_features=32),
         r"\(Linear\) has in_features=32, but the layers before it give 64 channels"),
        (lambda d: d.update(num_classes=100),
         r"the network ends with 10 outputs, but num_classes=100"),
    ],
)
def test_a_description_whose_channels_do_not_chain_is_refused(edit, message):
    """Each field in range, yet no network that runs: refused before anything is built."""
    data = nets.spec_to_dict(nets.diracnet_cifar(10))
    edit(data)
    with pytest.raises(ValueError, match=message):
        nets.spec_from_dict(data, "model.safetensors")


def test_the_defaults_are_the_papers_v1_and_v2_is_the_authors_master():
    spec = nets.diracnet_cifar(10)
    assert spec.options["activation"] == "ncrelu" and spec.options["per_channel"] is False
    assert spec.options["policy"] == "tile" and spec.stages[-1].layers[0] == nets.GlobalAvgPool()
    v2 = catalog.family("v2_cifar")
    assert dict(v2.fixed) == {"activation": "relu", "per_channel": True, "policy": "min",
                              "head_relu": True}
    assert (v2.init.alpha, v2.init.beta, v2.init.weight) == (1.0, 0.1, "he")


def test_per_filter_beta_counts_one_beta_per_filter_and_one_alpha():
    conv = nets.Conv(8, 4, 3, parameterization="dirac", per_channel="beta")
    assert conv.num_parameters() == 4 * 8 * 9 + 1 + 4


def test_a_stored_max_pooling_wider_than_its_padding_allows_is_refused_before_building():
    """A padding above half the window made torch's MaxPool2d fail in forward and the Flax
    pooling return -inf windows; the file door, both layers and builders read one rule."""
    spec = nets.spec_to_dict(nets.diracnet_cifar(10, in_channels=1, image_size=8))
    pools = [layer for stage in spec["stages"] for layer in stage["layers"]
             if layer["type"] == "MaxPool"]
    assert pools
    pools[0]["padding"] = 2
    with pytest.raises(ValueError, match=r"\(MaxPool\): padding=2 of a max pooling must be in "
                                         r"\[0, kernel_size // 2 = 1\]"):
        nets.spec_from_dict(spec, "net.json")


def _windows():
    """A conv (int or "same" padding) or a max pooling, as the spec holds them."""
    conv = st.builds(lambda k, s, p: nets.Conv(1, 1, k, stride=s, padding=p),
                     st.integers(1, 7), st.integers(1, 3), st.integers(0, 3))
    same = st.builds(lambda k: nets.Conv(1, 1, k, padding="same"), st.integers(1, 7))
    pool = st.integers(1, 4).flatmap(lambda k: st.builds(
        nets.MaxPool, st.just(k), st.integers(1, 3), st.integers(0, k // 2)))
    return st.one_of(conv, same, pool, st.just(nets.ReLU()))


def _leaves_a_position(spec, size):
    """Whether every window of ``spec`` keeps at least one position of a ``size`` input,
    computed forwards with the convolutions' own output rule."""
    for _, layer in spec.layers():
        if isinstance(layer, nets.Conv | nets.MaxPool):
            pad = ((layer.padding,) * 2 if layer.padding != "same"
                   else resolve_padding("same", (layer.kernel_size,), (1,))[0])
            size = output_size(size, layer.kernel_size, layer.stride, 1, pad)
            if size < 1:
                return False
    return True


@settings(max_examples=60, deadline=None)
@given(st.lists(_windows(), max_size=8))
def test_the_smallest_image_is_the_first_size_every_window_keeps_a_position_of(layers):
    spec = nets.NetSpec("hand-made", 1, 8, 1, (nets.Stage("body", tuple(layers)),))
    smallest = nets.smallest_image_size(spec)
    assert _leaves_a_position(spec, smallest)
    assert smallest == 1 or not _leaves_a_position(spec, smallest - 1)
    assert spec.smallest_image == smallest


@pytest.mark.parametrize("shape, dtype, error, message", [
    ((2, 2, 8, 8), "float32", ValueError,
     r"x has shape \(2, 2, 8, 8\); DiracNet-10-1 takes \(N, 3, H, W\) with H and W >= 4$"),
    ((3, 8, 8), "float32", ValueError, r"x has shape \(3, 8, 8\); DiracNet-10-1 takes"),
    ((1, 3, 8, 8, 8), "float32", ValueError, r"x has shape \(1, 3, 8, 8, 8\)"),
    ((2, 3, 8, 3), "float32", ValueError,
     r"x has shape \(2, 3, 8, 3\): 8x3 images are too small for DiracNet-10-1, which takes H "
     r"and W >= 4"),
    ((2, 3, 4, 4), "float16", TypeError,
     r"x has dtype float16 but the network's parameters have dtype float32; cast x to "
     r"float32 \(or build the network in float16\)"),
    ((2, 3, 4, 4), "int32", TypeError, r"x has dtype int32 .* \(a floating dtype is needed\)"),
])
def test_a_network_refuses_an_input_it_cannot_take_naming_what_it_takes(shape, dtype, error,
                                                                       message):
    with pytest.raises(error, match=message):
        nets.check_input(nets.diracnet_cifar(10), shape, dtype, "float32")


def test_the_shape_alone_is_checked_without_the_parameters_dtype():
    nets.check_input(nets.diracnet_cifar(10), (2, 3, 4, 4), "float16")
    nets.check_input(nets.diracnet_imagenet(18, 0.25), (2, 3, 29, 40), "float64", "float64")
    with pytest.raises(ValueError, match=r"28x40 images are too small .* H and W >= 29"):
        nets.check_input(nets.diracnet_imagenet(18, 0.25), (2, 3, 28, 40))
