"""fold_model: folded networks equal their eval-mode originals; unfoldable patterns fail loudly.

Tolerances (relative, 2-norm over the whole output): 1e-5 in float32, 1e-10 in float64.
"""

import doctest
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

import dirac_core as dc
import dirac_torch.conv_geometry as conv_geometry
import dirac_torch.fold as fold_module
from dirac_torch import DiracConv1d, DiracConv2d, DiracConv3d, NCReLU, models, register_dirac
from dirac_torch.fold import fold_batchnorm, fold_model

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
PLAIN_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ReLU, NCReLU, nn.MaxPool2d, nn.Linear,
               models.GlobalAvgPool, nn.Sequential, nn.ConstantPad1d, nn.ConstantPad2d,
               nn.ConstantPad3d)


def randomize(model, seed=0):
    """Random BN statistics and affine parameters (gamma of both signs), random Dirac scales."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
                if m.affine:
                    m.weight.copy_(torch.randn(n, generator=g))
                    m.bias.copy_(torch.randn(n, generator=g))
            if isinstance(m, DiracConv1d | DiracConv2d | DiracConv3d) and m.dirac.learnable:
                m.alpha.copy_(torch.rand(m.alpha.shape, generator=g) + 0.5)
                m.beta.copy_(torch.rand(m.beta.shape, generator=g) + 0.5)
    return model


def relative_error(model, folded, x):
    with torch.no_grad():
        expected, got = model.eval()(x), folded(x)
    assert got.shape == expected.shape
    return float((got - expected).norm() / expected.norm())


def assert_plain(folded):
    for name, m in folded.named_modules():
        assert not parametrize.is_parametrized(m), name
        assert not isinstance(m, nn.modules.batchnorm._BatchNorm), name
        if isinstance(m, nn.modules.conv._ConvNd):
            assert type(m) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) and m.bias is not None, name


VARIANTS = [
    {},
    {"per_channel": True},
    {"activation": "relu"},
    {"parameterization": "resnet"},
    {"parameterization": "plain"},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())) or "v1")
def test_diracnet_folds_exactly(variant, dtype):
    torch.manual_seed(0)
    model = randomize(models.diracnet_cifar(10, **variant)).to(dtype)
    folded = fold_model(model)
    assert_plain(folded)
    x = torch.randn(3, 3, 32, 32, dtype=dtype)
    assert relative_error(model, folded, x) <= TOLERANCE[dtype]


def test_folded_diracnet_keeps_every_layer_name_with_identity_for_batchnorms():
    model = models.diracnet_cifar(10)
    folded = fold_model(model)
    layers = dict(model.spec.layers())
    names = {n: m for n, m in folded.named_modules() if n.count(".") == 1}
    assert names.keys() == layers.keys()
    for name, layer in layers.items():
        assert isinstance(names[name], nn.Identity) == isinstance(layer, dc_nets().BatchNorm)
    assert isinstance(folded, models.DiracNet) and folded.spec == model.spec
    assert not folded.training


def test_sequential_indices_are_stable_after_folding():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    folded = fold_model(model)
    assert [type(m) for m in folded] == [nn.Conv2d, nn.Identity, nn.ReLU]
    assert isinstance(folded[2], nn.ReLU) and len(folded) == len(model)


def dc_nets():
    from dirac_core import nets

    return nets


def test_original_is_untouched():
    torch.manual_seed(1)
    model = randomize(models.diracnet_cifar(10)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_model(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training
    assert parametrize.is_parametrized(model.get_submodule("group0.1"))


def test_fold_is_idempotent():
    torch.manual_seed(2)
    model = randomize(models.diracnet_cifar(10)).double()
    once = fold_model(model)
    twice = fold_model(once)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert relative_error(once, twice, x) <= 1e-14


class UserBlock(nn.Module):
    """A user module with its own forward: its convs fold, a BN inside it cannot."""

    def __init__(self, with_bn=False):
        super().__init__()
        self.act = NCReLU()
        self.conv = DiracConv2d(8, 4, 2)  # even kernel: asymmetric "same"
        self.bn = nn.BatchNorm2d(4) if with_bn else None

    def forward(self, x):
        y = self.conv(self.act(x))
        return self.bn(y) if self.bn is not None else y


def user_model():
    return nn.Sequential(
        DiracConv2d(3, 4, 4, dilation=2),  # even kernel, dilated
        nn.BatchNorm2d(4),
        UserBlock(),
        nn.Sequential(NCReLU(), DiracConv2d(8, 6, 3, per_channel=True)),
        nn.BatchNorm2d(6),  # follows the tail of the nested Sequential
        nn.ReLU(),
        nn.Sequential(register_dirac(nn.Conv2d(6, 6, 3, padding=1, groups=2)), nn.BatchNorm2d(6)),
        nn.Conv2d(6, 5, 4, padding="same", bias=False),  # PyTorch's own "same"
        nn.BatchNorm2d(5, affine=False),
        nn.MaxPool2d(2),
        nn.Conv2d(5, 5, 1),
    )


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_user_model_folds(dtype):
    torch.manual_seed(3)
    model = randomize(user_model()).to(dtype)
    folded = fold_model(model)
    assert_plain(folded)
    assert isinstance(folded[0], nn.Sequential)  # pad + conv for the asymmetric padding
    assert isinstance(folded[0].pad, nn.ConstantPad2d) and folded[0].pad.padding == (4, 2, 4, 2)
    x = torch.randn(2, 3, 11, 12, dtype=dtype)
    assert relative_error(model, folded, x) <= TOLERANCE[dtype]


@pytest.mark.parametrize(
    "layer, shape",
    [
        (lambda: DiracConv1d(4, 6, 4, groups=2, bias=True), (2, 4, 9)),
        (lambda: DiracConv3d(4, 4, (2, 3, 4), dilation=(1, 2, 1)), (2, 4, 5, 6, 7)),
        (lambda: DiracConv2d(4, 8, 3, stride=2, padding=((0, 1), (1, 0))), (2, 4, 7, 8)),
        (lambda: nn.Conv2d(4, 4, 3, padding=2, padding_mode="reflect"), (2, 4, 6, 6)),
    ],
)
def test_single_convs_fold(layer, shape):
    torch.manual_seed(4)
    conv = randomize(layer()).double()
    bn = nn.BatchNorm1d if len(shape) == 3 else nn.BatchNorm2d if len(shape) == 4 else None
    model = nn.Sequential(conv, (bn or nn.BatchNorm3d)(conv.out_channels)).double()
    randomize(model)
    folded = fold_model(model)
    assert_plain(folded)
    x = torch.randn(shape, dtype=torch.float64)
    assert relative_error(model, folded, x) <= 1e-10


def test_unfoldable_batchnorm_is_an_error_naming_it():
    model = nn.Sequential(DiracConv2d(4, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match=r"'2' \(no convolution directly before it\)"):
        fold_model(model)
    torch.manual_seed(5)
    randomize(model)
    kept = fold_model(model, strict=False)
    assert isinstance(kept[2], nn.BatchNorm2d)
    assert relative_error(model, kept, torch.randn(2, 4, 5, 5)) <= 1e-5


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(DiracConv2d(4, 4, 3), nn.MaxPool2d(2), nn.BatchNorm2d(4)),
        nn.Sequential(nn.BatchNorm2d(4), DiracConv2d(4, 4, 3)),
        nn.Sequential(UserBlock(with_bn=True)),
        nn.Sequential(nn.ConvTranspose2d(4, 4, 3), nn.BatchNorm2d(4)),
        nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)),
    ],
    ids=["across-pool", "before-conv", "custom-forward", "transposed", "no-running-stats"],
)
def test_never_folds_across_other_layers(model):
    with pytest.raises(ValueError, match="cannot fold the batch norm"):
        fold_model(model)


def test_channel_mismatch_is_an_error():
    with pytest.raises(ValueError, match="4 channels but the convolution before it, '0', has 3"):
        fold_model(nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(4)))


def test_not_a_module_is_a_type_error():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got dict"):
        fold_model({"conv": nn.Conv2d(1, 1, 1)})


def test_conv_subclass_with_own_forward_is_a_type_error():
    class Shifted(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) + 1

    with pytest.raises(TypeError, match="cannot fold Shifted '0': it overrides forward"):
        fold_model(nn.Sequential(Shifted(2, 2, 1)))


def test_subclassed_sequential_with_own_forward_does_not_pair():
    class Reversed(nn.Sequential):
        def forward(self, x):
            for m in reversed(self):
                x = m(x)
            return x

    with pytest.raises(ValueError, match="cannot fold the batch norm"):
        fold_model(Reversed(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)))


def test_other_parametrizations_are_materialized():
    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    linear = nn.Linear(3, 2)
    parametrize.register_parametrization(linear, "weight", Double())
    folded = fold_model(nn.Sequential(linear))
    assert not parametrize.is_parametrized(folded[0])
    assert torch.equal(folded[0].weight, linear.weight)
    assert parametrize.is_parametrized(linear, "weight")  # the original keeps its own


@given(
    out_channels=st.integers(1, 5),
    in_channels=st.integers(1, 3),
    kernel=st.integers(1, 3),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fold_batchnorm_matches_reference(out_channels, in_channels, kernel, with_bias, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(out_channels, in_channels, kernel, kernel))
    vectors = [rng.normal(size=out_channels) if with_bias else None]
    vectors += [rng.normal(size=out_channels) for _ in range(3)]  # gamma of both signs
    vectors.append(rng.uniform(0.0, 3.0, size=out_channels))
    expected = dc.fold_batchnorm(w, *vectors, eps=1e-3, backend="numpy")
    got = fold_batchnorm(
        torch.from_numpy(w), *(None if v is None else torch.from_numpy(v) for v in vectors),
        eps=1e-3,
    )
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == torch.float64
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-13, atol=1e-13)


def test_fold_batchnorm_float32_keeps_dtype():
    w = torch.randn(3, 2, 1, dtype=torch.float32)
    ones, zeros = torch.ones(3), torch.zeros(3)
    new_w, new_b = fold_batchnorm(w, None, ones, zeros, zeros, ones, eps=0.0)
    assert new_w.dtype == new_b.dtype == torch.float32 and torch.equal(new_w, w)


@pytest.mark.parametrize("door", [dc.fold_batchnorm, fold_batchnorm], ids=["dirac_core", "torch"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fold_batchnorm_runs_on_meta_tensors_as_every_op_does(door, with_bias):
    # A meta tensor has no values to check: the fold gives meta results of the right shapes.
    w, v = torch.empty(4, 3, 2, 2, device="meta"), torch.empty(4, device="meta")
    new_w, new_b = door(w, v if with_bias else None, v, v, v, v)
    assert new_w.is_meta and new_b.is_meta
    assert new_w.shape == w.shape and new_b.shape == (4,)
    assert new_w.dtype == new_b.dtype == torch.float32
    with pytest.raises(ValueError, match="var must be >= 0"):  # values are still checked
        door(torch.ones(w.shape), None, *[torch.ones(4)] * 3, -torch.ones(4))


def test_fold_batchnorm_detaches():
    w = torch.randn(2, 1, 1, requires_grad=True)
    gamma = torch.ones(2, requires_grad=True)
    new_w, new_b = fold_batchnorm(w, None, gamma, torch.zeros(2), torch.zeros(2), torch.ones(2))
    assert not new_w.requires_grad and not new_b.requires_grad


ONE = np.ones(3)
BAD_BATCHNORMS = {  # (bias, gamma, beta, mean, var, eps): one contract for every entry point
    "negative var": (None, ONE, ONE, ONE, -ONE, 2.0),
    "nan var": (None, ONE, ONE, ONE, ONE * np.nan, 1e-5),
    "infinite gamma": (None, ONE * np.inf, ONE, ONE, ONE, 1e-5),
    "infinite mean": (None, ONE, ONE, -ONE * np.inf, ONE, 1e-5),
    "var + eps == 0": (None, ONE, ONE, ONE, 0 * ONE, 0.0),
    "short gamma": (None, np.ones(2), ONE, ONE, ONE, 1e-5),
    "bias shape": (np.ones((3, 1)), ONE, ONE, ONE, ONE, 1e-5),
    "negative eps": (None, ONE, ONE, ONE, ONE, -1.0),
    "float32 gamma": (None, ONE.astype(np.float32), ONE, ONE, ONE, 1e-5),
}


@pytest.mark.parametrize("case", BAD_BATCHNORMS, ids=list(BAD_BATCHNORMS))
def test_fold_batchnorm_has_the_contract_of_dirac_core(case):
    *vectors, eps = BAD_BATCHNORMS[case]
    w = np.ones((3, 2, 1))
    with pytest.raises((TypeError, ValueError)) as expected:
        dc.fold_batchnorm(w, *vectors, eps=eps)
    tensors = [None if v is None else torch.from_numpy(np.asarray(v)) for v in vectors]
    with pytest.raises(expected.type) as got:
        fold_batchnorm(torch.from_numpy(w), *tensors, eps=eps)
    assert str(got.value) == str(expected.value)


def test_conv_module_rejects_asymmetric_non_zero_padding():
    with pytest.raises(ValueError, match="padding_mode='zeros', got 'reflect'"):
        conv_geometry.conv_module(2, 2, (2,), padding=((1, 0),), padding_mode="reflect")


def test_models_do_not_import_fold():
    code = "import sys, dirac_torch.models; print('dirac_torch.fold' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "False"


def test_package_exposes_fold_model():
    import dirac_torch

    assert dirac_torch.fold_model is fold_model


def test_docstring_examples():
    result = doctest.testmod(fold_module, extraglobs={"torch": torch, "nn": nn})
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_var_plus_eps_beyond_float32_folds_to_zero_as_the_reference_does():
    """``var + eps`` is formed in the working dtype on every backend: float32's overflow gives
    ``s = gamma / inf = 0`` (torch's float64 arithmetic gave 5e-20)."""
    import dirac_core as dc

    stats = [np.ones(1, np.float32), np.zeros(1, np.float32), np.zeros(1, np.float32),
             np.array([3e38], np.float32)]
    reference = dc.fold_batchnorm(np.ones((1, 1), np.float32), None, *stats, eps=1e38)
    got = dc.fold_batchnorm(torch.ones(1, 1), None, *map(torch.from_numpy, stats), eps=1e38)
    for ours, theirs in zip(got, reference, strict=True):
        assert ours.numpy().tolist() == theirs.tolist() and not theirs.any()


def test_fold_model_checks_statistics_in_the_batch_norms_own_dtype():
    """A float32 batch norm with ``eps=1e-50`` and a zero variance divides by 0 in its own
    forward (eps is 0 in float32); fold_model refuses it naming the module, as the checked fold
    does, where its float64 cast folded it to a finite -1.8e24."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1, eps=1e-50)).eval()
    model[1].running_var.zero_()
    assert model(torch.ones(1, 1, 2, 2)).isnan().all()
    with pytest.raises(ValueError, match=r"batch norm '1' does not fold: var must be >= 0"):
        fold_model(model)
    wide = model.double()  # float64 keeps eps = 1e-50: a finite network, folded exactly
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    assert torch.equal(fold_model(wide)(x), wide(x))


def test_fold_batchnorm_takes_tensors_only_as_every_dirac_torch_function():
    """A NumPy statistic was converted (dirac_jax's fold refuses foreign arrays, as do
    dirac_torch's other functions); dirac_core.fold_batchnorm converts on purpose."""
    ones = torch.ones(2)
    with pytest.raises(TypeError, match=r"^var must be a torch\.Tensor, got numpy\.ndarray"):
        fold_batchnorm(torch.ones(2, 1, 1, 1), None, ones, ones, ones, np.ones(2, np.float32))
    folded = dc.fold_batchnorm(torch.ones(2, 1, 1, 1), None, ones, ones, ones,
                               np.ones(2, np.float32), backend="torch")
    assert isinstance(folded[0], torch.Tensor)
