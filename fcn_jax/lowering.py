"""How the layers express convolutions for XLA: the same numbers, programs XLA runs fast.

XLA:CPU runs stride-1 convolutions through its library path (YNNPACK) but falls
back to a slow generic loop for any convolution with *input* dilation — which is
what a transposed convolution is, and what autodiff makes of the input gradient
of a strided convolution (and the weight gradient of a transposed one). Measured
on the 2-core CPU (`benchmarks/README.md`): the weight gradient of the U-Net's
2x2 stride-2 up-convolutions alone took a third of a training step. So:

* `conv` with stride `s > 1` is computed as a stride-1 convolution of the
  space-to-depth input (`s*s*C` channels, kernel `ceil(k/s)` taps, the kernel
  zero-padded to a multiple of `s`): no strided or dilated convolution in the
  forward pass or in either gradient. It costs `(s*ceil(k/s)/k)^2` more FLOPs
  (16/9 for 3x3 stride 2) and still wins, measured on whole training steps.
* `conv_transpose` with stride `s > 1` is the sub-pixel ("phase") form: one
  stride-1 convolution producing `s*s*C_out` channels (one per output phase),
  then depth-to-space and the crop. For kernel == stride (U-Net's 2x2/2) that
  is a 1x1 convolution, i.e. a single matmul.

Both are exact rewrites (results equal to `lax.conv_general_dilated` within
float rounding; `tests/test_lowering.py`). They apply to ungrouped, undilated
convolutions with concrete sizes; anything else, and symbolic sizes for
`jax.export`, uses `lax.conv_general_dilated` directly.
"""

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


def conv_transpose(x: jax.Array, kernel: jax.Array, stride: Pair, padding: Sequence[Pair],
                   output_padding: Pair = (0, 0), dilation: Pair = (1, 1)) -> jax.Array:
  """`torch.nn.functional.conv_transpose2d` semantics, NHWC input, `(kh, kw, in, out)` kernel.

  Output `(n - 1)*s - lo - hi + d*(k - 1) + 1 + output_padding` per axis.
  """
  if stride == (1, 1) or dilation != (1, 1) or not _concrete(x):
    pads = [(d * (k - 1) - lo, d * (k - 1) - hi + op) for (lo, hi), k, d, op in
            zip(padding, kernel.shape[:2], dilation, output_padding)]
    return lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), pads, lhs_dilation=stride,
                                    rhs_dilation=dilation, dimension_numbers=DIMS)
  kh, kw, c_in, c_out = kernel.shape
  (sh, sw), (ah, aw) = stride, (_taps(kh, stride[0]), _taps(kw, stride[1]))
  n, h, w, _ = x.shape
  # Full output row s*m + r sums x[m - a] * kernel[s*a + r]: per phase r a stride-1
  # correlation with the flipped taps, all phases as output channels of one conv.
  kernel = jnp.pad(kernel, ((0, ah * sh - kh), (0, aw * sw - kw), (0, 0), (0, 0)))
  kernel = kernel.reshape(ah, sh, aw, sw, c_in, c_out)[::-1, :, ::-1]
  kernel = kernel.transpose(0, 2, 4, 1, 3, 5).reshape(ah, aw, c_in, sh * sw * c_out)
  y = lax.conv_general_dilated(x, kernel, (1, 1), ((ah - 1, ah - 1), (aw - 1, aw - 1)),
                               dimension_numbers=DIMS)
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
