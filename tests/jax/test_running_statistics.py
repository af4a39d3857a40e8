"""The Flax DiracNet's batch-norm running statistics stay in the parameters' dtype through
training (float16 and bfloat16 included): a train step assigns no float32 update to a
half-precision statistic (JAX warns of that, and will refuse it), and the statistics equal the
exact update rounded once."""

import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dirac_core import nets
from dirac_jax.nn import DiracNet

# conv -> batch norm -> Dirac layer -> classifier: a train step compiles in about a second.
SPEC = nets.NetSpec("tiny", 1, 4, 3, (
    nets.Stage("stem", (nets.Conv(1, 4, 3, padding=1), nets.BatchNorm(4), nets.ReLU())),
    nets.Stage("group0", nets.dirac_layer(4, 4, activation="ncrelu", parameterization="dirac",
                                          per_channel=False)),
    nets.Stage("head", (nets.GlobalAvgPool(), nets.Linear(4, 3))),
))
HALF = ["float16", "bfloat16"]


@pytest.fixture(scope="module", params=HALF)
def half_net(request) -> DiracNet:
    """A DiracNet of SPEC in a half-precision dtype, built once (building compiles each
    initialiser): tests take ``nnx.clone`` of it."""
    return DiracNet(SPEC, dtype=request.param, rngs=nnx.Rngs(0))


def _dtype(net: DiracNet) -> str:
    return str(net.layer("stem.0").weight[...].dtype)


def _ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype`` at ``values`` (float64), from its significand width."""
    bits = {"float16": 10, "bfloat16": 7}[dtype]
    return np.exp2(np.floor(np.log2(np.abs(values))) - bits)


@pytest.mark.parametrize("half_net", ["bfloat16"], indirect=True)  # float16's update: below
def test_a_train_step_keeps_the_statistics_dtype_without_a_warning(half_net):
    """One optimizer step under nnx.jit with warnings as errors: Flax's float32 update assigned
    to a bfloat16 statistic raised JAX's FutureWarning here."""
    net, dtype = nnx.clone(half_net), _dtype(half_net)
    optimizer = nnx.Optimizer(net, optax.sgd(0.1), wrt=nnx.Param)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 1, 4, 4)), dtype)
    y = jnp.asarray([0, 1, 2, 0])

    @nnx.jit
    def step(net, optimizer, x, y):
        def loss_fn(net):
            logits = net(x).astype(jnp.float32)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(net)
        optimizer.update(net, grads)
        return loss

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(net, optimizer, x, y)
    stats = nnx.to_flat_state(nnx.state(net, nnx.BatchStat))
    assert len(stats) == 4  # mean and var of both batch norms
    for path, stat in stats:
        assert stat[...].dtype == jnp.dtype(dtype), path
    # the statistics moved (a no-op update would keep the dtype too)
    assert float(net.layer("stem.1").var[...][0]) != 1.0


def test_the_update_is_the_exact_one_rounded_once(half_net):
    """A train-mode call under nnx.jit with warnings as errors, and ``0.9 * stat + 0.1 *
    batch_stat`` (Flax's biased batch variance) against float64: within half a unit in the last
    place of the dtype (one rounding), plus 1e-5 of the value for the float32 arithmetic of the
    batch statistics."""
    bn, dtype = nnx.clone(half_net.layer("stem.1")), _dtype(half_net)
    rng = np.random.default_rng(1)
    mean0 = np.asarray(rng.standard_normal(4), dtype=jnp.dtype(dtype)).astype(np.float64)
    var0 = np.asarray(rng.uniform(0.5, 2.0, 4), dtype=jnp.dtype(dtype)).astype(np.float64)
    bn.mean[...], bn.var[...] = jnp.asarray(mean0, dtype), jnp.asarray(var0, dtype)
    x = jnp.asarray(rng.standard_normal((8, 4, 5, 5)) * 2 + 0.5, dtype)
    bn.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nnx.jit(lambda m, v: m(v))(bn, x)
    x64 = np.asarray(x, dtype=np.float64)
    expected = {"mean": 0.9 * mean0 + 0.1 * x64.mean((0, 2, 3)),
                "var": 0.9 * var0 + 0.1 * x64.var((0, 2, 3))}
    for name, want in expected.items():
        stat = getattr(bn, name)[...]
        assert stat.dtype == jnp.dtype(dtype), name
        got = np.asarray(stat, dtype=np.float64)
        tolerance = 0.5 * _ulp(want, dtype) + 1e-5 * np.abs(want)
        assert np.all(np.abs(got - want) <= tolerance), (name, got, want)


def test_eval_mode_leaves_the_statistics_as_they_are(half_net):
    """The widening around Flax's call is undone bit for bit when nothing is updated."""
    bn, dtype = nnx.clone(half_net.layer("stem.1")), _dtype(half_net)
    bn.mean[...] = jnp.asarray([0.1, -3.0, 1e-5, 7.0], dtype)
    before = np.asarray(bn.mean[...], dtype=np.float64)
    bn.eval()
    out = bn(jnp.ones((2, 4, 3, 3), dtype))
    assert out.dtype == jnp.dtype(dtype) and bn.mean[...].dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(bn.mean[...], dtype=np.float64), before)


def test_a_wrong_channel_count_is_refused(half_net):
    bn = half_net.layer("stem.1")
    with pytest.raises(ValueError, match=r"x has shape \(2, 5, 3, 3\); BatchNorm expects \(N, 4, "):
        bn(jnp.ones((2, 5, 3, 3), _dtype(half_net)))


def test_a_failed_call_leaves_the_statistics_dtype(half_net):
    """A call that fails inside Flax (a mask that is not boolean) puts the dtype back."""
    bn, dtype = nnx.clone(half_net.layer("stem.1")), _dtype(half_net)
    x = jnp.ones((2, 4, 3, 3), dtype)
    with pytest.raises(ValueError, match="where must be None or a boolean array"):
        bn(x, mask=jnp.ones(x.shape, jnp.float32))
    assert bn.mean[...].dtype == jnp.dtype(dtype) and bn.var[...].dtype == jnp.dtype(dtype)
