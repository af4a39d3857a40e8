"""The Flax DiracNet: same outputs and folded weights as the torch one, both ways."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dirac_core import nets
from dirac_jax.interop import load_torch
from dirac_jax.nn import Conv, DiracNet, fold_model

SPEC = nets.diracnet_cifar(10, in_channels=1, image_size=8, per_channel=True)


@pytest.fixture(scope="module")
def torch_net():
    """A torch DiracNet in float64 with every parameter and BN statistic randomised."""
    torch = pytest.importorskip("torch")
    import dirac_torch.models as tm

    torch.manual_seed(0)
    net = tm.build(SPEC).double().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) if "original" not in name else p)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return net


@pytest.fixture(scope="module")
def flax_net(torch_net):
    net = DiracNet(SPEC, dtype=jnp.float64, rngs=nnx.Rngs(1))
    load_torch(net, torch_net)
    net.eval()
    return net


def test_torch_weights_give_the_same_outputs(torch_net, flax_net):
    import torch

    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8))
    with torch.no_grad():
        expected = torch_net(torch.from_numpy(x)).numpy()
    got = np.asarray(flax_net(jnp.asarray(x)))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_folding_both_gives_the_same_weights(torch_net, flax_net):
    from dirac_torch.fold import fold_model as torch_fold_model

    torch_folded, folded = torch_fold_model(torch_net), fold_model(flax_net)
    convs = [n for n, m in zip(folded.names, folded.layers, strict=True) if isinstance(m, Conv)]
    assert len(convs) == 7  # stem + 2 Dirac layers per group, all folded with their BN
    assert not any(isinstance(m, nnx.BatchNorm) for m in folded.layers)
    for name in convs:
        theirs = torch_folded.get_submodule(name)
        ours = folded.layer(name)
        for mine, other in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
            other = other.detach().numpy()
            np.testing.assert_allclose(np.asarray(mine[...]), other, rtol=0,
                                       atol=1e-10 * np.abs(other).max())
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 1, 8, 8)))
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(flax_net(x)), rtol=1e-10,
                               atol=1e-10)


def test_folded_models_cross_both_ways():
    """load_torch takes a folded torch model into a folded Flax one; to_torch goes back, folded
    or not; a folded model on one side only is refused."""
    torch = pytest.importorskip("torch")
    from dirac_jax.interop import to_torch
    from dirac_torch.fold import fold_model as torch_fold
    from dirac_torch.registry import create_model as torch_create

    torch_net = torch_create("diracnet10_1_v2_cifar", in_channels=1, image_size=8).double()
    torch_folded = torch_fold(torch_net.eval())
    spec = torch_net.spec
    flax_folded = load_torch(fold_model(DiracNet(spec, dtype=jnp.float64, rngs=nnx.Rngs(0))),
                             torch_folded)
    x = np.random.default_rng(2).standard_normal((2, 1, 8, 8))
    with torch.no_grad():
        expected = torch_folded(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(flax_folded(jnp.asarray(x))), expected, rtol=0,
                               atol=1e-10 * np.abs(expected).max())
    with pytest.raises(ValueError, match="the torch model is folded and the other is not"):
        load_torch(DiracNet(spec, dtype=jnp.float64, rngs=nnx.Rngs(0)), torch_folded)
    for flax_model in (flax_folded, load_torch(
            DiracNet(spec, dtype=jnp.float64, rngs=nnx.Rngs(0)), torch_net)):
        flax_model.eval()
        back = to_torch(flax_model).eval()
        assert back.spec == spec and back.init == flax_model.init
        with torch.no_grad():
            np.testing.assert_allclose(back(torch.from_numpy(x)).numpy(),
                                       np.asarray(flax_model(jnp.asarray(x))), rtol=0,
                                       atol=1e-10 * np.abs(expected).max())


def test_create_model_keeps_the_policy_and_init_std():
    from dirac_jax import create_model

    net = create_model("diracnet10_1_v2_cifar", rngs=nnx.Rngs(0))
    conv = net.layer("group1.2")  # max-pool, ReLU, conv: 16 -> 32 channels
    assert conv.policy == "min" and float(conv.alpha[...][0]) == 1.0
    v1 = create_model("diracnet10_1_cifar", rngs=nnx.Rngs(0)).layer("group0.1")
    assert v1.policy == "tile" and abs(float(jnp.std(v1.weight[...])) / 0.1 - 1) < 0.1
    with pytest.raises(ValueError, match="did you mean '050'"):
        create_model("diracnet34_05_imagenet", rngs=nnx.Rngs(0))


def test_resnet_convs_use_the_policy_the_spec_records():
    from dirac_core.catalog import family_spec

    spec = family_spec("cifar", 10, 0.25, 10, parameterization="resnet", policy="min")
    net = DiracNet(spec, rngs=nnx.Rngs(0))
    widening = [name for name, layer in spec.layers() if isinstance(layer, nets.Conv)
                and layer.parameterization == "resnet" and layer.in_channels != layer.out_channels]
    assert widening and all(net.layer(name).policy == "min" for name in widening)


@functools.cache
def _both_networks(name):
    from dirac_jax import create_model
    from dirac_torch.registry import create_model as torch_create

    return torch_create(name, num_classes=5), create_model(name, num_classes=5,
                                                           rngs=nnx.Rngs(0))


@pytest.mark.parametrize("name", ["diracnet10_025_cifar", "plain10_025_cifar"])
@pytest.mark.parametrize("shape, dtype, error", [
    ((2, 2, 32, 32), "float32", ValueError), ((3, 32, 32), "float32", ValueError),
    ((2, 3, 32, 32, 1), "float32", ValueError), ((2, 3, 3, 40), "float32", ValueError),
    ((2, 3, 32, 32), "float16", TypeError), ((2, 3, 32, 32), "float64", TypeError),
    ((2, 3, 32, 32), "int32", TypeError),
])
def test_torch_and_flax_networks_refuse_a_bad_input_in_the_same_words(name, shape, dtype,
                                                                     error):
    """The torch door let torch refuse these itself (a bare RuntimeError from the stem conv
    or a pooling); Flax refused them at an inner layer."""
    torch = pytest.importorskip("torch")
    torch_net, net = _both_networks(name)
    x = np.ones(shape, dtype)
    messages = set()
    for call in (lambda: torch_net(torch.from_numpy(x)), lambda: net(jnp.asarray(x)),
                 lambda: nnx.jit(net)(jnp.asarray(x))):
        with pytest.raises(error) as caught:
            call()
        messages.add(str(caught.value))
    assert len(messages) == 1, messages
