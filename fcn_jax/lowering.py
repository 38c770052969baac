"""How the layers express convolutions and pools for XLA: the same numbers, faster programs.

XLA:CPU runs stride-1 convolutions through a library kernel (YNNPACK), fast. Profiles
of training steps on the 2-core CPU (`benchmarks/README.md`, "Where the time goes")
found the slow spots elsewhere, and each rewrite here removes one:

* Input-dilated convolutions run in a slow generic loop. A transposed convolution is
  one, so are the input gradient of a strided convolution and the weight gradient
  of a transposed one (a third of a U-Net training step). `conv_transpose` with
  stride `s > 1` is therefore the sub-pixel form: one stride-1 convolution giving
  `s*s*C_out` channels (one per output phase), depth-to-space, crop; for kernel ==
  stride (U-Net's 2x2/2) a matmul. Strided `conv`s keep XLA's forward but own their
  gradients (`jax.custom_vjp`): the input gradient is that sub-pixel transposed
  convolution, the weight gradient one matmul per tap (training +6-8 %).
* Weight gradients are convolutions whose window is the whole image: for a 1x1
  convolution ~10x slower than the same product as a matmul, so 1x1 convolutions
  are `einsum`s (a dot, whose gradients are dots).
* Three input channels (RGB) miss the vectorised kernels: one zero channel to make
  four made the first conv 2.4x faster.
* The gradient of `lax.reduce_window` max is a select-and-scatter, run as a variadic
  reduce-window over values and indices: `max_pool` with windows that tile the input
  is a reshape and a max.

Tried and not kept (measured on whole training steps): strided convs as space-to-depth
stride-1 convs (patch_net training 2x slower: XLA's weight gradient of the 2x2 kernel
on 4C channels is slow), im2col for every conv (U-Net 3x slower), the weight gradient
in batch chunks (no gain), bfloat16 (no faster on XLA:CPU here).

Every rewrite is exact up to float rounding (`tests/test_lowering.py` compares values
and gradients with `lax.conv_general_dilated` / `lax.reduce_window`); grouped or dilated
convolutions, and symbolic sizes (`jax.export`), use XLA's own ops.
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Pair = tuple[int, int]
DIMS = ('NHWC', 'HWIO', 'NHWC')


def _concrete(x: jax.Array) -> bool:
  return all(isinstance(n, int) for n in x.shape)


def _taps(k: int, s: int) -> int:
  return -(-k // s)


def conv(x: jax.Array, kernel: jax.Array, stride: Pair, padding: Sequence[Pair],
         dilation: Pair = (1, 1), groups: int = 1) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, stride, padding, rhs_dilation=dilation)`, NHWC/HWIO."""
  if groups != 1:
    return _xla_conv(x, kernel, stride, padding, dilation, groups)
  if kernel.shape[:2] == (1, 1) and stride == (1, 1) and not any(map(any, padding)):
    return _pointwise(x, kernel)
  x, kernel = _four_channels(x, kernel)
  if dilation == (1, 1) and stride != (1, 1) and _concrete(x):
    return _tap_conv(x, kernel, tuple(stride), tuple(map(tuple, padding)))
  return _xla_conv(x, kernel, stride, padding, dilation)


def _xla_conv(x, kernel, stride, padding, dilation=(1, 1), groups=1):
  return lax.conv_general_dilated(x, kernel, stride, padding, rhs_dilation=dilation,
                                  dimension_numbers=DIMS, feature_group_count=groups)


def _four_channels(x, kernel):
  """`x` and `kernel` with zero input channels up to a multiple of 4 when there are fewer than
  8 (RGB -> 4); the convolution is the same."""
  c_in = x.shape[-1]
  if c_in % 4 == 0 or c_in >= 8:
    return x, kernel
  extra = -c_in % 4
  return (jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra))),
          jnp.pad(kernel, ((0, 0), (0, 0), (0, extra), (0, 0))))


def _pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A 1x1 convolution as a matmul (whose gradients are matmuls too)."""
  return jnp.einsum('nhwc,co->nhwo', x, kernel[0, 0])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _tap_conv(x, kernel, stride, padding):
  """XLA's convolution, with a weight gradient of one matmul per kernel tap and, for
  strides > 1, an input gradient that is a sub-pixel transposed convolution."""
  return lax.conv_general_dilated(x, kernel, stride, padding, dimension_numbers=DIMS)


def _tap_conv_fwd(x, kernel, stride, padding):
  return _tap_conv(x, kernel, stride, padding), (x, kernel)


def _tap_conv_bwd(stride, padding, residuals, g):
  x, kernel = residuals
  kh, kw, c_in, c_out = kernel.shape
  if stride == (1, 1):
    dx = jax.vjp(lambda x: lax.conv_general_dilated(x, kernel, stride, padding,
                                                    dimension_numbers=DIMS), x)[1](g)[0]
  else:
    # The transposed convolution of g; the output padding restores the rows the forward
    # pass's floor division dropped.
    dropped = tuple((n + lo + hi - k) % s for n, (lo, hi), k, s in
                    zip(x.shape[1:3], padding, (kh, kw), stride))
    dx = conv_transpose(g, kernel.transpose(0, 1, 3, 2), stride, padding, dropped)
  (sh, sw), (oh, ow) = stride, g.shape[1:3]
  (top, bottom), (left, right) = padding
  xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, bottom, 0), (left, right, 0),
                                           (0, 0, 0)))
  grads = g.reshape(-1, c_out)
  taps = [xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw].reshape(-1, c_in).T @ grads
          for i in range(kh) for j in range(kw)]
  return dx, jnp.stack(taps).reshape(kh, kw, c_in, c_out)


_tap_conv.defvjp(_tap_conv_fwd, _tap_conv_bwd)


def conv_transpose(x: jax.Array, kernel: jax.Array, stride: Pair, padding: Sequence[Pair],
                   output_padding: Pair = (0, 0), dilation: Pair = (1, 1)) -> jax.Array:
  """`torch.nn.functional.conv_transpose2d` semantics, NHWC input, `(kh, kw, in, out)` kernel.

  Output `(n - 1)*s - lo - hi + d*(k - 1) + 1 + output_padding` per axis.
  """
  if stride == (1, 1) or dilation != (1, 1) or not _concrete(x):
    return _xla_conv_transpose(x, kernel, stride, padding, output_padding, dilation)
  return _subpixel_conv_transpose(x, kernel, tuple(stride), padding, output_padding)


def _xla_conv_transpose(x, kernel, stride, padding, output_padding=(0, 0), dilation=(1, 1)):
  """The transposed convolution as XLA's input-dilated convolution."""
  pads = [(d * (k - 1) - lo, d * (k - 1) - hi + op) for (lo, hi), k, d, op in
          zip(padding, kernel.shape[:2], dilation, output_padding)]
  return lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), pads, lhs_dilation=stride,
                                  rhs_dilation=dilation, dimension_numbers=DIMS)


def _subpixel_conv_transpose(x, kernel, stride, padding, output_padding):
  """The transposed convolution (stride > 1, no dilation) as one stride-1 convolution giving
  every output phase as channels, depth-to-space and a crop."""
  kh, kw, c_in, c_out = kernel.shape
  (sh, sw), (ah, aw) = stride, (_taps(kh, stride[0]), _taps(kw, stride[1]))
  n, h, w, _ = x.shape
  # Full output row s*m + r sums x[m - a] * kernel[s*a + r]: per phase r a stride-1
  # correlation with the flipped taps, all phases as output channels of one conv.
  kernel = jnp.pad(kernel, ((0, ah * sh - kh), (0, aw * sw - kw), (0, 0), (0, 0)))
  kernel = kernel.reshape(ah, sh, aw, sw, c_in, c_out)[::-1, :, ::-1]
  kernel = kernel.transpose(0, 2, 4, 1, 3, 5).reshape(ah, aw, c_in, sh * sw * c_out)
  if ah * aw == 1:
    y = _pointwise(x, kernel)
  else:  # few taps, many output channels: its weight gradient is per-tap matmuls
    y = _tap_conv(x, kernel, (1, 1), ((ah - 1, ah - 1), (aw - 1, aw - 1)))
  full_h, full_w = h + ah - 1, w + aw - 1
  y = y.reshape(n, full_h, full_w, sh, sw, c_out).transpose(0, 1, 3, 2, 4, 5)
  y = y.reshape(n, full_h * sh, full_w * sw, c_out)
  # Crop `lo` at the start; the end moves by k - hi + output_padding - s*ceil(k/s) (<= 0
  # crops, > 0 appends rows no tap reaches), the same for every input size.
  (top, bottom), (left, right) = padding
  (op_h, op_w) = output_padding
  return lax.pad(y, jnp.zeros((), y.dtype),
                 ((0, 0, 0), (-top, kh - bottom + op_h - ah * sh, 0),
                  (-left, kw - right + op_w - aw * sw, 0), (0, 0, 0)))


def max_pool(x: jax.Array, window: Pair, stride: Pair, padding: Sequence[Pair]) -> jax.Array:
  """Max pooling, NHWC, `-inf` padding, PyTorch's gradient (the first maximum of each window
  gets it). Windows that tile the input (window == stride) are a reshape and a max.

  Autodiff of `lax.reduce_window` is a select-and-scatter, which XLA:CPU runs as a
  variadic reduce-window over the values and their indices (~7 % of a U-Net
  training step, measured); here the gradient is elementwise ops on the same
  reshaped windows.
  """
  if window != stride or not _concrete(x):
    return _xla_max_pool(x, window, stride, padding)
  return _tiling_max_pool(x, tuple(window), tuple(map(tuple, padding)))


def _xla_max_pool(x, window, stride, padding):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *stride, 1),
                           ((0, 0), *padding, (0, 0)))


def _windows(x, window, padding):
  """`x` padded with -inf to exactly its windows' rows and columns, `(N, oh, kh, ow, kw, C)`."""
  (top, bottom), (left, right) = padding
  (kh, kw), n, c = window, x.shape[0], x.shape[3]
  oh, ow = ((m + lo + hi) // k for m, (lo, hi), k in zip(x.shape[1:3], padding, window))
  x = lax.pad(x, jnp.array(-jnp.inf, x.dtype),  # a partial last window is dropped
              ((0, 0, 0), (top, oh * kh - x.shape[1] - top, 0),
               (left, ow * kw - x.shape[2] - left, 0), (0, 0, 0)))
  return x.reshape(n, oh, kh, ow, kw, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _tiling_max_pool(x, window, padding):
  return _windows(x, window, padding).max(axis=(2, 4))


def _tiling_max_pool_fwd(x, window, padding):
  y = _tiling_max_pool(x, window, padding)
  return y, (x, y)


def _tiling_max_pool_bwd(window, padding, residuals, g):
  x, y = residuals
  windows = _windows(x, window, padding)
  found = jnp.zeros(y.shape, bool)
  rows = []
  for a in range(window[0]):  # window positions in row-major order, as PyTorch scans them
    row = []
    for b in range(window[1]):
      first = (windows[:, :, a, :, b] == y) & ~found
      found = found | first
      row.append(jnp.where(first, g, 0))
    rows.append(jnp.stack(row, axis=3))
  dx = jnp.stack(rows, axis=2)  # (N, oh, kh, ow, kw, C)
  n, oh, kh, ow, kw, c = dx.shape
  (top, _), (left, _) = padding
  dx = dx.reshape(n, oh * kh, ow * kw, c)
  return (lax.pad(dx, jnp.zeros((), dx.dtype),
                  ((0, 0, 0), (-top, x.shape[1] - oh * kh + top, 0),
                   (-left, x.shape[2] - ow * kw + left, 0), (0, 0, 0))),)


_tiling_max_pool.defvjp(_tiling_max_pool_fwd, _tiling_max_pool_bwd)
