"""Layers for fully convolutional networks (Flax NNX, NHWC), each reporting its geometry.

Conventions (chosen to match PyTorch so weights and results carry over):

* `Conv(padding='same')` pads `d*(k-1)/2` on *both* sides (odd effective
  kernels only). Unlike TensorFlow's SAME, whose split of the padding depends
  on the input size modulo the stride, this keeps output `i`'s field at
  `stride*i - pad` for *every* input size: the sampling grid does not move
  when the image grows, which is what makes patch-trained nets consistent on
  big images and what makes tiled inference exact.
* Padding modes `'zeros' | 'reflect' | 'replicate' | 'circular'` pad the
  layer's own input (`np.pad` modes `constant`, `reflect`, `edge`, `wrap`).
* `ConvTranspose` follows `torch.nn.ConvTranspose2d`: output
  `(n-1)*s - 2p + d*(k-1) + 1 + output_padding`.
* `Upsample(method='bilinear')` uses half-pixel centres (PyTorch's
  `align_corners=False`): output `o` samples input `(o + 1/2)*n/out - 1/2`,
  clamped at the border; `'nearest'` takes input `floor(o*n/out)`.
* `MaxPool(return_switches=True)` returns switches as flat indices `row*W + col`
  into each input plane (PyTorch's `return_indices`), which `MaxUnpool` takes.
* `AvgPool` counts padded zeros in the average (`count_include_pad=True`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import lowering as lowering_lib

Pair = tuple[int, int]
PaddingLike = str | int | Sequence[int] | Sequence[Sequence[int]]

PADDING_MODES = {'zeros': 'constant', 'reflect': 'reflect', 'replicate': 'edge',
                 'circular': 'wrap'}

default_kernel_init = nnx.initializers.lecun_normal()


def identity(x: jax.Array) -> jax.Array:
  return x


ACTIVATIONS = {'relu': jax.nn.relu, 'elu': jax.nn.elu, 'gelu': jax.nn.gelu, 'silu': jax.nn.silu,
               'leaky_relu': jax.nn.leaky_relu, 'tanh': jnp.tanh, 'identity': identity}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """An activation function by name (see `ACTIVATIONS`)."""
  if name not in ACTIVATIONS:
    raise errors.ConfigError(f'unknown activation {name!r}; choose one of {", ".join(ACTIVATIONS)}')
  return ACTIVATIONS[name]


def _pair(x: int | Sequence[int], what: str) -> Pair:
  if isinstance(x, (int, np.integer)):
    return int(x), int(x)
  x = tuple(int(v) for v in x)
  if len(x) != 2:
    raise errors.ConfigError(f'{what} must be an int or a pair of ints, got {x}')
  return x


def resolve_padding(padding: PaddingLike, kernel: Pair, dilation: Pair = (1, 1)
                    ) -> tuple[Pair, Pair]:
  """Explicit `((top, bottom), (left, right))` padding from 'valid', 'same', int or pairs."""
  if isinstance(padding, str):
    if padding.lower() == 'valid':
      return (0, 0), (0, 0)
    if padding.lower() == 'same':
      pads = []
      for k, d in zip(kernel, dilation):
        if (d * (k - 1)) % 2:
          raise errors.ConfigError(
              f"padding='same' needs an odd effective kernel (got kernel {k}, dilation {d}); "
              'give explicit padding ((top, bottom), (left, right)) instead')
        pads.append((d * (k - 1) // 2,) * 2)
      return tuple(pads)
    raise errors.ConfigError(
        f"padding must be 'valid', 'same', an int or explicit pairs, got {padding!r}")
  if isinstance(padding, (int, np.integer)):
    return (int(padding),) * 2, (int(padding),) * 2
  padding = tuple(padding)
  if len(padding) == 2 and all(isinstance(p, (int, np.integer)) for p in padding):
    return (int(padding[0]),) * 2, (int(padding[1]),) * 2
  if len(padding) == 2 and all(len(p) == 2 for p in padding):
    return tuple((int(lo), int(hi)) for lo, hi in padding)
  raise errors.ConfigError(f'cannot read padding {padding!r}; use ((top, bottom), (left, right))')


# --------------------------------------------------------------------------
# Exact tiling support (fcn_jax.inference): a layer that mixes neighbouring positions and
# is given `tile_extents` first rebuilds its input outside the region the whole-image run
# would hold at that layer, exactly as that run pads there. Only the tiled forward pass
# sets `tile_extents`, on the copy of the model it merges inside its jit
# (`inference.tiled._tiled_forward`); a model as built or loaded never has it.


def _tile_border(layer, x: jax.Array, fill: str) -> jax.Array:
  """Outside the valid region: 'zeros' / '-inf' fill it, 'replicate' / 'reflect' mirror it.

  `layer.tile_extents`, when set, is an int32 `(B, 4)` array giving, per tile of the batch,
  the valid input rows `[lo, hi)` and columns `[lo, hi)` of that layer.
  """
  extents = getattr(layer, 'tile_extents', None)
  if extents is None:
    return x
  for axis in (1, 2):
    lo, hi = extents[:, 2 * axis - 2, None], extents[:, 2 * axis - 1, None]  # (B, 1)
    pos = jnp.arange(x.shape[axis])[None]  # (1, T)
    shape = [x.shape[0], 1, 1, 1]
    shape[axis] = x.shape[axis]
    if fill in ('zeros', '-inf'):
      keep = ((pos >= lo) & (pos < hi)).reshape(shape)
      x = jnp.where(keep, x, 0.0 if fill == 'zeros' else -jnp.inf)
      continue
    if fill == 'replicate':
      index = jnp.clip(pos, lo, hi - 1)
    elif fill == 'reflect':
      index = jnp.where(pos < lo, 2 * lo - pos, jnp.where(pos >= hi, 2 * (hi - 1) - pos, pos))
      index = jnp.clip(index, lo, hi - 1)
    else:
      raise errors.TilingError(f'{type(layer).__name__}: padding {fill!r} cannot be tiled exactly')
    x = jnp.take_along_axis(x, index.reshape(shape), axis=axis)
  return x


def _check(layer, x):
  """Input rank, channels (for layers that know them) and spatial size, before XLA sees them."""
  geometry.check(layer, x.shape)
  expected = getattr(layer, 'in_channels', None)
  if expected is not None and x.shape[-1] != expected:
    raise errors.InputError(
        f'{type(layer).__name__} expects {expected} input channels (NHWC), got an '
        f'input of shape {tuple(x.shape)}')


class Conv(nnx.Module):
  """2-D convolution with stride, dilation, groups and padding modes."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
               *, stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1,
               groups: int = 1, padding: PaddingLike = 'same', padding_mode: str = 'zeros',
               use_bias: bool = True, kernel_init=default_kernel_init,
               bias_init=nnx.initializers.zeros_init(), dtype: Any = None,
               lowering: str = 'auto', rngs: nnx.Rngs):
    if in_channels % groups or out_channels % groups:
      raise errors.ConfigError(f'groups={groups} must divide in_channels={in_channels} and '
                               f'out_channels={out_channels}')
    if padding_mode not in PADDING_MODES:
      raise errors.ConfigError(
          f'padding_mode must be one of {sorted(PADDING_MODES)}, got {padding_mode!r}')
    self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
    self.kernel_size = _pair(kernel_size, 'kernel_size')
    self.stride = _pair(stride, 'stride')
    self.dilation = _pair(dilation, 'dilation')
    self.padding = resolve_padding(padding, self.kernel_size, self.dilation)
    self.padding_mode = padding_mode
    self.dtype = dtype
    self.lowering = lowering_lib.check(lowering)  # one of lowering.POLICIES
    self.kernel = nnx.Param(kernel_init(
        rngs.params(), (*self.kernel_size, in_channels // groups, out_channels), jnp.float32))
    self.bias = (nnx.Param(bias_init(rngs.params(), (out_channels,), jnp.float32))
                 if use_bias else None)

  @property
  def geometry(self) -> geometry.Node:
    kh, kw = self.kernel_size
    n_params = kh * kw * self.in_channels // self.groups * self.out_channels
    n_params += self.out_channels if self.bias is not None else 0
    limit = {'reflect': 'reflect', 'circular': 'circular'}.get(self.padding_mode)
    return geometry.Window('Conv', self.kernel_size, self.stride, self.dilation, self.padding,
                           self.out_channels, n_params, limit, fill=self.padding_mode,
                           key=id(self))

  def __call__(self, x: jax.Array) -> jax.Array:
    _check(self, x)
    x = _tile_border(self, x, self.padding_mode)
    kernel = self.kernel[...]
    dtype = self.dtype or x.dtype
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    padding = self.padding
    if self.padding_mode != 'zeros':
      x = jnp.pad(x, ((0, 0), *padding, (0, 0)), mode=PADDING_MODES[self.padding_mode])
      padding = ((0, 0), (0, 0))
    y = lowering_lib.conv(x, kernel, self.stride, padding, self.dilation, self.groups,
                          self.lowering)
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y


def set_lowering(model: nnx.Module, policy: str) -> nnx.Module:
  """Sets how every convolution of `model` is lowered (one of `lowering.POLICIES`, see
  `fcn_jax.lowering`), in place; returns `model`."""
  lowering_lib.check(policy)
  for _, module in nnx.iter_graph(model):
    if isinstance(module, (Conv, ConvTranspose)):
      module.lowering = policy
  return model


def pointwise(in_channels: int, out_channels: int, *, rngs: nnx.Rngs, **kwargs) -> Conv:
  """A 1x1 convolution: a dense layer applied to every pixel."""
  return Conv(in_channels, out_channels, 1, padding='valid', rngs=rngs, **kwargs)


def bilinear_kernel(kernel_size: int, channels: int) -> np.ndarray:
  """Long et al.'s bilinear up-sampling kernel, `(k, k, channels, channels)`, channel-diagonal.

  With `ConvTranspose(kernel_size=2f - f % 2, stride=f, padding=ceil((f - 1) / 2))`
  this interpolates bilinearly by a factor `f`.
  """
  factor = (kernel_size + 1) // 2
  centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
  taps = 1 - np.abs(np.arange(kernel_size) - centre) / factor
  kernel = np.zeros((kernel_size, kernel_size, channels, channels), np.float32)
  kernel[:, :, np.arange(channels), np.arange(channels)] = np.outer(taps, taps)[..., None]
  return kernel


class ConvTranspose(nnx.Module):
  """Transposed convolution, PyTorch semantics (padding crops, `output_padding` adds).

  `init='bilinear'` sets Long et al.'s fixed bilinear up-sampling kernel (needs
  in_channels == out_channels); the kernel stays trainable.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
               *, stride: int | Sequence[int] = 1, padding: int | Sequence[Any] = 0,
               output_padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
               use_bias: bool = True, init: str = 'lecun', kernel_init=default_kernel_init,
               dtype: Any = None, lowering: str = 'auto', rngs: nnx.Rngs):
    self.in_channels, self.out_channels = in_channels, out_channels
    self.kernel_size = _pair(kernel_size, 'kernel_size')
    self.stride = _pair(stride, 'stride')
    self.dilation = _pair(dilation, 'dilation')
    self.padding = resolve_padding(padding, self.kernel_size, self.dilation)
    self.output_padding = _pair(output_padding, 'output_padding')
    for op, s, d in zip(self.output_padding, self.stride, self.dilation):
      if not 0 <= op < max(s, d):
        raise errors.ConfigError(
            f'output_padding {self.output_padding} must be smaller than the stride '
            f'{self.stride} or dilation {self.dilation}')
    self.dtype = dtype
    self.lowering = lowering_lib.check(lowering)  # one of lowering.POLICIES
    shape = (*self.kernel_size, in_channels, out_channels)
    if init == 'bilinear':
      if in_channels != out_channels or self.kernel_size[0] != self.kernel_size[1]:
        raise errors.ConfigError(
            'bilinear init needs in_channels == out_channels and a square kernel, '
            f'got {in_channels}->{out_channels}, kernel {self.kernel_size}')
      kernel = jnp.asarray(bilinear_kernel(self.kernel_size[0], in_channels))
    elif init == 'lecun':
      kernel = kernel_init(rngs.params(), shape, jnp.float32)
    else:
      raise errors.ConfigError(f"init must be 'lecun' or 'bilinear', got {init!r}")
    self.kernel = nnx.Param(kernel)
    self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32)) if use_bias else None

  @property
  def geometry(self) -> geometry.Node:
    kh, kw = self.kernel_size
    n_params = kh * kw * self.in_channels * self.out_channels
    n_params += self.out_channels if self.bias is not None else 0
    return geometry.Transpose('ConvTranspose', self.kernel_size, self.stride, self.dilation,
                              self.padding, self.output_padding, self.out_channels, n_params,
                              key=id(self))

  def __call__(self, x: jax.Array) -> jax.Array:
    _check(self, x)
    x = _tile_border(self, x, 'zeros')
    dtype = self.dtype or x.dtype
    y = lowering_lib.conv_transpose(x.astype(dtype), self.kernel[...].astype(dtype),
                                    self.stride, self.padding, self.output_padding,
                                    self.dilation, self.lowering)
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y


# --------------------------------------------------------------------------
# Resizing.


def _resize_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
  """`(n_out, n_in)` interpolation matrix along one axis (see module docstring)."""
  m = np.zeros((n_out, n_in), np.float32)
  o = np.arange(n_out)
  if method == 'nearest':
    m[o, (o * n_in) // n_out] = 1
    return m
  src = np.maximum((o + 0.5) * n_in / n_out - 0.5, 0)
  i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
  i1 = np.minimum(i0 + 1, n_in - 1)
  lam = (src - i0).astype(np.float32)
  np.add.at(m, (o, i0), 1 - lam)
  np.add.at(m, (o, i1), lam)
  return m


def resize(x: jax.Array, size: Pair, method: str = 'bilinear') -> jax.Array:
  """Resizes NHWC `x` to spatial `size` (nearest or bilinear, half-pixel centres)."""
  if method not in ('nearest', 'bilinear'):
    raise errors.ConfigError(f"method must be 'nearest' or 'bilinear', got {method!r}")
  _, h, w, _ = x.shape
  if method == 'nearest':
    rows = (np.arange(size[0]) * h) // size[0]
    cols = (np.arange(size[1]) * w) // size[1]
    return x[:, rows][:, :, cols]
  mh = jnp.asarray(_resize_matrix(h, size[0], method), x.dtype)
  mw = jnp.asarray(_resize_matrix(w, size[1], method), x.dtype)
  return jnp.einsum('oh,nhwc,pw->nopc', mh, x, mw)


def upsample(x: jax.Array, factor: Pair, method: str = 'bilinear') -> jax.Array:
  """`resize(x, factor * size, method)` for integer factors, without size arithmetic.

  Output row `f*i + r` is a fixed blend of input rows `i - 1, i, i + 1` (phase `r`), with
  edge replication at the border, so the op works on symbolic sizes (`jax.export`).
  """
  for axis, f in zip((1, 2), factor):
    if f == 1:
      continue
    if method == 'nearest':
      x = jnp.repeat(x, f, axis=axis)
      continue
    n = x.shape[axis]
    padded = jnp.pad(x, [(1, 1) if a == axis else (0, 0) for a in range(x.ndim)], mode='edge')
    prev, here, after = (lax.slice_in_dim(padded, k, k + n, axis=axis) for k in range(3))
    phases = []
    for r in range(f):
      delta = (r + 0.5) / f - 0.5  # source offset of phase r, in (-1/2, 1/2)
      phases.append((1 - abs(delta)) * here + abs(delta) * (after if delta > 0 else prev))
    x = jnp.stack(phases, axis=axis + 1)
    x = x.reshape(*x.shape[:axis], n * f, *x.shape[axis + 2:])
  return x


class Upsample(nnx.Module):
  """Nearest or bilinear resizing by an integer `factor` or to a fixed `size`."""

  def __init__(self, factor: int | Sequence[int] | None = 2, *, size: Sequence[int] | None = None,
               method: str = 'nearest'):
    if (factor is None) == (size is None):
      raise errors.ConfigError('give exactly one of factor and size')
    if method not in ('nearest', 'bilinear'):
      raise errors.ConfigError(f"method must be 'nearest' or 'bilinear', got {method!r}")
    self.factor = None if factor is None else _pair(factor, 'factor')
    self.size = None if size is None else _pair(size, 'size')
    self.method = method

  @property
  def geometry(self) -> geometry.Node:
    return geometry.Resize('Upsample', self.method, self.factor, self.size, key=id(self))

  def __call__(self, x: jax.Array) -> jax.Array:
    _check(self, x)
    x = _tile_border(self, x, 'replicate')  # bilinear clamps at the image border
    if self.size is not None:
      return resize(x, self.size, self.method)
    return upsample(x, self.factor, self.method)


# --------------------------------------------------------------------------
# Pooling.


class _Pool(nnx.Module):
  """Shared by the pools.

  `exact=True` rejects sizes the windows do not tile exactly; `ceil_mode=True`
  adds a last partial window instead (PyTorch's `ceil_mode`, Caffe's pooling).
  """

  def __init__(self, window: int | Sequence[int] = 2, stride: int | Sequence[int] | None = None,
               padding: PaddingLike = 0, *, exact: bool = False, ceil_mode: bool = False):
    if exact and ceil_mode:
      raise errors.ConfigError('exact and ceil_mode exclude each other')
    self.exact, self.ceil_mode = exact, ceil_mode
    self.window = _pair(window, 'window')
    self.stride = self.window if stride is None else _pair(stride, 'stride')
    self.padding = resolve_padding(padding, self.window)
    for (lo, hi), k in zip(self.padding, self.window):
      if max(lo, hi) > k // 2:
        raise errors.ConfigError(f'pool padding {self.padding} must be at most half the window '
                                 f'{self.window}')

  @property
  def geometry(self) -> geometry.Node:
    return geometry.Window(type(self).__name__, self.window, self.stride, (1, 1), self.padding,
                           exact=self.exact, ceil=self.ceil_mode, key=id(self))

  def _padding(self, x) -> tuple[Pair, Pair]:
    """Explicit padding, extended at the bottom/right for ceil mode's partial windows."""
    if not self.ceil_mode:
      return self.padding
    if not all(isinstance(n, int) for n in x.shape[1:3]):
      # Symbolic sizes (jax.export): s - 1 more rows at the end make floor mode count
      # ceil mode's windows, and none starts in the padding as long as hi + s <= k.
      if any(hi + s > k for (_, hi), s, k in zip(self.padding, self.stride, self.window)):
        raise errors.ConfigError(
            f'ceil-mode pooling with window {self.window}, stride {self.stride} '
            f'and padding {self.padding} needs concrete sizes')
      return tuple((lo, hi + s - 1) for (lo, hi), s in zip(self.padding, self.stride))
    out = geometry.of(self).output_size(x.shape[1:3])
    return tuple((lo, max(hi, (o - 1) * s + k - n - lo)) for (lo, hi), o, s, k, n in
                 zip(self.padding, out, self.stride, self.window, x.shape[1:3]))

  def _reduce(self, x, init, op):
    return lax.reduce_window(x, init, op, (1, *self.window, 1), (1, *self.stride, 1),
                             ((0, 0), *self._padding(x), (0, 0)))


class MaxPool(_Pool):
  """Max pooling; `return_switches=True` also returns the argmax "switches" for `MaxUnpool`."""

  def __init__(self, window=2, stride=None, padding=0, *, exact: bool = False,
               ceil_mode: bool = False, return_switches: bool = False):
    super().__init__(window, stride, padding, exact=exact, ceil_mode=ceil_mode)
    self.return_switches = return_switches

  def __call__(self, x: jax.Array):
    _check(self, x)
    x = _tile_border(self, x, '-inf')
    if not self.return_switches:
      return self._reduce(x, -jnp.inf, lax.max)
    _, h, w, _ = x.shape
    padding = self._padding(x)
    out_h, out_w = ((n + lo + hi - k) // s + 1 for n, (lo, hi), k, s in
                    zip((h, w), padding, self.window, self.stride))
    (top, _), (left, _) = self.padding
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
    (sh, sw), (kh, kw) = self.stride, self.window
    taps = [xp[:, a:a + sh * (out_h - 1) + 1:sh, b:b + sw * (out_w - 1) + 1:sw]
            for a in range(kh) for b in range(kw)]
    taps = jnp.stack(taps, axis=-1)  # (N, H', W', C, kh*kw)
    best = jnp.argmax(taps, axis=-1)
    values = jnp.take_along_axis(taps, best[..., None], axis=-1)[..., 0]
    rows = jnp.arange(out_h)[:, None, None] * sh - top + best // kw
    cols = jnp.arange(out_w)[None, :, None] * sw - left + best % kw
    return values, (rows * w + cols).astype(jnp.int32)


class AvgPool(_Pool):
  """Average pooling (padded zeros count in the average, as in PyTorch's default)."""

  def __init__(self, window=2, stride=None, padding=0, *, exact: bool = False):
    super().__init__(window, stride, padding, exact=exact)

  def __call__(self, x: jax.Array) -> jax.Array:
    _check(self, x)
    x = _tile_border(self, x, 'zeros')
    return self._reduce(x, 0.0, lax.add) / (self.window[0] * self.window[1])


class MaxUnpool(nnx.Module):
  """Places values at their switch positions, zeros elsewhere (PyTorch's `max_unpool2d`).

  Output size `(n - 1)*s - 2p + k (+ output_padding)`; pass `output_padding=1` to
  undo a pool that dropped an odd last row/column.
  """

  def __init__(self, window: int | Sequence[int] = 2, stride: int | Sequence[int] | None = None,
               padding: PaddingLike = 0, output_padding: int | Sequence[int] = 0):
    self.window = _pair(window, 'window')
    self.stride = self.window if stride is None else _pair(stride, 'stride')
    self.padding = resolve_padding(padding, self.window)
    self.output_padding = _pair(output_padding, 'output_padding')

  @property
  def geometry(self) -> geometry.Node:
    return geometry.Transpose('MaxUnpool', self.window, self.stride, (1, 1), self.padding,
                              self.output_padding, key=id(self))

  def __call__(self, x: jax.Array, switches: jax.Array) -> jax.Array:
    _check(self, x)
    if switches.shape != x.shape:
      raise ValueError(f'switches shape {switches.shape} must equal the input shape {x.shape}')
    x = _tile_border(self, x, 'zeros')
    n, h, w, c = x.shape
    out_h, out_w = ((m - 1) * s - lo - hi + k + extra for m, s, (lo, hi), k, extra in
                    zip((h, w), self.stride, self.padding, self.window, self.output_padding))
    flat = jnp.zeros((n, c, out_h * out_w), x.dtype)
    values = x.transpose(0, 3, 1, 2).reshape(n, c, h * w)
    index = switches.transpose(0, 3, 1, 2).reshape(n, c, h * w)
    flat = flat.at[jnp.arange(n)[:, None, None], jnp.arange(c)[None, :, None], index].set(
        values, mode='drop')
    return flat.reshape(n, c, out_h, out_w).transpose(0, 2, 3, 1)


class GlobalAvgPool(nnx.Module):
  """Mean over all positions: `(N, H, W, C) -> (N, C)` (or `(N, 1, 1, C)` with keepdims)."""

  def __init__(self, keepdims: bool = False):
    self.keepdims = keepdims

  @property
  def geometry(self) -> geometry.Node:
    return geometry.Global(type(self).__name__)

  def _reduce(self, x):
    return jnp.mean(x, axis=(1, 2), keepdims=self.keepdims)

  def __call__(self, x: jax.Array) -> jax.Array:
    _check(self, x)
    return self._reduce(x)


class GlobalMaxPool(GlobalAvgPool):
  """Max over all positions: `(N, H, W, C) -> (N, C)` (or `(N, 1, 1, C)` with keepdims)."""

  def _reduce(self, x):
    return jnp.max(x, axis=(1, 2), keepdims=self.keepdims)


# --------------------------------------------------------------------------
# Composites.


class GatedConv(nnx.Module):
  """Gated convolution `phi(conv_f(x)) * sigmoid(conv_g(x))` (Yu et al., 2019).

  Both convolutions run as one conv with twice the output channels.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel_size=3, *,
               activation: Callable[[jax.Array], jax.Array] = jax.nn.elu, rngs: nnx.Rngs,
               **conv_kwargs):
    self.conv = Conv(in_channels, 2 * out_channels, kernel_size, rngs=rngs, **conv_kwargs)
    self.activation = activation
    self.out_channels = out_channels

  @property
  def geometry(self) -> geometry.Node:
    return dataclasses.replace(self.conv.geometry, name='GatedConv',
                               out_channels=self.out_channels)

  def __call__(self, x: jax.Array) -> jax.Array:
    feature, gate = jnp.split(self.conv(x), 2, axis=-1)
    return self.activation(feature) * jax.nn.sigmoid(gate)


def _numbered(children: Sequence[Any]) -> tuple[geometry.Node, ...]:
  """The children's geometry nodes named `<index>.<name>`, each node built once (a container's
  geometry is rebuilt on every access, so building a child's twice doubles the work per level
  of nesting)."""
  nodes = [geometry.node_of(child) for child in children]
  return tuple(node.with_name(f'{i}.{node.name}') for i, node in enumerate(nodes))


class Sequential(nnx.Sequential):
  """`nnx.Sequential` that composes its layers' geometry (callables count as pointwise)."""

  def __init__(self, *layers: Callable[..., Any], name: str = 'Sequential'):
    super().__init__(*layers)
    self.name = name

  @property
  def geometry(self) -> geometry.Node:
    return geometry.Chain(self.name, _numbered(self.layers))

  def __call__(self, x: jax.Array) -> jax.Array:
    _check(self, x)
    return super().__call__(x)


class Merge(nnx.Module):
  """Skip connections: branches applied to the same input, aligned, then combined.

  One declaration gives both the forward pass and the geometry (`geometry.Merge`), so a
  model with skips or residual blocks gets receptive fields, size checks, exact tiling and
  export without geometry written by hand. Each branch's output is cropped to align with
  branch `reference` by their field centres (the crop of Long et al.'s FCN and of the valid
  U-Net; none when the branches already align, as with 'same' padding), then:
  'concat' joins channels, 'add' sums (channels must match), 'crop' returns the one
  non-reference branch cropped to the reference (a net's output cropped to its input).
  Branches are layers, `Sequential`s or plain functions (`identity` for a shortcut).
  """

  def __init__(self, *branches: Callable[..., Any], reference: int = 0, combine: str = 'concat',
               name: str = 'merge'):
    if combine not in ('concat', 'add', 'crop'):
      raise errors.ConfigError(f"combine must be 'concat', 'add' or 'crop', got {combine!r}")
    if len(branches) < 2 or not 0 <= reference < len(branches):
      raise errors.ConfigError(f'a merge needs at least 2 branches and a reference among them, '
                               f'got {len(branches)} branches and reference {reference}')
    if combine == 'crop' and len(branches) != 2:
      raise errors.ConfigError(f"combine='crop' takes exactly 2 branches, got {len(branches)}")
    self.branches = nnx.List(branches)
    self.reference, self.combine, self.name = reference, combine, name

  @property
  def geometry(self) -> geometry.Merge:
    return geometry.Merge(self.name, _numbered(self.branches), reference=self.reference,
                          combine=self.combine)

  def __call__(self, x: jax.Array) -> jax.Array:
    node = self.geometry  # built once per call: it walks every branch
    geometry.check(node, x.shape)
    outputs = node.align(x.shape[1:3], [branch(x) for branch in self.branches])
    if self.combine == 'crop':
      return outputs[1 - self.reference]
    if self.combine == 'add':
      return sum(outputs[1:], outputs[0])
    return jnp.concatenate(outputs, axis=-1)


class Normalize(nnx.Module):
  """Input normalisation of pretrained weights, as a pointwise first layer.

  'imagenet': torchvision's, RGB in [0, 1] minus (0.485, 0.456, 0.406) over
  (0.229, 0.224, 0.225); 'caffe': the original VGG-16's, RGB in [0, 1] turned to BGR in
  [0, 255] minus (103.939, 116.779, 123.68); None: the input as it is.
  """
  KINDS = ('imagenet', 'caffe')

  def __init__(self, kind: str | None):
    if kind not in (None, *self.KINDS):
      raise errors.ConfigError(f'input_norm must be one of {self.KINDS} or None, got {kind!r}')
    self.kind = kind

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kind == 'imagenet':
      return (x - jnp.array([0.485, 0.456, 0.406], x.dtype)) / jnp.array(
          [0.229, 0.224, 0.225], x.dtype)
    if self.kind == 'caffe':
      return x[..., ::-1] * 255 - jnp.array([103.939, 116.779, 123.68], x.dtype)
    return x


def residual(body: Callable[..., Any], shortcut: Callable[..., Any] = identity,
             name: str = 'residual') -> Merge:
  """`shortcut(x) + body(x)`, the shortcut cropped to the body's output when `body` shrinks
  it ('valid' convs): a residual block as a `Merge` (geometry included)."""
  return Merge(shortcut, body, reference=1, combine='add', name=name)


def pointwise_head(features: Sequence[int], *, activation=jax.nn.relu, rngs: nnx.Rngs,
                   name: str = 'head') -> Sequential:
  """1x1 convs `features[0] -> features[1] -> ...` with `activation` between them.

  The per-pixel equivalent of a stack of dense layers.
  """
  layers: list[Any] = []
  for i, (c_in, c_out) in enumerate(zip(features[:-1], features[1:])):
    if i:
      layers.append(activation)
    layers.append(pointwise(c_in, c_out, rngs=rngs))
  return Sequential(*layers, name=name)
