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

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from dirac_core.padding import Pairs, resolve_padding
from dirac_core.validation import as_tuple, canonical_padding

from . import kernels
from .parametrize import DiracParametrization


class _DiracConvNd:
    """Shared body of :class:`DiracConv1d`, :class:`DiracConv2d` and :class:`DiracConv3d`."""

    _spatial_dims: int
    padding_pairs: Pairs

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
        per_channel: bool = False,
        normalize: bool = True,
        policy: str = "tile",
        eps: float = 1e-12,
        *,
        learnable: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        dims = self._spatial_dims
        kernel = as_tuple(kernel_size, dims, "kernel_size")
        stride = as_tuple(stride, dims, "stride")
        dilation = as_tuple(dilation, dims, "dilation")
        pairs = resolve_padding(canonical_padding(padding, dims, stride), kernel, dilation)
        symmetric = all(left == right for left, right in pairs)
        super().__init__(  # type: ignore[call-arg]
            in_channels, out_channels, kernel, stride,
            padding=tuple(left for left, _ in pairs) if symmetric else 0,
            dilation=dilation, groups=groups, bias=bias, device=device, dtype=dtype,
        )
        # An asymmetric padding has no nn.ConvNd form: the pairs stand in ``padding`` so that
        # code copying ``padding`` into a plain nn.ConvNd fails loudly instead of shifting.
        self.padding_pairs = pairs
        if not symmetric:
            self.padding = pairs
        dirac = DiracParametrization(
            tuple(self.weight.shape), groups=groups, alpha_init=alpha_init,
            beta_init=beta_init, per_channel=per_channel, normalize=normalize, policy=policy,
            eps=eps, learnable=learnable, dtype=self.weight.dtype, device=self.weight.device,
        )
        parametrize.register_parametrization(self, "weight", dirac)

    def reset_parameters(self) -> None:
        """``W ~ N(0, 1)``, bias 0, ``alpha``/``beta`` to their inits.

        A zero bias keeps the layer ``alpha`` times the identity at ``beta = 0``.
        """
        dirac = parametrize.is_parametrized(self, "weight")
        weight = self.parametrizations.weight.original if dirac else self.weight
        with torch.no_grad():
            nn.init.normal_(weight)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = self._spatial_dims
        if x.dim() != dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; {type(self).__name__} expects "
                f"(N, {self.in_channels}, ...) with {dims} spatial dims"
            )
        return kernels.conv(
            x, self.weight, self.bias, self.stride, self.padding_pairs, self.dilation,
            self.groups,
        )


_LAYER_DOC = """{n}-d convolution with the Dirac parameterization (paper eq. 13).

    A ``nn.Conv{n}d`` whose ``weight`` is ``W_hat = alpha * delta + beta * normalize(W)``, from
    the free ``W ~ N(0, 1)`` at ``.parametrizations.weight.original``, the scales ``.alpha``
    (init 5) and ``.beta`` (init 1e-3), and the cached Dirac tensor ``delta``.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, dilation, groups, bias
        As ``nn.Conv{n}d`` (``bias`` defaults to False; a bias starts at zero).
    padding : int, ints, (left, right) pairs, "valid" or "same"
        Default ``"same"``, the spec's: asymmetric for even kernels, so the Dirac tensor is
        the identity. ``"same"`` requires ``stride=1``.
    alpha_init, beta_init, per_channel, normalize, policy, eps, learnable
        See :class:`dirac_torch.DiracParametrization`.
    device, dtype
        Of every parameter and buffer.

    Attributes
    ----------
    padding_pairs : tuple of (left, right) pairs, the padding actually applied.

    Raises
    ------
    ValueError
        ``"same"`` with stride > 1; bad channel/group counts, kernel size, stride, dilation,
        alpha/beta shapes; at call time an input of the wrong rank or channel count.

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

    Doubles the size of ``dim``; the gradient at exactly zero is zero on both halves.

    Examples
    --------
    >>> NCReLU()(torch.tensor([[-1.0, 2.0]]))
    tensor([[ 0.,  2., -1.,  0.]])
    """

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be an int, got {type(dim).__name__}: {dim!r}")
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not -x.dim() <= self.dim < x.dim():
            raise ValueError(f"dim={self.dim} is out of range for x of shape {tuple(x.shape)}")
        return kernels.ncrelu(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
