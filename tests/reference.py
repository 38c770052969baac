"""Direct NumPy implementations of the layers, written for the tests (loops, no tricks)."""

import numpy as np

NP_MODES = {'zeros': 'constant', 'reflect': 'reflect', 'replicate': 'edge', 'circular': 'wrap'}


def conv2d(x, kernel, bias=None, stride=(1, 1), dilation=(1, 1), padding=((0, 0), (0, 0)),
           mode='zeros', groups=1):
  """NHWC x, HWIO kernel (I = C_in / groups)."""
  x = np.pad(x, ((0, 0), *padding, (0, 0)), mode=NP_MODES[mode])
  n, h, w, c_in = x.shape
  kh, kw, c_g, c_out = kernel.shape
  out_g = c_out // groups
  out_h = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
  out_w = (w - dilation[1] * (kw - 1) - 1) // stride[1] + 1
  y = np.zeros((n, out_h, out_w, c_out), np.float64)
  for i in range(out_h):
    for j in range(out_w):
      for a in range(kh):
        for b in range(kw):
          patch = x[:, i * stride[0] + a * dilation[0], j * stride[1] + b * dilation[1], :]
          for g in range(groups):
            y[:, i, j, g * out_g:(g + 1) * out_g] += (
                patch[:, g * c_g:(g + 1) * c_g] @ kernel[a, b, :, g * out_g:(g + 1) * out_g])
  return y if bias is None else y + bias


def conv_transpose2d(x, kernel, bias=None, stride=(1, 1), padding=((0, 0), (0, 0)),
                     output_padding=(0, 0), dilation=(1, 1)):
  """Scatter definition: input i adds kernel tap t at output s*i - pad + d*t. Kernel HWIO."""
  n, h, w, _ = x.shape
  kh, kw, _, c_out = kernel.shape
  full_h = (h - 1) * stride[0] + dilation[0] * (kh - 1) + 1 + output_padding[0]
  full_w = (w - 1) * stride[1] + dilation[1] * (kw - 1) + 1 + output_padding[1]
  y = np.zeros((n, full_h, full_w, c_out), np.float64)
  for i in range(h):
    for j in range(w):
      for a in range(kh):
        for b in range(kw):
          y[:, i * stride[0] + a * dilation[0], j * stride[1] + b * dilation[1]] += (
              x[:, i, j] @ kernel[a, b])
  (top, bottom), (left, right) = padding
  y = y[:, top:full_h - bottom, left:full_w - right]
  return y if bias is None else y + bias


def resize_axis(n_in, n_out, method):
  """Matrix (n_out, n_in): half-pixel bilinear clamped at borders, or floor nearest."""
  m = np.zeros((n_out, n_in))
  for o in range(n_out):
    if method == 'nearest':
      m[o, (o * n_in) // n_out] = 1
    else:
      src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
      i0 = min(int(np.floor(src)), n_in - 1)
      i1 = min(i0 + 1, n_in - 1)
      m[o, i0] += 1 - (src - i0)
      m[o, i1] += src - i0
  return m


def resize(x, size, method):
  mh = resize_axis(x.shape[1], size[0], method)
  mw = resize_axis(x.shape[2], size[1], method)
  return np.einsum('oh,nhwc,pw->nopc', mh, x, mw)


def max_pool(x, window, stride, padding):
  """Returns (values, flat switches row*W + col) with -inf padding, first max wins."""
  n, h, w, c = x.shape
  xp = np.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-np.inf)
  (top, _), (left, _) = padding
  out_h = (xp.shape[1] - window[0]) // stride[0] + 1
  out_w = (xp.shape[2] - window[1]) // stride[1] + 1
  values = np.zeros((n, out_h, out_w, c))
  switches = np.zeros((n, out_h, out_w, c), np.int64)
  for b in range(n):
    for ch in range(c):
      for i in range(out_h):
        for j in range(out_w):
          win = xp[b, i * stride[0]:i * stride[0] + window[0],
                   j * stride[1]:j * stride[1] + window[1], ch]
          a = int(np.argmax(win))
          values[b, i, j, ch] = win.flat[a]
          r = i * stride[0] + a // window[1] - top
          col = j * stride[1] + a % window[1] - left
          switches[b, i, j, ch] = r * w + col
  return values, switches


def avg_pool(x, window, stride, padding):
  xp = np.pad(x, ((0, 0), *padding, (0, 0)))
  out_h = (xp.shape[1] - window[0]) // stride[0] + 1
  out_w = (xp.shape[2] - window[1]) // stride[1] + 1
  y = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
  for i in range(out_h):
    for j in range(out_w):
      y[:, i, j] = xp[:, i * stride[0]:i * stride[0] + window[0],
                      j * stride[1]:j * stride[1] + window[1]].mean(axis=(1, 2))
  return y


def max_unpool(x, switches, out_size):
  n, h, w, c = x.shape
  y = np.zeros((n, out_size[0] * out_size[1], c))
  for b in range(n):
    for ch in range(c):
      y[b, switches[b, :, :, ch].ravel(), ch] = x[b, :, :, ch].ravel()
  return y.reshape(n, out_size[0], out_size[1], c)
