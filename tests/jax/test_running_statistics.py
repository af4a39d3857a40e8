"""The Flax batch norm's running statistics: PyTorch's update (the unbiased batch variance),
kept in the parameters' dtype through training (float16 and bfloat16 included): a train step
assigns no float32 update to a half-precision statistic (JAX warns of that, and will refuse
it), and the statistics equal the exact update rounded once."""

import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dirac_jax.nn import BatchNorm

HALF = ["float16", "bfloat16"]


def _ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype`` at ``values`` (float64), from its significand width."""
    bits = {"float16": 10, "bfloat16": 7}[dtype]
    return np.exp2(np.floor(np.log2(np.abs(values))) - bits)


def _randomised(dtype: str, rng: np.random.Generator) -> BatchNorm:
    """A batch norm of 4 channels whose running statistics are random values of ``dtype``."""
    bn = BatchNorm(4, dtype=dtype, rngs=nnx.Rngs(0))
    bn.mean[...] = jnp.asarray(rng.standard_normal(4), dtype)
    bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, 4), dtype)
    return bn


def _expected(mean0: np.ndarray, var0: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's update in float64: momentum 0.1, the unbiased batch variance."""
    axes = (0, *range(2, x.ndim))
    return {"mean": 0.9 * mean0 + 0.1 * x.mean(axes),
            "var": 0.9 * var0 + 0.1 * x.var(axes, ddof=1)}


def _float64(stat: nnx.Variable) -> np.ndarray:
    return np.asarray(stat[...], dtype=np.float64)


@pytest.mark.parametrize("dtype", HALF)
def test_a_train_step_updates_the_statistics_exactly_rounded_once_in_their_dtype(dtype):
    """One optimizer step under nnx.jit with warnings as errors (Flax's float32 update assigned
    to a bfloat16 statistic raised JAX's FutureWarning here): the statistics keep their dtype
    and equal ``0.9 * stat + 0.1 * batch_stat`` (the unbiased batch variance) against float64,
    within half a unit in the last place of the dtype (one rounding), plus 1e-5 of the value
    for the float32 arithmetic of the batch statistics. The batch has 2 values per channel,
    where the unbiased variance is twice the biased one."""
    rng = np.random.default_rng(1)
    bn = _randomised(dtype, rng)
    mean0, var0 = _float64(bn.mean), _float64(bn.var)
    x = jnp.asarray(rng.standard_normal((2, 4, 1, 1)) * 2 + 0.5, dtype)
    optimizer = nnx.Optimizer(bn, optax.sgd(0.1), wrt=nnx.Param)

    @nnx.jit
    def step(bn, optimizer, x):
        def loss_fn(bn):
            return jnp.sum(bn(x).astype(jnp.float32) * jnp.arange(4.0)[:, None, None])

        loss, grads = nnx.value_and_grad(loss_fn)(bn)
        optimizer.update(bn, grads)
        return loss

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(bn, optimizer, x)
    for name, want in _expected(mean0, var0, np.asarray(x, dtype=np.float64)).items():
        stat = getattr(bn, name)[...]
        assert stat.dtype == jnp.dtype(dtype), name
        got = np.asarray(stat, dtype=np.float64)
        tolerance = 0.5 * _ulp(want, dtype) + 1e-5 * np.abs(want)
        assert np.all(np.abs(got - want) <= tolerance), (name, got, want)
    assert np.any(_float64(bn.bias) != 0)  # the step trained the layer


@pytest.mark.parametrize("shape", [(2, 4, 1, 1), (3, 4, 5, 2), (6, 4)])
def test_a_train_step_moves_the_statistics_as_torch_does(shape):
    """The same batch through torch's BatchNorm (1d/2d) and ours from the same statistics, in
    float32: equal outputs and running statistics to float32 rounding. Flax's own update (the
    biased variance) is off by a factor n / (n - 1) of the batch term: 2 with 2 values per
    channel."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    ours = _randomised("float32", rng)
    theirs = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(4)
    with torch.no_grad():
        theirs.running_mean.copy_(torch.from_numpy(np.array(ours.mean[...])))
        theirs.running_var.copy_(torch.from_numpy(np.array(ours.var[...])))
    x = (rng.standard_normal(shape) * 3 - 1).astype(np.float32)
    out = np.asarray(ours(jnp.asarray(x)))
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    for stat, buffer in ((ours.mean, theirs.running_mean), (ours.var, theirs.running_var)):
        np.testing.assert_allclose(np.asarray(stat[...]), buffer.numpy(), rtol=2e-6, atol=1e-7)


def test_one_value_per_channel_is_refused_in_train_mode_only():
    """Its unbiased variance is 0/0; torch refuses it too. Eval mode reads the running
    statistics, so one value is fine there."""
    bn = BatchNorm(4, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 4, 1, 1), jnp.float32)
    with pytest.raises(ValueError, match=r"x has shape \(1, 4, 1, 1\): one value per channel.*"
                       r"train-mode BatchNorm needs at least 2"):
        bn(x)
    bn.eval()
    assert bn(x).shape == (1, 4, 1, 1)


def test_an_empty_batch_leaves_the_statistics_as_they_are():
    """As torch does; Flax's statistics of no values are NaN."""
    bn = _randomised("float32", np.random.default_rng(3))
    before = {name: _float64(getattr(bn, name)) for name in ("mean", "var")}
    assert bn(jnp.ones((0, 4, 3, 3), jnp.float32)).shape == (0, 4, 3, 3)
    for name, value in before.items():
        np.testing.assert_array_equal(_float64(getattr(bn, name)), value)


@pytest.mark.parametrize("dtype", HALF)
def test_eval_mode_leaves_the_statistics_as_they_are(dtype):
    """The widening around Flax's call is undone bit for bit when nothing is updated."""
    bn = BatchNorm(4, dtype=dtype, rngs=nnx.Rngs(0))
    bn.mean[...] = jnp.asarray([0.1, -3.0, 1e-5, 7.0], dtype)
    before = _float64(bn.mean)
    bn.eval()
    out = bn(jnp.ones((2, 4, 3, 3), dtype))
    assert out.dtype == jnp.dtype(dtype) and bn.mean[...].dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(_float64(bn.mean), before)


def test_a_wrong_channel_count_is_refused():
    bn = BatchNorm(4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x has shape \(2, 5, 3, 3\); BatchNorm expects \(N, 4, "):
        bn(jnp.ones((2, 5, 3, 3), jnp.float32))


def test_a_mask_is_refused():
    """Flax's option: PyTorch has none, and the unbiased variance counts every value."""
    bn = BatchNorm(4, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 4, 3, 3), jnp.float32)
    with pytest.raises(TypeError, match=r"mask must be None \(BatchNorm follows PyTorch's"):
        bn(x, mask=jnp.ones(x.shape, bool))


def test_a_failed_call_leaves_the_statistics_dtype():
    """A call that fails inside Flax (no mode at all) puts the dtype back."""
    bn = BatchNorm(4, dtype="bfloat16", rngs=nnx.Rngs(0))
    bn.use_running_average = None
    with pytest.raises(ValueError, match="No `use_running_average` argument"):
        bn(jnp.ones((2, 4, 3, 3), jnp.bfloat16))
    assert bn.mean[...].dtype == jnp.bfloat16 and bn.var[...].dtype == jnp.bfloat16
