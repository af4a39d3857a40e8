"""fold_model on models as users write them: never a silently different network.

Hooks, subclasses overriding ``forward``, shared containers, blocks with their own ``forward``
(``ConvBNReLU``) and user-named pairs. Folded models are compared with the eval-mode original
(relative 2-norm error <= 1e-5 in float32); every refused case must raise naming what is wrong.
"""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dirac_torch import DiracConv2d
from dirac_torch.fold import fold_model

sys.path.insert(0, str(Path(__file__).parent))
from test_fold import randomize, relative_error

X = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))


def conv_bn():
    return randomize(nn.Sequential(DiracConv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))


class ConvBNReLU(nn.Module):
    """The common block with its own forward."""

    def __init__(self, c_in, c_out, kernel=3):
        super().__init__()
        self.conv = DiracConv2d(c_in, c_out, kernel)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    """The conv's output feeds the batch norm and the sum: the pair must not fold."""

    def __init__(self):
        super().__init__()
        self.block = ConvBNReLU(4, 4, kernel=2)  # even kernel: the conv folds to pad + conv
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(self.block(x))
        return self.bn(y) + y


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y if float(x.sum()) > -1e9 else -y


def hook_forward(module):
    module.register_forward_hook(lambda m, args, out: out * 2)


def hook_pre_forward(module):
    module.register_forward_pre_hook(lambda m, args: (args[0] + 1,))


HOOKS = {"forward hooks": hook_forward, "forward pre hooks": hook_pre_forward}


# ---------------------------------------------------------------------------- refused


@pytest.mark.parametrize("kind", HOOKS)
def test_conv_with_hooks_is_an_error(kind, tmp_path):
    model = conv_bn()
    HOOKS[kind](model[0])
    with pytest.raises(ValueError, match=f"cannot fold conv '0': it has {kind}"):
        fold_model(model)
    pytest.importorskip("onnxscript")
    from dirac_torch.onnx_export import export_onnx

    with pytest.raises(ValueError, match=f"cannot fold conv '0': it has {kind}"):
        export_onnx(model, tmp_path / "net.onnx", X)


@pytest.mark.parametrize("kind", HOOKS)
def test_batchnorm_with_hooks_is_kept(kind):
    model = conv_bn()
    HOOKS[kind](model[1])
    with pytest.raises(ValueError, match=f"'1' \\(it has {kind}\\)"):
        fold_model(model)
    kept = fold_model(model, strict=False)
    assert isinstance(kept[1], nn.BatchNorm2d)
    assert relative_error(model, kept, X) <= 1e-5


def test_hooks_between_the_pair_block_it():
    model = conv_bn()
    model[0] = nn.Sequential(model[0])
    hook_forward(model[0])  # sees the conv's output, not the batch norm's
    with pytest.raises(ValueError, match="cannot fold the batch norm"):
        fold_model(model)
    assert relative_error(model, fold_model(model, strict=False), X) <= 1e-5


def test_dirac_conv_subclass_overriding_forward_is_an_error():
    class Halved(DiracConv2d):
        def forward(self, x):
            return super().forward(x) / 2

    with pytest.raises(TypeError, match="cannot fold Halved '0': it overrides forward"):
        fold_model(nn.Sequential(Halved(4, 4, 3), nn.BatchNorm2d(4)))


def test_batchnorm_subclass_overriding_forward_is_kept():
    class Shifted(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) + 1

    model = randomize(nn.Sequential(DiracConv2d(4, 4, 3), Shifted(4)))
    with pytest.raises(ValueError, match=r"'1' \(Shifted overrides forward\)"):
        fold_model(model)
    kept = fold_model(model, strict=False)
    assert isinstance(kept[1], Shifted)
    assert relative_error(model, kept, X) <= 1e-5


# ---------------------------------------------------------------------------- patched calls


def patch_instance(module, method="forward"):
    """Double what ``module`` returns by assigning on the instance, as users monkey-patch."""
    original = getattr(module, method)
    setattr(module, method, lambda *args, **kwargs: 2 * original(*args, **kwargs))


class DoubledCall(nn.Conv2d):
    def __call__(self, *args, **kwargs):
        return 2 * super().__call__(*args, **kwargs)


class DoubledCallImpl(nn.Conv2d):
    def _call_impl(self, *args, **kwargs):
        return 2 * super()._call_impl(*args, **kwargs)


@pytest.mark.parametrize("method", ["forward", "_conv_forward", "_call_impl"])
def test_conv_patched_on_the_instance_is_an_error(method):
    model = conv_bn()
    patch_instance(model[0], method)
    with pytest.raises(TypeError, match=f"cannot fold DiracConv2d '0': its {method} is replaced"):
        fold_model(model)


@pytest.mark.parametrize("cls, method", [(DoubledCall, "__call__"),
                                         (DoubledCallImpl, "_call_impl")])
def test_conv_overriding_call_is_an_error(cls, method):
    model = randomize(nn.Sequential(cls(4, 4, 3, padding=1), nn.BatchNorm2d(4)))
    name = cls.__name__
    with pytest.raises(TypeError, match=f"cannot fold {name} '0': {name} overrides {method}"):
        fold_model(model)


@pytest.mark.parametrize("method", ["forward", "_call_impl"])
def test_batchnorm_patched_on_the_instance_is_kept(method):
    model = conv_bn()
    patch_instance(model[1], method)
    with pytest.raises(ValueError, match=f"'1' \\(its {method} is replaced on the instance\\)"):
        fold_model(model)
    kept = fold_model(model, strict=False)
    assert isinstance(kept[1], nn.BatchNorm2d)
    assert relative_error(model, kept, X) <= 1e-5


def test_batchnorm_overriding_call_is_kept():
    class DoubledBN(nn.BatchNorm2d):
        def __call__(self, *args, **kwargs):
            return 2 * super().__call__(*args, **kwargs)

    model = randomize(nn.Sequential(DiracConv2d(4, 4, 3), DoubledBN(4)))
    with pytest.raises(ValueError, match=r"'1' \(DoubledBN overrides __call__\)"):
        fold_model(model)
    assert relative_error(model, fold_model(model, strict=False), X) <= 1e-5


def test_sequential_patched_on_the_instance_does_not_pair():
    model = conv_bn()
    inner = nn.Sequential(model[0], model[1])
    patch_instance(inner)  # the pair's order is no longer what the class says
    outer = nn.Sequential(inner, nn.ReLU())
    with pytest.raises(ValueError, match="cannot fold the batch norm"):
        fold_model(outer)
    assert relative_error(outer, fold_model(outer, strict=False), X) <= 1e-5


def test_traced_block_patched_on_the_instance_is_not_traced():
    model = convbnrelu_model()
    patch_instance(model[0])
    with pytest.raises(ValueError, match=r"'0\.bn' \(tracing '0' failed\).*replaced on the inst"):
        fold_model(model, X)
    kept = fold_model(model, X, strict=False)
    assert isinstance(kept[0].bn, nn.BatchNorm2d) and isinstance(kept[1].bn, nn.Identity)
    assert relative_error(model, kept, X) <= 1e-5


def test_the_advice_for_blocks_with_their_own_forward_is_given_once():
    model = randomize(nn.Sequential(ConvBNReLU(4, 4), ConvBNReLU(4, 4), ConvBNReLU(4, 4)))
    with pytest.raises(ValueError) as error:
        fold_model(model)
    message = str(error.value)
    assert all(f"'{i}.bn' (inside ConvBNReLU, which has its own forward)" in message
               for i in range(3))
    assert message.count("example_input=") == 1


# ---------------------------------------------------------------------------- shared modules


def test_batchnorm_after_a_shared_container_folds_into_a_copy():
    shared = nn.Sequential(DiracConv2d(4, 4, 3))
    model = randomize(nn.Sequential(shared, nn.BatchNorm2d(4), nn.ReLU(), shared))
    folded = fold_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded[0] is not folded[2]
    assert relative_error(model, folded, X) <= 1e-5


def test_shared_conv_and_batchnorm_fold_per_use():
    conv, bn = DiracConv2d(4, 4, 3), nn.BatchNorm2d(4)
    model = randomize(nn.Sequential(conv, bn, nn.ReLU(), conv, bn, nn.ReLU(), conv))
    folded = fold_model(model)
    assert [type(m).__name__ for m in folded] == ["Conv2d", "Identity", "ReLU"] * 2 + ["Conv2d"]
    assert relative_error(model, folded, X) <= 1e-5


# ---------------------------------------------------------------------------- traced blocks


def convbnrelu_model():
    blocks = [ConvBNReLU(4, 8), ConvBNReLU(8, 4, kernel=2), nn.Conv2d(4, 2, 1)]
    return randomize(nn.Sequential(*blocks))


def test_convbnrelu_needs_example_input_and_says_so():
    with pytest.raises(ValueError, match=r"'0\.bn' .*pass example_input="):
        fold_model(convbnrelu_model())


def test_convbnrelu_folds_through_a_trace():
    model = convbnrelu_model()
    folded = fold_model(model, X)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert isinstance(folded[0], ConvBNReLU) and isinstance(folded[0].bn, nn.Identity)
    assert isinstance(folded[1].conv, nn.Sequential)  # even kernel: pad + conv
    other = torch.randn(3, 4, 9, 7)
    assert relative_error(model, folded, other) <= 1e-5


def test_naming_a_traced_pair_again_is_harmless():
    model = convbnrelu_model()
    folded = fold_model(model, X, pairs=[("0.conv", "0.bn"), ("1.conv", "1.bn")])
    assert relative_error(model, folded, X) <= 1e-5


def test_a_conv_output_used_twice_is_not_folded():
    model = randomize(Residual())
    with pytest.raises(ValueError, match=r"cannot fold the batch norm\(s\) 'bn'"):
        fold_model(model, X)
    kept = fold_model(model, X, strict=False)
    assert isinstance(kept.bn, nn.BatchNorm2d) and isinstance(kept.block.bn, nn.Identity)
    assert relative_error(model, kept, X) <= 1e-5


def test_a_wrong_named_pair_fails_the_numerical_check():
    with pytest.raises(ValueError, match="differs from the model on example_input"):
        fold_model(randomize(Residual()), X, pairs=[("conv", "bn")])


def test_untraceable_block_reports_the_trace_and_folds_named_pairs():
    model = randomize(nn.Sequential(Branchy(), nn.ReLU()))
    with pytest.raises(ValueError, match=r"'0.bn' \(tracing '0' failed\).*'0' failed \(TypeE"):
        fold_model(model, X)
    folded = fold_model(model, X, pairs=[("0.conv", "0.bn")])
    assert isinstance(folded[0].bn, nn.Identity)
    assert relative_error(model, folded, X) <= 1e-5


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"pairs": [("0.conv", "0.bn")]}, ValueError, "pairs= needs example_input="),
        ({"pairs": ["0.conv"], "example_input": X}, TypeError, "pairs must be a sequence"),
        ({"pairs": [("0.bn", "0.conv")], "example_input": X}, ValueError,
         "'0.bn' is not a ConvNd"),
        ({"pairs": [("0.conv", "0.nope")], "example_input": X}, ValueError,
         "'0.nope' is not a BatchNorm"),
        ({"example_input": "x"}, TypeError, "example_input must be a tensor"),
        ({"strict": 1}, TypeError, "strict must be a bool"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fold_model(convbnrelu_model(), **kwargs)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_export_onnx_folds_convbnrelu(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from dirac_torch.onnx_export import export_onnx

    model = convbnrelu_model()
    path = export_onnx(model, tmp_path / "net.onnx", X)
    assert "BatchNormalization" not in [n.op_type for n in onnx.load(str(path)).graph.node]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": X.numpy()})
    with torch.no_grad():
        expected = model.eval()(X)
    assert float((torch.from_numpy(got) - expected).norm() / expected.norm()) <= 1e-5
