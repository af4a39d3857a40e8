"""The Flax DiracNet: same outputs and folded weights as the torch one, and it learns."""

import jax
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


def test_a_short_digits_run_learns():
    """DiracNet-10 on the 8x8 digits: three epochs of Adam, then well above chance (10%)."""
    optax = pytest.importorskip("optax")
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[:1400], order[1400:]

    model = DiracNet(nets.diracnet_cifar(10, in_channels=1, image_size=8), rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    batch = 50
    for _ in range(3):
        for i in range(0, len(train), batch):
            index = train[i:i + batch]
            step(model, optimizer, jnp.asarray(images[index]), jnp.asarray(labels[index]))
    model.eval()
    predicted = jnp.argmax(jax.jit(lambda x: model(x))(jnp.asarray(images[test])), axis=1)
    accuracy = float(jnp.mean(predicted == labels[test]))
    assert accuracy > 0.8, accuracy
