"""How the layers express convolutions for XLA: the same numbers, faster programs.

XLA:CPU runs stride-1 convolutions through a library kernel (YNNPACK), fast, and on
jax 0.12 on every core. Input-dilated convolutions run in a slow generic loop. A
transposed convolution is one, so are the input gradient of a strided convolution
and the weight gradient of a transposed one. Two rewrites avoid them:

* `conv_transpose` with stride `s > 1` is the sub-pixel form: one stride-1
  convolution giving `s*s*C_out` channels (one per output phase), depth-to-space,
  crop.
* Strided `conv`s, and the sub-pixel form's stride-1 convolution, keep XLA's forward
  but own their gradients (`jax.custom_vjp`): the input gradient is that sub-pixel
  transposed convolution, the weight gradient one matmul per kernel tap.

Measured on jax 0.12.0.1, one CPU device, 2 cores (`python -m benchmarks.cpu_strategy`,
`benchmarks/README.md`, "CPU strategy"): the figures for each rewrite are there.
Three rewrites that paid on jax 0.10.2 no longer did on jax 0.12 and were deleted
(1x1 convolutions as matmuls, RGB padded to 4 channels, tiling max pools as reshape
+ max: whole training steps and predict calls as fast or faster without them).
Tried and not kept earlier: strided convs as space-to-depth stride-1 convs, im2col
for every conv, the weight gradient in batch chunks, bfloat16.

Every rewrite is exact up to float rounding (`tests/test_lowering.py` compares values
and gradients with `lax.conv_general_dilated`); grouped or dilated convolutions, and
symbolic sizes (`jax.export`), use XLA's own ops.

Faster still on the CPU are oneDNN's kernels (`fcn_jax.onednn`, an XLA FFI extension built
on first use): 'onednn' runs every float32 convolution (strided, dilated, grouped; transposed
ones through the sub-pixel form) and both its gradients there, and the other cases by the
'cpu' rules. Training steps run 1.6-1.9x faster than with 'cpu' (patch_net, U-Net, FCN-8s);
inference is faster or level except patch_net at 1024^2, where XLA's strided forward convs
are 1.28x faster ("CPU strategy").

The rewrites were measured on XLA:CPU only; on a GPU or TPU they would replace the vendor's
convolution kernels (cuDNN) with ones tuned for another machine. So each op takes a `policy`
(the layers' `lowering` attribute, `config.lowering`): 'onednn' and 'cpu' as above, 'xla' uses
XLA's own ops, and 'auto' (the default) is, when the op is traced for the CPU backend,
'onednn' where the extension is available and 'cpu' where not, and 'xla' on any other backend
(`resolve`).
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from fcn_jax import errors
from fcn_jax import onednn

Pair = tuple[int, int]
DIMS = ('NHWC', 'HWIO', 'NHWC')
POLICIES = ('auto', 'xla', 'cpu', 'onednn')


def check(policy: str) -> str:
  """`policy`, if it is one of POLICIES."""
  if policy not in POLICIES:
    raise errors.ConfigError(f'lowering must be one of {POLICIES}, got {policy!r}')
  return policy


def resolve(policy: str) -> str:
  """'onednn' (oneDNN's kernels), 'cpu' (apply the rewrites) or 'xla' (XLA's own ops) for
  `policy`: 'auto' is 'onednn' when JAX's default backend is the CPU and the extension is
  available, else 'cpu' there, and 'xla' on a GPU or TPU. 'onednn' where the extension is
  unavailable (said once, in the log) is 'cpu'."""
  check(policy)
  on_cpu = jax.default_backend() == 'cpu'
  if policy == 'onednn' and not on_cpu:
    raise errors.ConfigError(f"lowering='onednn' runs on the CPU only, not on "
                             f"{jax.default_backend()}: use 'auto' or 'xla'")
  if policy == 'auto':
    policy = 'onednn' if on_cpu else 'xla'
  if policy == 'onednn' and not onednn.available():
    return 'cpu'
  return policy


def _concrete(x: jax.Array) -> bool:
  return all(isinstance(n, int) for n in x.shape)


def _taps(k: int, s: int) -> int:
  return -(-k // s)


def conv(x: jax.Array, kernel: jax.Array, stride: Pair, padding: Sequence[Pair],
         dilation: Pair = (1, 1), groups: int = 1, policy: str = 'auto') -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, stride, padding, rhs_dilation=dilation,
  feature_group_count=groups)`, NHWC/HWIO, by oneDNN or with the CPU rewrites where `policy`
  resolves to 'onednn' or 'cpu'."""
  policy = resolve(policy)
  if policy == 'onednn' and onednn.supports(x, kernel, padding):
    return onednn.conv(x, kernel, tuple(stride), tuple(map(tuple, padding)), tuple(dilation),
                       groups)
  if (policy != 'xla' and groups == 1 and dilation == (1, 1) and stride != (1, 1)
      and _concrete(x)):
    return _tap_conv(x, kernel, tuple(stride), tuple(map(tuple, padding)))
  return _xla_conv(x, kernel, stride, padding, dilation, groups)


def _xla_conv(x, kernel, stride, padding, dilation=(1, 1), groups=1):
  return lax.conv_general_dilated(x, kernel, stride, padding, rhs_dilation=dilation,
                                  dimension_numbers=DIMS, feature_group_count=groups)


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
    dx = conv_transpose(g, kernel.transpose(0, 1, 3, 2), stride, padding, dropped,
                        policy='cpu')
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
                   output_padding: Pair = (0, 0), dilation: Pair = (1, 1),
                   policy: str = 'auto') -> jax.Array:
  """`torch.nn.functional.conv_transpose2d` semantics, NHWC input, `(kh, kw, in, out)` kernel,
  as the sub-pixel form where `policy` resolves to 'cpu' or 'onednn' (whose stride-1
  convolution oneDNN then runs).

  Output `(n - 1)*s - lo - hi + d*(k - 1) + 1 + output_padding` per axis.
  """
  policy = resolve(policy)
  if tuple(stride) == (1, 1):  # a convolution with the flipped kernel
    return conv(x, kernel[::-1, ::-1], (1, 1), _transpose_pads(kernel, padding, output_padding,
                                                                dilation), dilation, policy=policy)
  if policy == 'xla' or dilation != (1, 1) or not _concrete(x):
    return _xla_conv_transpose(x, kernel, stride, padding, output_padding, dilation)
  return _subpixel_conv_transpose(x, kernel, tuple(stride), padding, output_padding, policy)


def _xla_conv_transpose(x, kernel, stride, padding, output_padding=(0, 0), dilation=(1, 1)):
  """The transposed convolution as XLA's input-dilated convolution."""
  return lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1),
                                  _transpose_pads(kernel, padding, output_padding, dilation),
                                  lhs_dilation=stride, rhs_dilation=dilation,
                                  dimension_numbers=DIMS)


def _transpose_pads(kernel, padding, output_padding, dilation):
  """The paddings of the input-dilated convolution that is this transposed one."""
  return tuple((d * (k - 1) - lo, d * (k - 1) - hi + op) for (lo, hi), k, d, op in
               zip(padding, kernel.shape[:2], dilation, output_padding))


def _subpixel_conv_transpose(x, kernel, stride, padding, output_padding, policy='cpu'):
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
  full = ((ah - 1, ah - 1), (aw - 1, aw - 1))
  if policy == 'onednn' and onednn.supports(x, kernel, full):
    y = onednn.conv(x, kernel, (1, 1), full)
  else:  # Few taps, many output channels: its weight gradient is per-tap matmuls.
    y = _tap_conv(x, kernel, (1, 1), full)
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
