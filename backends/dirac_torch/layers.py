"""Dirac convolution layers and the NCReLU module (paper section 2).

``DiracConv1d/2d/3d`` are ``nn.Conv1d/2d/3d`` whose ``weight`` carries a
:class:`~dirac_torch.parametrize.DiracParametrization`, so ``layer.weight`` is
``W_hat = alpha * delta + beta * normalize(W)`` and folding is
``torch.nn.utils.parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)`` in
place. To fold a copy and keep the original, use :func:`dirac_torch.fold.fold_model`: a
``copy.deepcopy`` shares PyTorch's generated parametrized class, and removing the
parametrization from the copy would delete ``weight`` from the original too.
Their ``"same"`` padding is the spec's: left ``d*floor(K/2)``, right ``d*(K-1) - left``, so
at ``beta = 0`` the layer is ``alpha`` times the identity for every kernel size.

>>> import torch
>>> layer = DiracConv2d(8, 4, 3)              # after NCReLU of 4 channels: 2*4 -> 4
>>> x = torch.randn(2, 4, 5, 5)
>>> with torch.no_grad():
...     _ = layer.beta.zero_()
...     y = layer(NCReLU()(x))
>>> torch.allclose(y, 5 * x)                  # paper eq. 11: conv(ncrelu(x), delta) == x
True
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from dirac_core.validation import (
    as_tuple,
    check_input_dtype,
    check_output_size,
    dirac_init_std,
    groups_for,
    int_value,
    layer_geometry,
    ncrelu_axis,
    positive_int,
)

from . import kernels
from ._autograd import DiracWeight, recompute, tracing
from .conv_geometry import fuse_conv
from .parametrize import DiracParametrization
from .torch_types import torch_device, torch_dtype


class _DiracConvNd:
    """Shared body of :class:`DiracConv1d`, :class:`DiracConv2d` and :class:`DiracConv3d`."""

    _spatial_dims: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = "same",
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = False,
        alpha_init: Any = 5.0,
        beta_init: Any = 1e-3,
        per_channel: bool | str = False,
        normalize: bool = True,
        policy: str = "tile",
        eps: float = 1e-12,
        *,
        padding_mode: str = "zeros",
        init_std: float | None = None,
        learnable: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        dims = self._spatial_dims
        device, dtype = torch_device(device), torch_dtype(dtype)
        in_channels = positive_int(in_channels, "in_channels")
        out_channels = positive_int(out_channels, "out_channels")
        groups = groups_for(groups, out_channels, in_channels)
        # Read by reset_parameters, which nn.ConvNd.__init__ calls.
        self.init_std = dirac_init_std(init_std, normalize)
        self._he_init = self.init_std is None
        kernel = as_tuple(kernel_size, dims, "kernel_size")
        given = {"padding": padding, "stride": stride, "dilation": dilation}
        strides, dilations, _ = layer_geometry(kernel, stride, padding, dilation)
        super().__init__(  # type: ignore[call-arg]
            in_channels, out_channels, kernel, strides, padding=0, dilation=dilations,
            groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype,
        )
        self._set_geometry(given)
        dirac = DiracParametrization(
            tuple(self.weight.shape), groups=groups, alpha_init=alpha_init,
            beta_init=beta_init, per_channel=per_channel, normalize=normalize, policy=policy,
            eps=eps, learnable=learnable, dtype=self.weight.dtype, device=self.weight.device,
        )
        parametrize.register_parametrization(self, "weight", dirac)

    def __setattr__(self, name: str, value: Any) -> None:
        # As on nn.ConvNd, assigning stride, padding or dilation changes what forward computes:
        # checked, with the padding pairs recomputed (or an error, and nothing changed).
        if name in _GEOMETRY and "_geometry_given" in self.__dict__:
            self._set_geometry({**self._geometry_given, name: value})
        else:
            super().__setattr__(name, value)

    def _set_geometry(self, given: dict[str, Any]) -> None:
        stride, dilation, pairs = layer_geometry(
            tuple(self.kernel_size), given["stride"], given["padding"], given["dilation"]
        )
        symmetric = all(left == right for left, right in pairs)
        # An asymmetric padding has no nn.ConvNd form: the pairs stand in ``padding`` so that
        # code copying ``padding`` into a plain nn.ConvNd fails loudly instead of shifting.
        values = {
            "stride": stride, "dilation": dilation, "padding_pairs": pairs,
            "padding": tuple(left for left, _ in pairs) if symmetric else pairs,
            "_geometry_given": given,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def reset_parameters(self) -> None:
        """``W ~ N(0, init_std**2)`` (He-initialised when ``normalize=False``), bias 0,
        ``alpha``/``beta`` to their inits.

        A normalized ``W`` has no scale of its own; without normalization (eq. 14,
        ``W_hat = delta + W``) ``W`` is an ordinary residual-branch weight and gets an ordinary
        conv's He init. A zero bias keeps the layer ``alpha`` times the identity at ``beta = 0``.
        """
        dirac = parametrize.is_parametrized(self, "weight")
        weight = self.parametrizations.weight.original if dirac else self.weight
        with torch.no_grad():
            if self._he_init:
                nn.init.kaiming_normal_(weight, nonlinearity="relu")
            else:
                nn.init.normal_(weight, std=self.init_std)
            if self.bias is not None:
                nn.init.zeros_(self.bias)
        if dirac:
            self.dirac.reset_parameters()

    @property
    def dirac(self) -> DiracParametrization:
        """The :class:`DiracParametrization` on ``weight``."""
        return self.parametrizations.weight[0]

    @property
    def alpha(self) -> torch.Tensor:
        """The identity's scale: a scalar, or one per output channel."""
        return self.dirac.alpha

    @property
    def beta(self) -> torch.Tensor:
        """The scale of ``normalize(W)``: a scalar, or one per output channel."""
        return self.dirac.beta

    def fuse(self) -> nn.Module:
        """The plain ``nn.ConvNd`` (with a bias) computing what this layer computes now.

        ``W_hat`` materialised once, as :func:`dirac_torch.fold.fold_model` does for it (an
        asymmetric padding gives ``nn.Sequential(pad, conv)``). ``timm.utils.reparameterize_model``
        calls it, replacing the layer by the result; the layer itself is not modified.

        Raises
        ------
        ValueError
            The layer has forward hooks or pre-hooks.
        TypeError
            A subclass overrides ``forward``.
        """
        return fuse_conv(self, _DiracConvNd, ("forward",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = self._spatial_dims
        if x.dim() != dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; {type(self).__name__} expects "
                f"(N, {self.in_channels}, ...) with {dims} spatial dims"
            )
        weight = self.weight
        chain = self.parametrizations.weight if parametrize.is_parametrized(self) else None
        if chain is None or len(chain) != 1 or tracing():
            return self._conv(x, weight)
        # The conv would keep W_hat, a second copy of every weight, alive from the forward
        # pass to the backward: it keeps a recipe instead and recomputes W_hat from W there.
        hooks = _recompute_hooks(chain[0], chain.original, weight)
        with torch.autograd.graph.saved_tensors_hooks(*hooks):
            return self._conv(x, weight)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        try:
            return kernels.conv(
                x, weight, self.bias, self.stride, self.padding_pairs, self.dilation,
                self.groups, self.padding_mode,
            )
        except RuntimeError as error:
            # torch refused the input: say why in the spec's words (checked only now, so
            # that the step pays nothing and autocast's mixed dtypes still pass).
            try:
                check_output_size(tuple(x.shape), tuple(weight.shape), self.stride,
                                  self.padding_pairs, self.dilation)
                if not torch.is_autocast_enabled(x.device.type):  # mixes dtypes on purpose
                    check_input_dtype(x.dtype, weight.dtype)
            except (TypeError, ValueError) as clear:
                raise clear from error
            raise


def _recompute_hooks(
    dirac: DiracParametrization, original: torch.Tensor, weight: torch.Tensor
) -> tuple[Any, Any]:
    """``saved_tensors_hooks`` that save ``weight`` (``dirac(original)``, the ``W_hat`` of
    this forward pass) as a recipe: the backward recomputes it, bit for bit, from the same
    ``W``, ``alpha`` and ``beta`` tensors, after checking that none of them changed in place
    since the forward (as autograd checks what it saves). The recompute multiplies ``W`` by
    the per-filter factors that the weight node saved for its own backward
    (:func:`dirac_torch._autograd.recompute`)."""
    sources = (original, dirac.alpha, dirac.beta)
    versions = [t._version for t in sources]
    target = weakref.ref(weight)  # the hooks outlive the forward: they must not keep W_hat
    node = weight.grad_fn if getattr(weight.grad_fn, "_forward_cls", None) is DiracWeight else None

    def pack(t: torch.Tensor) -> Any:
        return _Recipe() if t is target() else t

    def unpack(saved: Any) -> torch.Tensor:
        if not isinstance(saved, _Recipe):
            return saved
        if [t._version for t in sources] != versions:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                "inplace operation: the weight, alpha or beta of a Dirac convolution changed "
                "between its forward and backward passes"
            )
        if node is None or torch.is_grad_enabled():
            # Under a create_graph backward this builds the graph from W_hat to W, alpha, beta.
            return dirac.compute(*sources)
        # From the node's saved W and per-filter factors: no reduction is repeated.
        return recompute(node, dirac.alpha)

    return pack, unpack


class _Recipe:
    """The stand-in ``W_hat`` saved for the backward (it is recomputed there)."""

    __slots__ = ()


_GEOMETRY = ("stride", "padding", "dilation")


_LAYER_DOC = """{n}-d convolution with the Dirac parameterization (paper eq. 13).

    A drop-in ``nn.Conv{n}d`` whose ``weight`` is
    ``W_hat = alpha * delta + beta * normalize(W)``, from the free ``W ~ N(0, init_std**2)``
    (He-initialised when ``normalize=False``) at ``.parametrizations.weight.original``, the
    scales ``.alpha`` (init 5) and ``.beta`` (init 1e-3). No Dirac tensor is stored: ``alpha``
    is added at the kernel centres by index, and ``W_hat`` is recomputed in the backward
    rather than kept from the forward pass.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, dilation, groups, bias
        As ``nn.Conv{n}d`` (``bias`` defaults to False; a bias starts at zero).
    padding : int, ints, (left, right) pairs, "valid" or "same"
        Default ``"same"``, the spec's: asymmetric for even kernels, so the Dirac tensor is
        the identity. ``"same"`` requires ``stride=1``.
    alpha_init, beta_init, per_channel, normalize, policy, eps, learnable
        See :class:`dirac_torch.DiracParametrization`.
    padding_mode : {{"zeros", "reflect", "replicate", "circular"}}
        As ``nn.Conv{n}d``: what the padding is filled with.
    init_std : float, optional
        Standard deviation of the initial ``W`` (default 0.1, the authors' code; the paper's
        text says 1). ``W`` is normalized, so it does not change the output, only how fast
        ``W`` learns: the gradient with respect to ``W`` scales as ``1 / ||W||``. Refused
        with ``normalize=False``, where ``W`` is He-initialised.
    device, dtype
        Of every parameter and buffer (``"meta"`` builds without memory: ``to_empty`` then
        ``reset_parameters`` makes the layer whole).

    Attributes
    ----------
    stride, dilation, padding
        As on ``nn.Conv{n}d``; assigning one is checked and changes what the layer computes.
    padding_pairs : tuple of (left, right) pairs, the padding actually applied.

    Raises
    ------
    ValueError
        ``"same"`` with stride > 1 (also when assigned later); bad channel/group counts, kernel
        size, stride, dilation, padding mode, alpha/beta shapes; a device that is not available;
        at call time an input of the wrong rank or channel count.

    Examples
    --------
    >>> layer = DiracConv{n}d(4, 4, 3)
    >>> layer(torch.randn(2, 4{spatial})).shape
    torch.Size([2, 4{spatial}])
"""


class DiracConv1d(_DiracConvNd, nn.Conv1d):
    __doc__ = _LAYER_DOC.format(n=1, spatial=", 7")
    _spatial_dims = 1


class DiracConv2d(_DiracConvNd, nn.Conv2d):
    __doc__ = _LAYER_DOC.format(n=2, spatial=", 7, 7")
    _spatial_dims = 2


class DiracConv3d(_DiracConvNd, nn.Conv3d):
    __doc__ = _LAYER_DOC.format(n=3, spatial=", 5, 5, 5")
    _spatial_dims = 3


class NCReLU(nn.Module):
    """Negative-concatenated ReLU: ``cat([max(x, 0), min(x, 0)], dim)`` (paper eq. 10).

    Doubles the size of ``dim``; NaN reaches both halves. The gradient is zero on both halves
    at exactly zero and at a NaN, as the spec says. ``x`` must be floating, as for
    :func:`dirac_torch.ncrelu` (an integer or bool tensor raises ``TypeError``).

    Examples
    --------
    >>> NCReLU()(torch.tensor([[-1.0, 2.0]]))
    tensor([[ 0.,  2., -1.,  0.]])
    """

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = int_value(dim, "dim")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.ncrelu(x, ncrelu_axis(x, self.dim, "dim"))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
