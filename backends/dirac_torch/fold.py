"""Folding a trained model into a plain inference network.

After training, every Dirac weight ``W_hat = alpha * delta + beta * normalize(W)`` (paper eq. 13)
is materialised once, and every eval-mode batch norm that directly follows a convolution is
absorbed into it: with ``s = gamma / sqrt(var + eps)`` per output channel,

    BN(conv(x, W) + b) = conv(x, W * s) + (b - mean) * s + beta_bn

which holds for any sign of ``gamma``. What is left is a chain of plain ``nn.ConvNd`` (always
with a bias), activations, pooling and linear layers: no inference cost at all.

Which patterns fold
-------------------
:func:`fold_model` deep-copies the model, then:

1. Every convolution becomes a plain ``nn.Conv1d/2d/3d`` with a bias, holding the weight the
   module computes (``W_hat`` for a parametrized weight). Accepted: ``nn.Conv1d/2d/3d``
   (parametrized or not, any ``padding`` including PyTorch's ``"same"``) and
   ``dirac_torch.layers.DiracConv1d/2d/3d``. A padding that is not symmetric (the spec's
   ``"same"`` for even kernels) is kept exactly as ``nn.Sequential(pad, conv)`` with a
   ``nn.ConstantPadNd`` in front of an unpadded conv.
2. A ``BatchNorm1d/2d/3d`` is folded into a convolution in three cases:

   - it *directly follows the convolution in the same plain ``nn.Sequential``* (the previous
     sibling, or the last module of a previous sibling that is itself a plain ``nn.Sequential``);
   - ``example_input`` is given and a ``torch.fx`` trace of the module holding both shows the
     batch norm applied to the convolution's output and nothing else using that output (the
     ``ConvBNReLU`` block with its own ``forward``);
   - the pair is named in ``pairs=`` (as ``torch.ao.quantization.fuse_modules`` takes them),
     which needs ``example_input`` too.

   A folded batch norm becomes ``nn.Identity`` in its place, so the structure stays stable:
   indices into an ``nn.Sequential`` (``stem[2]`` is still the layer after the batch norm),
   attribute names and the names of every other module are those of ``model``.

   Whenever ``example_input`` is given, the folded model's output on it is compared with the
   eval-mode model's before it is returned. Nothing else folds: a batch norm after an activation,
   a pooling layer or a transposed convolution, with hooks, with an overridden ``forward`` or
   without running statistics stays, and :func:`fold_model` raises ``ValueError`` naming it and
   why (``strict=False`` keeps it instead).
3. Any remaining parametrization (on a ``Linear``, say) is removed with its value kept.

What would change the network silently is refused: a convolution with forward hooks or
pre-hooks, a convolution subclass that overrides ``forward``, ``__call__`` or ``_call_impl``,
or a convolution whose ``forward`` (or ``_call_impl``) was replaced on the instance, is an
error; a batch norm with hooks or such an override or instance patch is not folded; an
``nn.Sequential`` or traced block with such a patch is not looked into; a module on the way
from the pair's common container to the convolution or the batch norm that has hooks blocks the
pair; a container that is also used elsewhere in the model is copied before a batch norm is
folded into it, so its other uses keep computing what they computed.

Every other module (activations, ``NCReLU``, pooling, ``Linear``, user modules) is copied as
is, and containers keep their class and child names: a folded
:class:`~dirac_torch.models.DiracNet` is still one, its ``spec`` describing the trained
architecture, and ``folded.get_submodule("group0.1")`` is the folded ``group0.1``. The original
model is never modified; the result is in eval mode.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

import dirac_core
from dirac_core import validation as ck

from .conv_geometry import PLAIN_CONVS, plain_conv
from .layers import DiracConv1d, DiracConv2d, DiracConv3d
from .torch_types import work_dtype

# Relative 2-norm error allowed between the folded and the unfolded model on example_input.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}

_KNOWN_CONVS = (DiracConv1d, DiracConv2d, DiracConv3d, *PLAIN_CONVS.values())
# In eval mode SyncBatchNorm's forward is the plain batch norm of its running statistics.
_KNOWN_BN_FORWARDS = (_BatchNorm.forward, nn.SyncBatchNorm.forward)
_HOOKS = ("_forward_hooks", "_forward_pre_hooks")
# What ``module(x)`` runs besides ``forward``: overriding any of these (in a subclass, or by
# assignment on the instance) changes what a module computes without changing its class.
_CALL_METHODS = ("__call__", "_wrapped_call_impl", "_call_impl")


def fold_batchnorm(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    *,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode batch norm into the convolution before it (no autograd history).

    :func:`dirac_core.fold_batchnorm` on detached tensors with the ``torch`` backend: one
    contract, the same checks and errors. ``W' = W * s`` (``s = gamma / sqrt(var + eps)``
    broadcast over every axis but the first) and ``b' = (b - mean) * s + beta``; ``b = 0`` when
    ``bias`` is None. The arithmetic runs in float64 and the results have the weight's dtype.

    Parameters
    ----------
    weight : Tensor of shape ``(O, ...)``
    bias, gamma, beta, mean, var : Tensor of shape ``(O,)`` and the weight's dtype (``bias`` may
        be None)
    eps : float
        The batch norm's ``eps`` (``>= 0``).

    Returns
    -------
    (Tensor, Tensor)
        The folded weight and bias.

    Raises
    ------
    TypeError
        An argument that is not a tensor (a NumPy or JAX array is not converted, as
        ``dirac_torch``'s functions convert none), a non-floating tensor, or dtypes that
        differ from the weight's.
    ValueError
        A vector not of shape ``(O,)``; a non-finite vector; ``var < 0`` or ``var + eps <= 0``
        somewhere; a negative ``eps``.

    Examples
    --------
    >>> w, b = fold_batchnorm(torch.ones(2, 1, 1, 1), None, torch.tensor([2.0, -1.0]),
    ...                       torch.zeros(2), torch.zeros(2), torch.ones(2), eps=0.0)
    >>> w.flatten().tolist(), b.tolist()
    ([2.0, -1.0], [0.0, 0.0])
    """
    given = {"weight": weight, "bias": bias, "gamma": gamma, "beta": beta, "mean": mean,
             "var": var}
    for name, value in given.items():
        if value is not None or name != "bias":  # another library's array: not converted
            ck.require_native(value, name, torch.Tensor, "a torch.Tensor")
    tensors = [t if t is None else t.detach() for t in given.values()]
    return dirac_core.fold_batchnorm(*tensors, eps=eps, backend="torch")


def example_args(example_input: Any) -> tuple[torch.Tensor, ...]:
    """``example_input`` (a tensor or a non-empty sequence of tensors) as positional arguments.

    Raises
    ------
    TypeError
        Anything else.
    """
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    if isinstance(example_input, Sequence) and example_input and all(
        isinstance(x, torch.Tensor) for x in example_input
    ):
        return tuple(example_input)
    raise TypeError(
        f"example_input must be a tensor or a non-empty sequence of tensors, got "
        f"{type(example_input).__name__}"
    )


def fold_model(
    model: nn.Module,
    example_input: Any = None,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    strict: bool = True,
) -> nn.Module:
    """A new plain network equal to ``model`` in eval mode (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        A DiracNet from :mod:`dirac_torch.models`, or any model holding convolutions (Dirac or
        not) and batch norms. It is not modified.
    example_input : Tensor or sequence of Tensors, optional
        Positional inputs of ``model``. When given, batch norms inside modules with their own
        ``forward`` are folded through a ``torch.fx`` trace, and the result is checked against
        the eval-mode model on these inputs (relative error at most :data:`TOLERANCE` of the
        output dtype) before it is returned.
    pairs : sequence of (str, str), optional
        ``(conv_name, batchnorm_name)`` pairs to fold besides those found, named as in
        ``model.named_modules()``; needs ``example_input``.
    strict : bool
        If true (the default), a batch norm that cannot be folded is an error; if false it is
        kept, in eval mode.

    Returns
    -------
    nn.Module
        A deep copy, in eval mode, with every convolution a plain ``nn.ConvNd`` with bias and
        every foldable batch norm replaced by ``nn.Identity`` (module names and
        ``nn.Sequential`` indices are kept).

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``; ``strict`` is not a bool; bad ``example_input`` or
        ``pairs``; a convolution subclass with its own ``forward``, ``__call__`` or
        ``_call_impl``, or a convolution whose ``forward`` was replaced on the instance.
    ValueError
        A convolution with hooks; (``strict``) a batch norm that cannot be folded, naming it
        and why; a batch norm whose channel count differs from its convolution's; a ``pairs``
        entry that names no conv/batch norm, or ``pairs`` without ``example_input``; a folded
        model that does not reproduce ``model`` on ``example_input``.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    >>> [type(m).__name__ for m in fold_model(net)]
    ['Conv2d', 'Identity', 'ReLU']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    strict = dirac_core.validation.bool_value(strict, "strict")
    args = None if example_input is None else example_args(example_input)
    named = _named_pairs(model, pairs, args)
    folded = copy.deepcopy(model).eval()
    _check_convs(folded)
    with torch.no_grad():
        expected = None if args is None else folded(*args)
        folded = plain_structure(folded)
        folder = _Folder(folded)
        folder.fold_sequentials()
        if args is not None:
            folder.fold_traced(folded, "")
        folder.fold_named(named)
    folder.check_leftovers(strict, traced=args is not None)
    if expected is not None:
        _verify(folded, args, expected, folder.pairs)
    return folded


# ---------------------------------------------------------------------------- checks


def _hooked(module: nn.Module) -> list[str]:
    return [name.strip("_").replace("_", " ") for name in _HOOKS if getattr(module, name)]


def call_patch(module: nn.Module, forwards: tuple[str, ...] = ("forward",)) -> str | None:
    """How ``module`` computes something its class's ``forward`` does not say, or None: a
    subclass overriding ``__call__``/``_call_impl``, or one of those or of ``forwards``
    assigned on the instance (``conv.forward = ...``)."""
    cls = parametrize.type_before_parametrizations(module).__name__
    for method in _CALL_METHODS:
        if getattr(type(module), method) is not getattr(nn.Module, method):
            return f"{cls} overrides {method}"
    for method in (*forwards, *_CALL_METHODS):
        if method in vars(module):
            return f"its {method} is replaced on the instance"
    return None


def _check_convs(model: nn.Module) -> None:
    """Refuse convolutions that a plain ``nn.ConvNd`` would not reproduce."""
    for name, module in model.named_modules():
        if not isinstance(module, _ConvNd) or module.transposed:
            continue
        hooks = _hooked(module)
        if hooks:
            raise ValueError(
                f"cannot fold conv {name!r}: it has {' and '.join(hooks)}, which the plain conv "
                f"replacing it would not run; remove them (handle.remove()) before folding"
            )
        base = next((c for c in type(module).__mro__ if c in _KNOWN_CONVS), None)
        cls = parametrize.type_before_parametrizations(module).__name__
        plain = f"a plain nn.Conv{len(module.kernel_size)}d may not compute the same thing"
        for method in ("forward", "_conv_forward"):
            if base is None or getattr(type(module), method) is not getattr(base, method):
                raise TypeError(f"cannot fold {cls} {name!r}: it overrides {method}, so {plain}")
        patch = call_patch(module, ("forward", "_conv_forward"))
        if patch is not None:
            raise TypeError(f"cannot fold {cls} {name!r}: {patch}, so {plain}")


def _batchnorm_problem(bn: nn.Module) -> str | None:
    """Why ``bn`` cannot be folded whatever precedes it, or None."""
    hooks = _hooked(bn)
    if hooks:
        return f"it has {' and '.join(hooks)}"
    if type(bn).forward not in _KNOWN_BN_FORWARDS:
        return f"{type(bn).__name__} overrides forward"
    patch = call_patch(bn)
    if patch is not None:
        return patch
    if bn.running_mean is None:
        return "it has no running statistics"
    return None


def _verify(
    folded: nn.Module, args: tuple[torch.Tensor, ...], expected: Any, pairs: list[tuple]
) -> None:
    with torch.no_grad():
        got = folded(*args)
    for want, have in zip(_tensors(expected), _tensors(got), strict=True):
        error = float((have.double() - want.double()).norm() / want.double().norm())
        allowed = TOLERANCE.get(want.dtype, 1e-4)
        if not error <= allowed:
            raise ValueError(
                f"the folded model differs from the model on example_input: relative error "
                f"{error:.3g} > {allowed:g}; folded pairs (conv, batch norm, how): {pairs}"
            )


def _tensors(output: Any) -> list[torch.Tensor]:
    """The tensors of a model output (a tensor, or tuples/lists/dicts of them) in order."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, list | tuple):
        return [t for item in output for t in _tensors(item)]
    return []


# ---------------------------------------------------------------------------- plain convs


def plain_structure(model: nn.Module) -> nn.Module:
    """``model``, changed in place, with every convolution a plain ``nn.ConvNd`` with bias
    holding the weight it computes and every parametrization removed (its value kept); batch
    norms are left alone. The first step of :func:`fold_model`, and what rebuilds the structure
    of a folded model before its weights are loaded.

    Returns
    -------
    nn.Module
        ``model`` (a new module only when ``model`` is itself a convolution).
    """
    with torch.no_grad():
        model = _plain_convs(model, set())
        _remove_parametrizations(model)
    return model



def _plain_convs(module: nn.Module, done: set[int]) -> nn.Module:
    """``module`` with every convolution made plain. A conv used in several places gets one
    plain copy per place; a container is processed once however often it is used."""
    if isinstance(module, _ConvNd) and not module.transposed:
        return plain_conv(module)
    if id(module) not in done:
        done.add(id(module))
        for name, child in list(module._modules.items()):  # every slot, shared or not
            if child is not None:
                setattr(module, name, _plain_convs(child, done))
    return module


def _is_plain_sequential(module: nn.Module) -> bool:
    # A subclass with its own forward (or call) may not run its children in order.
    return (
        isinstance(module, nn.Sequential)
        and type(module).forward is nn.Sequential.forward
        and call_patch(module) is None
    )


def _tail(module: nn.Module) -> nn.Module:
    """The last module of nested plain ``nn.Sequential`` s (``module`` itself otherwise)."""
    while _is_plain_sequential(module) and len(module):
        module = module[-1]
    return module


def _tail_name(root: nn.Module, name: str) -> str:
    """The qualified name of ``_tail(root.get_submodule(name))``."""
    module = root.get_submodule(name)
    while _is_plain_sequential(module) and len(module):
        last = list(module._modules)[-1]
        name, module = f"{name}.{last}" if name else last, module[-1]
    return name


# ---------------------------------------------------------------------------- batch norms


class _Folder:
    """Finds conv -> batch norm pairs in ``root`` and folds them in place.

    Each pair belongs to a *container*: the module whose ``forward`` applies the batch norm to
    the conv's output (a plain ``nn.Sequential`` or a traced module). Every use of the container
    runs that forward, so folding inside it is right for all of them; below it, a module also
    used elsewhere is copied first, and a module with hooks blocks the pair.
    """

    def __init__(self, root: nn.Module) -> None:
        self.root = root
        self.pairs: list[tuple[str, str, str]] = []  # (conv, batch norm, how)
        self.trace_errors: dict[str, str] = {}

    def fold_sequentials(self) -> None:
        """Fold every batch norm directly after a conv in a plain ``nn.Sequential``; inner
        containers first, so a container copied by its parent is already folded."""
        for name, seq in reversed(list(self.root.named_modules())):
            if not _is_plain_sequential(seq):
                continue
            prefix = f"{name}." if name else ""
            for before, after in itertools.pairwise(list(seq._modules)):
                if isinstance(seq._modules[after], _BatchNorm):
                    conv = _tail_name(self.root, prefix + before)
                    self._fold(conv, prefix + after, name, "sequential")

    def fold_traced(self, module: nn.Module, name: str) -> None:
        """Fold the pairs a ``torch.fx`` trace of ``module`` shows; if it cannot be traced,
        try its children."""
        foldable = any(_batchnorm_problem(m) is None for m in module.modules()
                       if isinstance(m, _BatchNorm))
        if not foldable or _LeafTracer().is_leaf_module(module, name):
            return
        try:
            patch = call_patch(module)
            if patch is not None:  # the trace would show the class's forward, not what runs
                raise TypeError(patch)
            graph = _LeafTracer().trace(module)
        except Exception as exc:  # user code can fail to trace in any way
            self.trace_errors[name] = f"{type(exc).__name__}: {exc}"
            for child, sub in list(module.named_children()):
                self.fold_traced(sub, f"{name}.{child}" if name else child)
            return
        prefix = f"{name}." if name else ""
        for conv, bn in _graph_pairs(graph, module):
            self._fold(prefix + _tail_name(module, conv), prefix + bn, name, "traced")

    def fold_named(self, named: list[tuple[str, str]]) -> None:
        for conv, bn in named:
            container = ".".join(_common(conv.split("."), bn.split(".")))
            conv = _tail_name(self.root, conv)
            if any(pair[:2] == (conv, bn) for pair in self.pairs):
                continue  # found by the trace already
            problem = self._fold(conv, bn, container, "named")
            if problem is not None:
                raise ValueError(f"pairs: cannot fold batch norm {bn!r} into {conv!r}: {problem}")

    def _fold(self, conv_name: str, bn_name: str, container: str, how: str) -> str | None:
        """Fold ``bn_name`` into ``conv_name``; None if done, else why not."""
        conv, bn = self.root.get_submodule(conv_name), self.root.get_submodule(bn_name)
        if type(conv) not in PLAIN_CONVS.values():
            return f"{conv_name!r} is not a convolution that folds"
        problem = _batchnorm_problem(bn) if isinstance(bn, _BatchNorm) else "not a batch norm"
        if problem is not None:
            return problem
        hooked = [n for n in self._below(container, conv_name) + self._below(container, bn_name)
                  if _hooked(self.root.get_submodule(n))]
        if hooked:
            return f"{hooked[0]!r} has hooks and would see a different tensor"
        if bn.num_features != conv.out_channels:
            raise ValueError(
                f"batch norm {bn_name!r} has {bn.num_features} channels but the convolution "
                f"before it, {conv_name!r}, has {conv.out_channels} outputs"
            )
        conv = self._unshared(container, conv_name)
        parent = self._unshared(container, bn_name.rpartition(".")[0])
        gamma = bn.weight if bn.affine else torch.ones_like(bn.running_mean)
        beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        vectors = (conv.bias, gamma, beta, bn.running_mean, bn.running_var)
        # One dtype for the checked fold: the wider of the conv's and the statistics', at least
        # float32, as the batch norm's own arithmetic (eps=1e-50 is 0 there, as in its
        # forward); copy_ casts back to the conv's.
        work = work_dtype(torch.promote_types(conv.weight.dtype, bn.running_var.dtype))
        try:
            weight, bias = fold_batchnorm(
                *(t.to(work) for t in (conv.weight, *vectors)), eps=bn.eps
            )
        except ValueError as error:
            raise ValueError(f"batch norm {bn_name!r} does not fold: {error}") from None
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        setattr(parent, bn_name.rpartition(".")[2], nn.Identity())
        self.pairs.append((conv_name, bn_name, how))
        return None

    @staticmethod
    def _below(container: str, name: str) -> list[str]:
        """The names of the modules on the way from ``container`` (excluded) to ``name``."""
        parts = name.split(".") if name else []
        start = len(container.split(".")) if container else 0
        return [".".join(parts[:depth]) for depth in range(start + 1, len(parts) + 1)]

    def _unshared(self, container: str, name: str) -> nn.Module:
        """``root.get_submodule(name)``, after copying every module below ``container`` on the
        way to it that is also used elsewhere (folding into it must not change its other uses)."""
        for below in self._below(container, name):
            parent, _, attr = below.rpartition(".")
            holder = self.root.get_submodule(parent)
            if _owners(self.root)[id(holder._modules[attr])] > 1:
                setattr(holder, attr, copy.deepcopy(holder._modules[attr]))
        return self.root.get_submodule(name)

    def check_leftovers(self, strict: bool, *, traced: bool) -> None:
        leftover = [n for n, m in self.root.named_modules() if isinstance(m, _BatchNorm)]
        if not (strict and leftover):
            return
        reasons, advice = [], []
        for name in leftover:
            why, hint = self._why(name, traced)
            reasons.append(f"{name!r} ({why})")
            if hint is not None and hint not in advice:  # said once, however many it concerns
                advice.append(hint)
        raise ValueError(
            f"cannot fold the batch norm(s) {', '.join(reasons)}: a batch norm folds only into "
            f"an nn.ConvNd whose output it alone takes (no activation, pooling or other layer "
            f"in between), without hooks and with running statistics. "
            f"{''.join(hint + ' ' for hint in advice)}Pass strict=False to keep them unfolded"
        )

    def _why(self, name: str, traced: bool) -> tuple[str, str | None]:
        """Why the batch norm ``name`` was not folded, and the advice that goes with it."""
        problem = _batchnorm_problem(self.root.get_submodule(name))
        if problem is not None:
            return problem, None
        parent = self.root.get_submodule(name.rpartition(".")[0])
        if _is_plain_sequential(parent):
            return "no convolution directly before it", None
        if not traced:
            return f"inside {type(parent).__name__}, which has its own forward", (
                "To fold batch norms inside modules with their own forward, pass "
                "example_input= (a torch.fx trace finds the pairs) or name the pairs in pairs=."
            )
        failed = [k for k in self.trace_errors if k == "" or name.startswith(k + ".")]
        if failed:
            where = repr(max(failed, key=len) or "<model>")
            error = self.trace_errors[max(failed, key=len)]
            return f"tracing {where} failed", (
                f"Tracing {where} failed ({error}): name its pairs in pairs=."
            )
        return "the trace shows no convolution whose output only it takes", None


def _common(a: list[str], b: list[str]) -> list[str]:
    """The common leading parts of two dotted names (without the last part of either)."""
    pairs = zip(a[:-1], b[:-1], strict=False)
    return [x for x, _ in itertools.takewhile(lambda p: p[0] == p[1], pairs)]


def _owners(root: nn.Module) -> dict[int, int]:
    """For every module under ``root``, in how many (container, attribute) slots it sits."""
    slots: dict[int, set[tuple[int, str]]] = {}
    for container in root.modules():
        for attr, child in container._modules.items():
            if child is not None:
                slots.setdefault(id(child), set()).add((id(container), attr))
    return {key: len(value) for key, value in slots.items()}


class _LeafTracer(fx.Tracer):
    """Traces through containers; convs, batch norms and modules without children are leaves."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            isinstance(m, _ConvNd | _BatchNorm)
            or not any(True for _ in m.children())
            or super().is_leaf_module(m, module_qualified_name)
        )


def _graph_pairs(graph: fx.Graph, root: nn.Module) -> Iterator[tuple[str, str]]:
    """``(conv, batch norm)`` names where the graph feeds a conv's output to a batch norm alone."""
    calls = [n for n in graph.nodes if n.op == "call_module"]
    count: dict[str, int] = {}
    for node in calls:
        count[node.target] = count.get(node.target, 0) + 1
    for node in calls:
        source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if (
            isinstance(root.get_submodule(node.target), _BatchNorm)
            and isinstance(source, fx.Node)
            and source.op == "call_module"
            and type(root.get_submodule(source.target)) in PLAIN_CONVS.values()
            and len(source.users) == 1
            and count[node.target] == count[source.target] == 1
        ):
            yield source.target, node.target


def _named_pairs(
    model: nn.Module, pairs: Any, args: tuple[torch.Tensor, ...] | None
) -> list[tuple[str, str]]:
    """``pairs`` checked: (conv, batch norm) names of modules of ``model``."""
    if pairs is None:
        return []
    if args is None:
        raise ValueError("pairs= needs example_input=: a named fold is always checked on it")
    if isinstance(pairs, str) or not isinstance(pairs, Sequence) or not all(
        isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2
        and all(isinstance(s, str) for s in p) for p in pairs
    ):
        raise TypeError(f"pairs must be a sequence of (conv_name, batchnorm_name), got {pairs!r}")
    modules = dict(model.named_modules())
    for conv, bn in pairs:
        for name, kind in ((conv, _ConvNd), (bn, _BatchNorm)):
            if not isinstance(modules.get(name), kind):
                raise ValueError(
                    f"pairs: {name!r} is not a {kind.__name__.strip('_')} of the model "
                    f"(got {type(modules.get(name)).__name__})"
                )
    return [tuple(p) for p in pairs]


# ---------------------------------------------------------------------------- parametrizations


def _remove_parametrizations(model: nn.Module) -> None:
    for module in _parametrized(model):
        _own_class(module)
        for name in list(module.parametrizations):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def _own_class(module: nn.Module) -> None:
    """Give ``module`` a private copy of its parametrized class.

    A deep copy shares the class PyTorch generates for a parametrized module, and
    ``remove_parametrizations`` deletes the tensor's property from that class: on the shared
    class it would break the original model.
    """
    cls = type(module)
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)


def _parametrized(model: nn.Module) -> Iterator[nn.Module]:
    return (m for m in list(model.modules()) if parametrize.is_parametrized(m))
