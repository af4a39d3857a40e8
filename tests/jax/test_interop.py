"""dirac_jax.interop: only DiracNets are taken."""

import pytest
from flax import nnx

from dirac_core import nets
from dirac_jax.interop import load_torch
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
