"""The Dirac parameterization as a ``torch.nn.utils.parametrize`` parametrization.

Registered on a conv's ``weight``, the module keeps the free weight ``W`` at
``conv.parametrizations.weight.original`` and every access to ``conv.weight`` returns

    W_hat = alpha * delta + beta * normalize(W)        (paper eq. 13)

so the conv trains the DiracNet way with no change to its ``forward``. Folding is
``torch.nn.utils.parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)`` in
place. To fold a copy and keep the original, use :func:`dirac_torch.fold.fold_model`: a
``copy.deepcopy`` shares PyTorch's generated parametrized class, and removing the
parametrization from the copy would delete ``weight`` from the original too.

>>> import torch
>>> from torch import nn
>>> conv = register_dirac(nn.Conv2d(4, 4, 3, padding=1, bias=False))
>>> sorted(conv.state_dict())
['parametrizations.weight.0.alpha', 'parametrizations.weight.0.beta', \
'parametrizations.weight.original']
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from dirac_core import validation as ck
from dirac_core.delta import weight_geometry
from dirac_core.initial import initial_scale

from . import kernels
from .conv_geometry import PLAIN_CONVS, DiracIdentityWarning, fuse_conv, identity_problem
from .torch_types import torch_device, torch_dtype

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class DiracParametrization(nn.Module):
    """``W -> alpha * delta + beta * normalize(W)`` for weights of one fixed shape.

    Parameters
    ----------
    weight_shape : sequence of int
        ``(O, I/groups, K1, ..., KL)`` of the weight it will parametrize.
    groups : int
        The conv's groups (``delta`` is block-diagonal over them).
    alpha_init, beta_init : float or array-like of shape ``()`` or ``(O,)``
        Initial scales (paper: 5 and 1e-3). A vector requires ``per_channel=True`` (or
        ``"beta"`` for ``beta_init``).
    per_channel : bool or "beta"
        One ``alpha``/``beta`` per output channel (the authors' "v2") instead of a scalar;
        ``"beta"``: a scalar alpha and one beta per output filter (their released v1 ImageNet
        file).
    normalize : bool
        ``False`` gives ``alpha * delta + beta * W``; with ``alpha = beta = 1`` and
        ``learnable=False`` that is the paper's eq. 14 ResNet-initialisation variant.
    policy : {"tile", "min"}
        Dirac tensor for unequal channel counts (see :func:`dirac_torch.dirac_tensor`).
    eps : float
        The clamp of the filter norm.
    learnable : bool
        ``alpha`` and ``beta`` are ``nn.Parameter`` s if true, else (persistent) buffers.
    dtype, device : optional
        Of ``alpha`` and ``beta``; :func:`register_dirac` uses the conv
        weight's.

    Attributes
    ----------
    alpha, beta : torch.Tensor of shape ``()`` or ``(O,)``
    geometry : dirac_core.delta.WeightGeometry
        Where the Dirac tensor has its ones: the forward pass adds ``alpha`` there by index
        and holds no Dirac tensor (``delta`` builds one on request).

    Raises
    ------
    ValueError
        Bad ``weight_shape``, ``groups``, ``policy``, ``eps``; ``alpha_init``/``beta_init`` of a
        shape other than ``()`` or ``(O,)``, or not finite.
    TypeError
        Non-bool flags, non-numeric ``alpha_init``/``beta_init``, non-floating ``dtype``.

    Examples
    --------
    >>> p = DiracParametrization((2, 2, 1), alpha_init=1.0, beta_init=0.0)
    >>> w_hat = p(torch.randn(2, 2, 1)).detach()[:, :, 0]
    >>> torch.equal(w_hat, torch.eye(2))  # beta = 0: the identity (zeros may carry W's sign)
    True
    """

    def __init__(
        self,
        weight_shape: Any,
        *,
        groups: int = 1,
        alpha_init: Any = 5.0,
        beta_init: Any = 1e-3,
        per_channel: bool = False,
        normalize: bool = True,
        policy: str = "tile",
        eps: float = 1e-12,
        learnable: bool = True,
        dtype: Any = None,
        device: Any = None,
    ) -> None:
        super().__init__()
        self.weight_shape = ck.check_shape(weight_shape, "weight_shape")
        self.groups = ck.groups_for(groups, self.weight_shape[0])
        self.policy = ck.policy_value(policy)
        self.eps = ck.positive_number(eps, "eps")
        self.per_channel = ck.per_channel_value(per_channel)
        self.normalize = ck.bool_value(normalize, "normalize")
        self.learnable = ck.bool_value(learnable, "learnable")
        dtype, device = torch_dtype(dtype), torch_device(device)
        self._inits = {
            "alpha": self._initial(alpha_init, "alpha_init", dtype),
            "beta": self._initial(beta_init, "beta_init", dtype),
        }
        for name, value in self._inits.items():
            value = value.to(dtype=dtype, device=device)
            if self.learnable:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.geometry = weight_geometry(self.weight_shape, self.groups, self.policy)
        self._registered = False  # see right_inverse

    def _initial(self, value: Any, name: str, dtype: torch.dtype) -> torch.Tensor:
        """``value`` as a float64 CPU tensor of shape ``()``, or ``(O,)`` when per-channel
        (:func:`dirac_core.initial.initial_scale`, the rule of every framework's layers)."""
        return torch.from_numpy(initial_scale(value, name, self.weight_shape[0],
                                                 self.per_channel, ck.dtype_name(dtype)))

    def reset_parameters(self) -> None:
        """Put ``alpha`` and ``beta`` back to their initial values."""
        with torch.no_grad():
            self.alpha.copy_(self._inits["alpha"])
            self.beta.copy_(self._inits["beta"])

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """``W_hat = alpha * delta + beta * normalize(W)`` (or ``beta * W``)."""
        if tuple(weight.shape) != self.weight_shape:
            raise ValueError(
                f"weight has shape {tuple(weight.shape)}; this parametrization was built for "
                f"{self.weight_shape}"
            )
        return self.compute(weight, self.alpha, self.beta)

    def compute(self, weight: torch.Tensor, alpha: Any, beta: Any) -> torch.Tensor:
        """``W_hat`` from the given tensors, unchecked (what :meth:`forward` returns)."""
        return kernels.dirac_weight(weight, alpha, beta, self.geometry, self.eps, self.normalize)

    @property
    def delta(self) -> torch.Tensor:
        """The Dirac tensor of this weight, materialised on request (in ``alpha``'s dtype and
        device): the forward pass never forms it."""
        return kernels.dirac_tensor(
            self.weight_shape, self.groups, self.policy, self.alpha.dtype, self.alpha.device
        )

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        """The free ``W`` whose ``W_hat`` is ``value``: what ``conv.weight = value`` stores.

        With ``normalize=False`` it is ``(value - alpha * delta) / beta``, exact up to rounding.
        With ``normalize=True`` no such ``W`` exists in general (every filter of
        ``normalize(W)`` has norm 1, or less below the clamp), so assigning raises; set the free
        weight itself (``conv.parametrizations.weight.original``) instead.

        Registration keeps the conv's weight as the free ``W`` (what :func:`register_dirac`
        promises): ``torch.nn.utils.parametrize`` calls this method once while registering,
        and that first call declines with ``NotImplementedError``, which torch reads as
        "identity".

        Raises
        ------
        ValueError
            ``normalize=True``; a ``beta`` entry of zero (``W`` is then undetermined); a
            ``value`` of another shape.

        Examples
        --------
        >>> from torch import nn
        >>> conv = register_dirac(nn.Conv1d(2, 2, 3, padding=1, bias=False), normalize=False,
        ...                       alpha_init=1.0, beta_init=0.5)
        >>> conv.weight = torch.zeros(2, 2, 3)
        >>> conv.parametrizations.weight.original[0, 0].tolist()
        [0.0, -2.0, 0.0]
        """
        if not self._registered:
            self._registered = True
            raise NotImplementedError("registration keeps the weight as the free W")
        if tuple(value.shape) != self.weight_shape:
            raise ValueError(f"the assigned weight has shape {tuple(value.shape)}; this "
                             f"parametrization was built for {self.weight_shape}")
        if self.normalize:
            raise ValueError(
                "cannot assign W_hat to a Dirac weight with normalize=True: W_hat = alpha * "
                "delta + beta * normalize(W) fixes each filter of normalize(W) to norm 1 (or "
                "less, below the eps clamp), so almost no tensor is the W_hat of any W; assign "
                "the free weight to conv.parametrizations.weight.original instead, or use "
                "normalize=False")
        with torch.no_grad():
            shape = (-1,) + (1,) * (value.dim() - 1)
            alpha = self.alpha.reshape(shape) if self.alpha.dim() else self.alpha
            beta = self.beta.reshape(shape) if self.beta.dim() else self.beta
            if bool((beta == 0).any()):
                raise ValueError(f"cannot assign W_hat while beta has a zero entry (beta="
                                 f"{self.beta.tolist()}): beta * W is then 0 whatever W is")
            work = torch.promote_types(value.dtype, beta.dtype)
            free = (value.to(work) - alpha.to(work) * self.delta.to(work)) / beta.to(work)
            return free.to(value.dtype)

    def extra_repr(self) -> str:
        return (
            f"weight_shape={self.weight_shape}, groups={self.groups}, "
            f"per_channel={self.per_channel}, normalize={self.normalize}, "
            f"policy={self.policy!r}, eps={self.eps}, learnable={self.learnable}"
        )


# Keywords that :func:`register_dirac` refuses, and why: it keeps the conv's weight as it is.
_FROM_THE_CONV = {
    "dtype": "takes dtype from conv.weight",
    "device": "takes device from conv.weight",
    "init_std": "keeps the conv's weight as W and draws none (scale conv.weight to change "
                "W's start)",
}


def check_register_keywords(kwargs: Any, door: str, own: tuple[str, ...] = ()) -> None:
    """The keywords of :func:`register_dirac` (``door``: the function they were given to, which
    takes its ``own`` too): those of :class:`DiracParametrization` but ``dtype``, ``device``,
    and no ``init_std``, which a layer that draws ``W`` takes. Checked before any conv is
    touched.

    Raises
    ------
    TypeError
        Any other keyword, naming it and the accepted ones (or why it is refused).

    Examples
    --------
    >>> check_register_keywords({"init_std": 0.1}, "register_dirac")
    Traceback (most recent call last):
    ...
    TypeError: register_dirac takes no keyword init_std: it keeps the conv's weight as W and \
draws none (scale conv.weight to change W's start)
    """
    for name in kwargs:
        if name in _FROM_THE_CONV:
            raise TypeError(f"{door} takes no keyword {name}: it {_FROM_THE_CONV[name]}")
    accepted = own + tuple(
        name for name, p in inspect.signature(DiracParametrization).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in _FROM_THE_CONV and name not in own)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"{door} takes no keyword {', '.join(unknown)}; accepted: "
                        f"{', '.join(accepted)}")


def register_dirac(conv: nn.Module, **kwargs: Any) -> nn.Module:
    """Register a :class:`DiracParametrization` on ``conv.weight``; return ``conv``.

    The conv's current weight becomes the free ``W`` (at
    ``conv.parametrizations.weight.original``); ``alpha``, ``beta`` and ``delta`` take the
    weight's dtype and device; ``groups`` is the conv's. The conv's padding is left as it is: for
    ``W_hat ~ alpha * delta`` to act as the identity, use "same" padding with an odd kernel (for
    even kernels use :class:`dirac_torch.DiracConv2d`, whose "same" is the spec's). A conv where
    ``delta`` is not the identity (a stride, ``padding=0`` with a kernel larger than 1, an even
    kernel with PyTorch's ``"same"``) gets a
    :class:`~dirac_torch.conv_geometry.DiracIdentityWarning` saying why; to convert only the
    convs where it is, use :func:`dirac_torch.convert.convert_model`.

    The conv then also answers ``conv.fuse()``: the plain ``nn.ConvNd`` it computes, which is
    what ``timm.utils.reparameterize_model`` puts in its place (the class PyTorch makes for a
    parametrized module belongs to that one module, so no other conv changes).

    Parameters
    ----------
    conv : nn.Conv1d, nn.Conv2d or nn.Conv3d
    **kwargs
        Any keyword of :class:`DiracParametrization` except ``dtype``/``device``, which come
        from ``conv.weight`` (``groups``, if given, must equal ``conv.groups``). No
        ``init_std``: the conv's current weight is ``W``
        (:func:`check_register_keywords`).

    Warns
    -----
    DiracIdentityWarning
        ``delta`` is not the identity of ``conv``
        (:func:`~dirac_torch.conv_geometry.identity_problem`).

    Raises
    ------
    TypeError
        ``conv`` is not an ``nn.Conv1d/2d/3d``, its weight is not floating, or an unknown
        keyword.
    ValueError
        ``conv.weight`` is already parametrized; ``groups`` differs from ``conv.groups``; any
        error of :class:`DiracParametrization`.

    Examples
    --------
    >>> conv = register_dirac(nn.Conv1d(3, 3, 3, padding=1), alpha_init=1.0, beta_init=0.0)
    >>> x = torch.randn(2, 3, 8)
    >>> torch.allclose(conv(x) - conv.bias[:, None], x)
    True
    """
    if not isinstance(conv, _CONVS):
        raise TypeError(
            f"conv must be an nn.Conv1d, nn.Conv2d or nn.Conv3d, got {type(conv).__name__}"
        )
    if parametrize.is_parametrized(conv, "weight"):
        raise ValueError(
            f"conv.weight of this {type(conv).__name__} is already parametrized; remove the "
            f"existing parametrization first"
        )
    weight = conv.weight
    if not weight.is_floating_point():
        raise TypeError(f"conv.weight must be floating, got dtype {weight.dtype}")
    check_register_keywords(kwargs, "register_dirac")
    groups = kwargs.pop("groups", conv.groups)
    if groups != conv.groups:
        raise ValueError(f"groups={groups!r} differs from the conv's groups={conv.groups}")
    dirac = DiracParametrization(
        tuple(weight.shape), groups=groups, dtype=weight.dtype, device=weight.device, **kwargs
    )
    problem = identity_problem(conv)
    if problem is not None:
        warnings.warn(
            f"register_dirac: delta is not the identity of this {type(conv).__name__}: "
            f"{problem}", DiracIdentityWarning, stacklevel=2,
        )
    parametrize.register_parametrization(conv, "weight", dirac)
    # The class PyTorch made for this one parametrized module (and its deep copies).
    type(conv).fuse = _fuse
    return conv


def _fuse(conv: nn.Module) -> nn.Module:
    """The plain conv a :func:`register_dirac` conv computes now (``W_hat`` materialised), as
    :func:`dirac_torch.fold.fold_model` makes it; ``timm.utils.reparameterize_model`` calls it."""
    return fuse_conv(conv, PLAIN_CONVS[len(conv.kernel_size)], ("forward", "_conv_forward"))
