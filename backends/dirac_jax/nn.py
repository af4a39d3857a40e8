"""Flax NNX layers and DiracNets built from the architecture specs of :mod:`dirac_core.nets`.

Layouts are PyTorch's (``N, C, *spatial`` activations, ``O, I/groups, *K`` weights), so a
torch model's arrays carry over unchanged (:mod:`dirac_jax.interop`).

- :class:`Conv`: a plain N-d convolution with the spec's padding (``"same"`` is asymmetric for
  even kernels, so the Dirac tensor is the identity);
- :class:`DiracConv`: its weight is ``W_hat = alpha * delta + beta * normalize(W)`` (paper eq.
  13), computed by :func:`dirac_jax.ops.dirac_weight` (whose ``custom_vjp`` is the spec's VJP);
- :class:`NCReLU`, :class:`MaxPool`, :class:`GlobalAvgPool`, :class:`ReLU`;
- :class:`BatchNorm`: ``nnx.BatchNorm`` with PyTorch's settings and running-variance update
  (the unbiased batch variance), its running statistics in the parameters' dtype (updated in
  float32 and rounded once);
- :class:`DiracNet`: every layer of a :class:`~dirac_core.nets.NetSpec`, by the spec's dotted
  names; :func:`fold_model` turns it into plain convolutions with the batch norms absorbed.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> layer = DiracConv(8, 4, 3, rngs=nnx.Rngs(0))   # after NCReLU of 4 channels
>>> x = jnp.ones((2, 4, 5, 5), jnp.float32)   # the layers are float32 by default
>>> layer.beta[...] = 0.0                         # W_hat = 5 * delta
>>> bool(jnp.allclose(layer(NCReLU()(x)), 5 * x))   # paper eq. 11
True
"""

from __future__ import annotations

from math import prod
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

import dirac_core as dc
from dirac_core import catalog, nets
from dirac_core.initial import initial_scale
from dirac_core.validation import (
    array_dtype,
    as_tuple,
    bool_value,
    check_input_dtype,
    check_output_size,
    describe,
    dirac_init_std,
    float_dtype_name,
    groups_for,
    int_value,
    layer_geometry,
    ncrelu_axis,
    per_channel_value,
    policy_value,
    pool_geometry,
    pooled_map,
    positive_int,
    positive_number,
    require_array,
    require_ndim,
    shape_of,
)

from . import ops
from .backend import require_x64_for


def _param_dtype(dtype: Any) -> str:
    """The parameters' dtype name: None is float32, the layers' default (torch's layers take
    None for theirs too); float64 needs JAX's 64-bit mode."""
    name = "float32" if dtype is None else float_dtype_name(dtype)
    require_x64_for(name, "parameters")
    return name


def _require_rngs(rngs: Any) -> None:
    """The ``rngs`` of every layer and network that draws initial values: an ``nnx.Rngs``
    (an int seed or a bare key would fail deep inside the first draw)."""
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs must be an nnx.Rngs (nnx.Rngs(0), say), got "
                        f"{type(rngs).__name__}: {describe(rngs)}")


class Fixed(nnx.Variable[jax.Array]):
    """A constant of a layer (not trained): the fixed scales of ``"resnet"`` convolutions."""


class Conv(nnx.Module):
    """A plain N-d convolution (no parameterization), weights He-initialised.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or sequence of int
        A sequence gives the number of spatial dims; an int means 2-d.
    stride, dilation : int or ints
    padding : int, ints, (left, right) pairs, "valid" or "same" (the spec's)
    groups : int dividing both channel counts
    bias : bool
    dtype : the parameters' dtype: float64, float32 (the default), float16 or bfloat16
    rngs : nnx.Rngs

    Raises
    ------
    ValueError, TypeError
        As :func:`dirac_core.conv` for the geometry; ``rngs`` not an ``nnx.Rngs``; at call
        time an input of the wrong rank or channel count.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, *,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                 bias: bool = False, dtype: Any = jnp.float32, rngs: nnx.Rngs) -> None:
        _require_rngs(rngs)
        dtype = _param_dtype(dtype)
        in_channels = positive_int(in_channels, "in_channels")
        out_channels = positive_int(out_channels, "out_channels")
        dims = len(kernel_size) if isinstance(kernel_size, tuple | list) else 2
        kernel = as_tuple(kernel_size, dims, "kernel_size")
        self.stride, self.dilation, self.padding = layer_geometry(kernel, stride, padding,
                                                                  dilation)
        self.groups = groups_for(groups, out_channels, in_channels)
        self.in_channels = in_channels
        shape = (out_channels, in_channels // self.groups, *kernel)
        fan_in = shape[1] * prod(kernel)
        init = jax.random.normal(rngs.params(), shape, dtype) * jnp.sqrt(2.0 / fan_in)
        self.weight = nnx.Param(init.astype(dtype))
        self.bias = nnx.Param(jnp.zeros((out_channels,), dtype)) if bias else None

    def kernel(self) -> jax.Array:
        """The weight the convolution applies."""
        return self.weight[...]

    def __call__(self, x: jax.Array) -> jax.Array:
        require_array(x, "x")
        weight = self.weight[...]
        check_input_dtype(array_dtype(x), array_dtype(weight))
        dims = len(self.stride)
        if x.ndim != dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; {type(self).__name__} expects "
                f"(N, {self.in_channels}, ...) with {dims} spatial dims"
            )
        check_output_size(shape_of(x), shape_of(weight), self.stride, self.padding,
                          self.dilation)
        bias = None if self.bias is None else self.bias[...]
        return ops.conv_jit(x, self.kernel(), bias, self.stride, self.padding, self.dilation,
                        self.groups)


class DiracConv(Conv):
    """N-d convolution with the Dirac parameterization (paper eq. 13).

    ``W ~ N(0, init_std**2)`` at ``.weight`` (``init_std = 0.1`` as in the authors' code and
    in ``dirac_torch.DiracConv2d``; He-initialised with ``normalize=False``, which refuses an
    ``init_std``), scales ``.alpha`` (init 5) and ``.beta`` (init 1e-3), per
    output channel with ``per_channel=True`` (only ``beta`` with ``"beta"``); ``padding``
    defaults to the spec's ``"same"``. With
    ``learnable=False`` the scales are :class:`Fixed` (``"resnet"``: ``alpha = beta = 1``,
    ``normalize=False`` gives ``W_hat = delta + W``, eq. 14).

    Examples
    --------
    >>> layer = DiracConv(4, 4, (3,), rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((2, 4, 7), jnp.float32)).shape
    (2, 4, 7)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, *,
                 stride: Any = 1, padding: Any = "same", dilation: Any = 1, groups: int = 1,
                 bias: bool = False, alpha_init: float = 5.0, beta_init: float = 1e-3,
                 per_channel: bool | str = False, normalize: bool = True, policy: str = "tile",
                 eps: float = 1e-12, learnable: bool = True, init_std: float | None = None,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=padding, dilation=dilation, groups=groups, bias=bias,
                         dtype=dtype, rngs=rngs)
        dtype = array_dtype(self.weight[...])  # the parameters' dtype name, None resolved
        std = dirac_init_std(init_std, normalize)
        if std is not None:  # else Conv's He-initialised W, as dirac_torch's layers
            self.weight[...] = std * jax.random.normal(rngs.params(), self.weight[...].shape,
                                                       dtype)
        # The order and the rules of dirac_torch.DiracParametrization's checks.
        self.policy = policy_value(policy)
        self.eps = positive_number(eps, "eps")
        per_channel = per_channel_value(per_channel)
        self.normalize = bool_value(normalize, "normalize")
        kind = nnx.Param if bool_value(learnable, "learnable") else Fixed
        for name, value in (("alpha", alpha_init), ("beta", beta_init)):
            init = initial_scale(value, f"{name}_init", self.weight[...].shape[0], per_channel,
                                 dtype)
            setattr(self, name, kind(jnp.asarray(init, dtype)))

    # Set in __init__, as nnx.Param or Fixed by ``learnable``.
    alpha: nnx.Variable[jax.Array]
    beta: nnx.Variable[jax.Array]

    def kernel(self) -> jax.Array:
        """``W_hat = alpha * delta + beta * normalize(W)``."""
        return ops.dirac_weight_jit(self.weight[...], self.alpha[...], self.beta[...], self.eps,
                                self.normalize, self.groups, self.policy)


class NCReLU(nnx.Module):
    """``concat([max(x, 0), min(x, 0)], axis)`` (paper eq. 10); doubles ``axis``.

    Raises
    ------
    TypeError
        ``axis`` is not an int; at call time, ``x`` is not a floating array.
    ValueError
        At call time, ``axis`` is out of range for ``x``.
    """

    def __init__(self, axis: int = 1) -> None:
        self.axis = int_value(axis, "axis")

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.ncrelu_jit(x, ncrelu_axis(x, self.axis))


class ReLU(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x)


class MaxPool(nnx.Module):
    """Max over ``kernel_size`` windows of the spatial axes, padding with ``-inf``.

    Raises
    ------
    TypeError, ValueError
        As :func:`dirac_core.validation.pool_geometry` for the geometry; at call time, ``x``
        is not ``(N, C, *spatial)`` with a spatial dim, or is too small for one window (as
        PyTorch's ``MaxPool2d``: an empty map is no pooling).

    Examples
    --------
    >>> MaxPool(2, 2)(jnp.ones((1, 3, 5, 4), jnp.float32)).shape
    (1, 3, 2, 2)
    """

    def __init__(self, kernel_size: int, stride: int, padding: int = 0) -> None:
        self.kernel_size, self.stride, self.padding = pool_geometry(kernel_size, stride,
                                                                    padding)

    def __call__(self, x: jax.Array) -> jax.Array:
        dims = len(_spatial_shape(x, type(self).__name__))
        window, step = (self.kernel_size,) * dims, (self.stride,) * dims
        pads = ((self.padding, self.padding),) * dims
        check_output_size(shape_of(x), (1, 1, *window), step, pads, (1,) * dims)
        pooled: jax.Array = lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, *window),
                                              (1, 1, *step), ((0, 0), (0, 0), *pads))
        return pooled


class GlobalAvgPool(nnx.Module):
    """Mean over every spatial position: ``(N, C, *spatial) -> (N, C)``.

    Raises
    ------
    TypeError, ValueError
        At call time, ``x`` is not an array of shape ``(N, C, *spatial)`` with a spatial dim,
        or its map is empty (a mean of no values would be NaN).
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        require_array(x, "x")
        pooled_map(x, type(self).__name__)
        return jnp.mean(x, axis=tuple(range(2, x.ndim)))


def _spatial_shape(x: Any, layer: str) -> tuple[int, ...]:
    """The spatial shape of a pooling's input ``x``, which must be ``(N, C, *spatial)`` with
    at least one spatial dim."""
    require_array(x, "x")
    return require_ndim(x, "x", 3, f"{layer} takes (N, C, *spatial)")[2:]


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` over axis 1 with PyTorch's momentum (0.1), eps (1e-5) and running
    variance, whose running statistics are kept in the parameters' dtype, as a torch model's
    buffers are after ``.to(dtype)`` (Flax would keep them float32), so they cross to torch and
    back exactly.

    A train-mode call normalizes with the batch's mean and biased variance and updates the
    running statistics as PyTorch does: ``mean <- 0.9 * mean + 0.1 * batch_mean`` and
    ``var <- 0.9 * var + 0.1 * batch_var * n / (n - 1)``, the unbiased batch variance, where
    ``n`` is the number of values per channel (``x.size / channels``); Flax alone would use the
    biased one. The update is computed in at least float32 (the batch statistics of float16
    and bfloat16 inputs are float32, as Flax computes them) and rounded once into the
    statistics' dtype: no assignment changes a dtype behind JAX's back, and a half-precision
    statistic is within half a unit in its last place of the exact update. An empty batch
    leaves them as they are, as in PyTorch.

    Parameters
    ----------
    channels : int
    dtype : the parameters' and the statistics' dtype
    rngs : nnx.Rngs

    Raises
    ------
    TypeError
        ``rngs`` is not an ``nnx.Rngs``; at call time, a ``mask`` (Flax's option, which PyTorch
        lacks: the ``n`` of the unbiased variance counts every value).
    ValueError
        At call time, ``x`` is not ``(N, channels, ...)``, or it holds one value per channel
        in train mode (its unbiased variance is undefined; PyTorch refuses it too).

    Examples
    --------
    >>> bn = BatchNorm(2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    >>> _ = bn(jnp.asarray([[1.0, 2.0], [3.0, 6.0]], jnp.bfloat16))   # train mode
    >>> bn.mean[...].dtype, bn.mean[...].tolist()   # 0.9 * 0 + 0.1 * (2, 4)
    (dtype(bfloat16), [0.2001953125, 0.400390625])
    >>> bn.var[...].tolist()   # 0.9 * 1 + 0.1 * (2, 8), the variances of (1, 3) and (2, 6)
    [1.1015625, 1.703125]
    """

    def __init__(self, channels: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs) -> None:
        _require_rngs(rngs)
        dtype = _param_dtype(dtype)
        channels = positive_int(channels, "channels")
        super().__init__(channels, axis=1, momentum=0.9, epsilon=1e-5, dtype=dtype,
                         param_dtype=dtype, rngs=rngs)
        for stat in (self.mean, self.var):
            stat.set_value(stat[...].astype(dtype))

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
                 mask: jax.Array | None = None) -> jax.Array:
        require_array(x, "x")
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"x has shape {tuple(x.shape)}; {type(self).__name__} expects "
                             f"(N, {self.num_features}, ...)")
        if mask is not None:
            raise TypeError(f"mask must be None ({type(self).__name__} follows PyTorch's batch "
                            "norm, which has none), got one")
        running = self.use_running_average if use_running_average is None else (
            use_running_average)
        count = x.size // self.num_features  # the values each channel's statistics reduce
        training = running is not None and not running
        if training and count == 1:
            raise ValueError(f"x has shape {tuple(x.shape)}: one value per channel, whose "
                             "unbiased variance is undefined; a train-mode "
                             f"{type(self).__name__} needs at least 2 (as PyTorch's)")
        # Flax's update runs on statistics widened to at least float32 (so that its float32
        # result is assigned to a float32 variable), is corrected to PyTorch's and rounded back
        # once afterwards; eval mode reads them in the layer's dtype either way.
        stats = (self.mean, self.var)
        kept = self.mean[...].dtype
        before = [stat[...].astype(jnp.promote_types(kept, jnp.float32)) for stat in stats]
        for stat, value in zip(stats, before, strict=True):
            stat.set_value(value)
        try:
            out: jax.Array = super().__call__(x, use_running_average)
            if training and count == 0:  # Flax's statistics of no values are NaN
                for stat, value in zip(stats, before, strict=True):
                    stat.set_value(value)
            elif training:
                # Flax set var = m * var + (1 - m) * b with b the biased variance; adding
                # (1 - m) * b / (n - 1) makes it PyTorch's m * var + (1 - m) * b * n / (n - 1).
                # Both terms are >= 0, so this costs a few float32 roundings of the result.
                updated = self.var[...]
                self.var.set_value(
                    updated + (updated - self.momentum * before[1]) / (count - 1))
        finally:
            for stat in stats:
                stat.set_value(stat[...].astype(kept))
        return out


class DiracNet(nnx.Module):
    """A network built from a :class:`~dirac_core.nets.NetSpec`, one module per spec layer.

    ``net.layer("group0.1")`` is the layer the spec calls ``group0.1``; ``net.names`` lists
    them in order. Batch norms are :class:`BatchNorm` (``nnx.BatchNorm`` over axis 1 with
    PyTorch's momentum 0.1, eps 1e-5 and running-variance update, running statistics in the
    parameters' dtype); ``net.train()`` / ``net.eval()`` switch their statistics.

    Parameters
    ----------
    spec : dirac_core.nets.NetSpec
    init : dirac_core.catalog.Init, optional
        Initial values; default the spec's family's (as ``dirac_torch.models.build``).
    alpha_init, beta_init, init_std : float, optional
        Replace those of ``init``.
    dtype : the parameters' dtype
    rngs : nnx.Rngs

    Raises
    ------
    TypeError
        ``spec`` is not a ``NetSpec``; ``rngs`` is not an ``nnx.Rngs`` (an int seed or a key:
        ``nnx.Rngs(seed)`` wraps one).

    Examples
    --------
    >>> spec = nets.diracnet_cifar(10, in_channels=1, image_size=8)
    >>> net = DiracNet(spec, rngs=nnx.Rngs(0))
    >>> net(jnp.ones((2, 1, 8, 8), jnp.float32)).shape
    (2, 10)
    """

    def __init__(self, spec: nets.NetSpec, *, init: catalog.Init | None = None,
                 alpha_init: float | None = None, beta_init: float | None = None,
                 init_std: float | None = None, dtype: Any = jnp.float32,
                 rngs: nnx.Rngs) -> None:
        if not isinstance(spec, nets.NetSpec):
            raise TypeError(f"spec must be a dirac_core.nets.NetSpec, got {type(spec).__name__}")
        _require_rngs(rngs)
        self.spec = spec
        self.init = catalog.spec_init(spec, init, alpha_init=alpha_init, beta_init=beta_init,
                                      init_std=init_std)
        dtype = _param_dtype(dtype)
        pairs = [(name, _layer(layer, self.init, dtype, rngs)) for name, layer in spec.layers()]
        self.names = tuple(name for name, _ in pairs)
        self.layers = nnx.List([module for _, module in pairs])

    def layer(self, name: str) -> nnx.Module:
        """The module of the spec layer ``name`` (``"stage.index"``)."""
        if name not in self.names:
            raise KeyError(f"no layer {name!r}; layers: {', '.join(self.names)}")
        return self.layers[self.names.index(name)]

    def __call__(self, x: jax.Array) -> jax.Array:
        """The logits of ``x``, checked as the torch network checks it
        (:func:`dirac_core.nets.check_input`: shape and dtype, at trace time under ``jit``)."""
        require_array(x, "x")
        conv = next((m for m in self.layers if isinstance(m, Conv)), None)
        nets.check_input(self.spec, shape_of(x), array_dtype(x),
                         None if conv is None else array_dtype(conv.weight[...]))
        for module in self.layers:
            x = module(x)
        return x


def _layer(layer: Any, init: catalog.Init, dtype: Any, rngs: nnx.Rngs) -> nnx.Module:
    if isinstance(layer, nets.Conv):
        return _conv(layer, init, dtype, rngs)
    if isinstance(layer, nets.BatchNorm):
        bn = BatchNorm(layer.channels, dtype=dtype, rngs=rngs)
        if init.bn_weight == "uniform":
            assert bn.scale is not None  # use_scale=True, nnx.BatchNorm's default
            bn.scale[...] = jax.random.uniform(rngs.params(), (layer.channels,), dtype)
        return bn
    if isinstance(layer, nets.Linear):
        linear = nnx.Linear(layer.in_features, layer.out_features, dtype=dtype,
                            param_dtype=dtype, rngs=rngs)
        if init.classifier == "he":
            shape = (layer.in_features, layer.out_features)
            linear.kernel[...] = _he(rngs, shape, layer.in_features, dtype)
            assert linear.bias is not None  # use_bias=True, nnx.Linear's default
            linear.bias[...] = jnp.zeros((layer.out_features,), dtype)
        return linear
    simple = {nets.ReLU: ReLU, nets.GlobalAvgPool: GlobalAvgPool}
    if isinstance(layer, nets.NCReLU):
        return NCReLU(axis=1)
    if isinstance(layer, nets.MaxPool):
        return MaxPool(layer.kernel_size, layer.stride, layer.padding)
    if type(layer) in simple:
        return simple[type(layer)]()
    raise TypeError(f"cannot build a layer from {layer!r}: unknown layer type")


def _he(rngs: nnx.Rngs, shape: tuple[int, ...], fan_in: int, dtype: Any) -> jax.Array:
    """Kaiming-normal: ``N(0, 2 / fan_in)``."""
    return jax.random.normal(rngs.params(), shape, dtype) * jnp.sqrt(2.0 / fan_in).astype(dtype)


def _conv(layer: nets.Conv, init: catalog.Init, dtype: Any, rngs: nnx.Rngs) -> Conv:
    shape = (layer.in_channels, layer.out_channels, layer.kernel_size)
    common = {"stride": layer.stride, "padding": layer.padding, "bias": layer.bias,
              "dtype": dtype, "rngs": rngs}
    kind = layer.parameterization
    if kind == "dirac":
        conv = DiracConv(*shape, **common, alpha_init=init.alpha, beta_init=init.beta,
                         init_std=init.init_std, per_channel=layer.per_channel,
                         policy=layer.policy)
        if init.weight == "he":
            weight = conv.weight[...]
            conv.weight[...] = _he(rngs, weight.shape, prod(weight.shape[1:]), dtype)
        return conv
    if kind == "resnet":
        # W is He-initialised by the layer itself (normalize=False), as in the torch builder.
        return DiracConv(*shape, **common, alpha_init=1.0, beta_init=1.0, normalize=False,
                         learnable=False, policy=layer.policy)
    if kind in ("plain", "none"):
        return Conv(*shape, **common)
    raise ValueError(
        f"conv parameterization={kind!r} is not accepted; use one of "
        f"{(*nets.PARAMETERIZATIONS, 'none')}"
    )


def fold_model(model: DiracNet) -> DiracNet:
    """A copy of ``model`` for inference: every convolution plain, with a bias, holding the
    weight it computes (``W_hat`` for a Dirac one), and every batch norm that directly follows
    a convolution absorbed into it with its running statistics
    (:func:`dirac_core.fold_batchnorm`). ``model`` is not modified.

    Raises
    ------
    TypeError
        ``model`` is not a :class:`DiracNet`.
    """
    if not isinstance(model, DiracNet):
        raise TypeError(f"model must be a dirac_jax.nn.DiracNet, got {type(model).__name__}")
    folded = nnx.clone(model)
    names: list[str] = []
    layers: list[nnx.Module] = []
    for name, module in zip(model.names, model.layers, strict=True):
        if isinstance(module, nnx.BatchNorm) and layers and isinstance(layers[-1], Conv):
            layers[-1] = _absorb(layers[-1], module)
            continue
        names.append(name)
        layers.append(_plain(module) if isinstance(module, Conv) else module)
    folded.names, folded.layers = tuple(names), nnx.List(layers)
    return folded


def _plain(conv: Conv) -> Conv:
    """``conv`` as a plain :class:`Conv` with a bias, holding the weight it applies."""
    weight = conv.kernel()
    plain = Conv(conv.in_channels, weight.shape[0], tuple(weight.shape[2:]), stride=conv.stride,
                 padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                 dtype=weight.dtype, rngs=nnx.Rngs(0))
    plain.weight[...] = weight
    assert plain.bias is not None  # bias=True
    if conv.bias is not None:
        plain.bias[...] = conv.bias[...]
    return plain


def _absorb(conv: Conv, bn: nnx.BatchNorm) -> Conv:
    # conv comes from _plain (it has a bias); the spec's batch norms have scale and bias.
    assert conv.bias is not None and bn.scale is not None and bn.bias is not None
    weight, bias = dc.fold_batchnorm(conv.weight[...], conv.bias[...], bn.scale[...],
                                     bn.bias[...], bn.mean[...], bn.var[...],
                                     eps=bn.epsilon)
    conv.weight[...], conv.bias[...] = weight, bias
    return conv


def create_model(name: str, num_classes: int | None = None, *, rngs: nnx.Rngs,
                 dtype: Any = jnp.float32, **kwargs: Any) -> DiracNet:
    """The Flax model of registry name ``name`` (:mod:`dirac_core.catalog`): the network and
    initial distributions of ``dirac_torch.registry.create_model(name)``.

    ``kwargs``: ``alpha_init``, ``beta_init``, ``init_std`` and the variant keywords, as for
    the torch function.

    Raises
    ------
    TypeError, ValueError
        As :func:`dirac_core.catalog.create_spec_and_init`, in the order of the torch
        function.

    Examples
    --------
    >>> net = create_model("diracnet10_1_v2_cifar", rngs=nnx.Rngs(0))
    >>> float(net.layer("group0.1").alpha[...][0]), net.layer("group0.1").policy
    (1.0, 'min')
    """
    spec, init = catalog.create_spec_and_init(name, num_classes, **kwargs)
    return DiracNet(spec, init=init, dtype=dtype, rngs=rngs)
