"""dirac_jax.interop: the two sides hold copies (an in-place update on one leaves the other as
it was), only DiracNets are taken, and bfloat16 carries over exactly both ways."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dirac_core import nets
from dirac_jax.interop import load_torch, to_torch
from dirac_jax.nn import DiracNet

torch = pytest.importorskip("torch")
tm = pytest.importorskip("dirac_torch.models")

# One layer of each kind (conv, batch norm, Dirac conv, linear): a first Flax model of a dtype
# compiles its initialisers per array shape, seconds for a DiracNet-10.
SPEC = nets.NetSpec("tiny", 1, 4, 3, (
    nets.Stage("stem", (nets.Conv(1, 4, 3, padding=1), nets.BatchNorm(4), nets.ReLU())),
    nets.Stage("group0", nets.dirac_layer(4, 4, activation="ncrelu", parameterization="dirac",
                                          per_channel=False)),
    nets.Stage("head", (nets.GlobalAvgPool(), nets.Linear(4, 3))),
))


def _snapshot(net: DiracNet) -> dict[str, np.ndarray]:
    """Every array of ``net`` as float64 NumPy copies, by path (bfloat16 widens exactly)."""
    flat = nnx.to_flat_state(nnx.state(net))
    return {"/".join(map(str, path)): np.array(v[...], dtype=np.float64) for path, v in flat}


def _assert_same(net: DiracNet, before: dict[str, np.ndarray]) -> None:
    after = _snapshot(net)
    changed = [k for k in before if not np.array_equal(after[k], before[k])]
    assert not changed, f"changed by torch: {changed}"


def _randomised(dtype: "torch.dtype") -> "torch.nn.Module":
    """A torch DiracNet of SPEC in ``dtype`` whose arrays all differ from their initial values."""
    torch.manual_seed(0)
    net = tm.build(SPEC).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return net


def test_load_torch_copies():
    """In-place torch updates (a fill, an optimizer step, a train-mode forward moving the running
    statistics) leave the loaded Flax model as it was, in the dtype both share (the one where
    NumPy and JAX could view torch's storage)."""
    torch_net = _randomised(torch.float32)
    net = load_torch(DiracNet(SPEC, rngs=nnx.Rngs(0)), torch_net)
    before = _snapshot(net)
    assert float(net.layer("group0.1").alpha[...]) == torch_net.get_submodule(
        "group0.1").alpha.item()
    with torch.no_grad():
        torch_net.get_submodule("group0.1").alpha.fill_(-7)
    optimizer = torch.optim.SGD(torch_net.parameters(), lr=0.5)
    torch_net.train()
    torch_net(torch.randn(2, 1, 4, 4)).square().sum().backward()
    optimizer.step()
    _assert_same(net, before)


def test_to_torch_copies():
    """The torch model of a Flax one holds its own tensors: a torch optimizer step and
    in-place fills leave the Flax model as it was."""
    net = DiracNet(SPEC, dtype=jnp.float32, rngs=nnx.Rngs(0))
    before = _snapshot(net)
    torch_net = to_torch(net)
    optimizer = torch.optim.SGD(torch_net.parameters(), lr=0.5)
    torch_net(torch.randn(2, 1, 4, 4)).square().sum().backward()
    optimizer.step()
    with torch.no_grad():
        for t in (*torch_net.parameters(), *torch_net.buffers()):
            if t.is_floating_point():
                t.fill_(-7)
    _assert_same(net, before)


@pytest.mark.parametrize("given", ["conv", "state_dict", "none"])
def test_load_torch_refuses_what_is_not_a_torch_diracnet(given):
    conv = torch.nn.Conv2d(3, 3, 3)
    torch_model = {"conv": conv, "state_dict": tm.build(SPEC).state_dict(), "none": None}[given]
    net = DiracNet(SPEC, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"torch_model must be a dirac_torch\.models\.DiracNet"
                       + f".*got {type(torch_model).__name__}"):
        load_torch(net, torch_model)


def test_load_torch_refuses_a_model_that_is_not_a_flax_diracnet():
    with pytest.raises(TypeError, match=r"model must be a dirac_jax\.nn\.DiracNet.*got Linear"):
        load_torch(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), tm.build(SPEC))


def _bf16_grid() -> "torch.nn.Module":
    """A bfloat16 torch DiracNet whose arrays hold bfloat16 values float16 could not (tiny,
    huge, and 8-bit mantissas)."""
    net = _randomised(torch.bfloat16)
    with torch.no_grad():
        conv = net.get_submodule("group0.1")
        conv.alpha.fill_(1e-30)
        conv.beta.fill_(3.0e38)
    return net


def _as_float32(tensor: "torch.Tensor") -> np.ndarray:
    return tensor.detach().float().numpy()


def test_bfloat16_loads_exactly():
    """A bfloat16 torch model loads into a bfloat16 Flax model (and widens into a float32 one)
    value for value."""
    torch_net = _bf16_grid()
    for dtype in (jnp.bfloat16, jnp.float32):
        net = load_torch(DiracNet(SPEC, dtype=dtype, rngs=nnx.Rngs(0)), torch_net)
        conv = net.layer("group0.1")
        assert conv.weight[...].dtype == dtype
        theirs = torch_net.get_submodule("group0.1")
        for ours, other in ((conv.weight, theirs.parametrizations.weight.original),
                            (conv.alpha, theirs.alpha), (conv.beta, theirs.beta)):
            np.testing.assert_array_equal(np.asarray(ours[...], dtype=np.float32),
                                          _as_float32(other))
        np.testing.assert_array_equal(np.asarray(net.layer("head.1").kernel[...],
                                                 dtype=np.float32),
                                      _as_float32(torch_net.get_submodule("head.1").weight).T)


def test_bfloat16_goes_to_torch_and_back_exactly():
    torch_net = _bf16_grid()
    net = load_torch(DiracNet(SPEC, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)), torch_net)
    back = to_torch(net)
    mine, theirs = back.state_dict(), torch_net.state_dict()
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert mine[key].dtype == value.dtype, key
        assert torch.equal(mine[key], value), key


def test_trained_bfloat16_statistics_go_to_torch_and_back_exactly():
    """A train-mode call moves the Flax model's bfloat16 running statistics (kept bfloat16, as
    torch keeps a bfloat16 model's buffers): to_torch holds them bit for bit and load_torch
    brings every array back unchanged."""
    net = load_torch(DiracNet(SPEC, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)), _bf16_grid())
    before = net.layer("stem.1").mean[...]
    net.train()
    net(jnp.asarray(np.random.default_rng(0).standard_normal((4, 1, 4, 4)), jnp.bfloat16))
    assert not np.array_equal(np.asarray(net.layer("stem.1").mean[...], np.float32),
                              np.asarray(before, np.float32))
    back = to_torch(net)
    for name in ("stem.1", "group0.2"):
        ours, theirs = net.layer(name), back.get_submodule(name)
        for stat, buffer in ((ours.mean, theirs.running_mean), (ours.var, theirs.running_var)):
            assert stat[...].dtype == jnp.bfloat16 and buffer.dtype == torch.bfloat16
            np.testing.assert_array_equal(np.asarray(stat[...], np.float32), _as_float32(buffer))
    again = load_torch(DiracNet(SPEC, dtype=jnp.bfloat16, rngs=nnx.Rngs(1)), back)
    expected, got = _snapshot(net), _snapshot(again)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_load_torch_takes_a_compiled_torch_diracnet():
    """torch.compile's wrapper is the model it wraps, as fold_model and save_model take it; the
    type check refused it."""
    torch_net = _randomised(torch.float32)
    net = load_torch(DiracNet(SPEC, rngs=nnx.Rngs(0)), torch.compile(torch_net))
    assert float(net.layer("group0.1").alpha[...]) == torch_net.get_submodule(
        "group0.1").alpha.item()


def test_the_mode_carries_over_both_ways():
    """to_torch of a Flax model in eval mode came back in train mode (a folded one in eval),
    and load_torch left the Flax model's mode as it was: the two computed different functions.
    Each batch norm's mode crosses, so a model with one layer switched keeps it."""
    net = DiracNet(SPEC, rngs=nnx.Rngs(0))
    for mode in ("eval", "train"):
        getattr(net, mode)()
        torch_net = to_torch(net)
        assert torch_net.training == (mode == "train")
        assert all(m.training == (mode == "train") for m in torch_net.modules()
                   if isinstance(m, torch.nn.BatchNorm2d))
        getattr(torch_net, {"eval": "train", "train": "eval"}[mode])()
        load_torch(net, torch_net)
        assert all(net.layer(name).use_running_average == (mode == "train")
                   for name in ("stem.1", "group0.2"))
    net.train()
    net.layer("stem.1").eval()  # net is in train mode but for this one
    torch_net = to_torch(net)
    assert [torch_net.get_submodule(n).training for n in ("stem.1", "group0.2")] == [False, True]


def test_a_train_step_moves_the_statistics_of_both_networks_alike():
    """The same batch through a Flax network in train mode and its to_torch: the running
    statistics agree to float32 rounding (Flax's own update, the biased variance, is off by
    n / (n - 1) = 32 / 31 of the batch term here) and so do the eval outputs after it."""
    net = DiracNet(SPEC, rngs=nnx.Rngs(0))
    torch_net = to_torch(net)
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    net(jnp.asarray(x))
    torch_net(torch.from_numpy(x))
    for name in ("stem.1", "group0.2"):
        ours, theirs = net.layer(name), torch_net.get_submodule(name)
        for stat, buffer in ((ours.mean, theirs.running_mean), (ours.var, theirs.running_var)):
            np.testing.assert_allclose(np.asarray(stat[...]), buffer.detach().numpy(),
                                       rtol=2e-6, atol=1e-7, err_msg=name)
    net.eval()
    torch_net.eval()
    with torch.no_grad():
        expected = torch_net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(net(jnp.asarray(x))), expected, rtol=1e-5, atol=1e-5)
