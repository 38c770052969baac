"""PyTorch peers of fcn_jax models: the architecture and the Flax weights, exported for PyTorch.

PyTorch's CPU wheel here is for Python 3.11 only, fcn_jax runs on Python >= 3.12, so the two never
share a process: `export(model)` describes the model as JSON plus NumPy weights already in
PyTorch's layout, and `benchmarks/torch_peers.py` (imports only NumPy and PyTorch) rebuilds it as
an `nn.Module` in its own interpreter, found by `torch_python()`. `TorchWorker` is one such
process that stays up and answers calls (`torch.nn.functional` ops, or a peer's forward pass);
the tests use one for the whole session.

Peers exist for the models the benchmark compares: `patch_net` (stride-2 convs + 1x1 head,
zero padding), `unet` with `padding='same'`, `upsample='transpose'` and no normalisation, and
`fcn8s`/`16s`/`32s` without dropout (VGG blocks with ceil-mode pools, fc6/fc7 as convs, skip
fusions cropped at the offsets the Flax model's geometry gives, exported per input size).
Layouts: Flax conv kernels are `(kh, kw, in, out)`, PyTorch's `(out, in, kh, kw)`; transposed-conv
kernels are `(kh, kw, in, out)` with PyTorch semantics here and `(in, out, kh, kw)` in PyTorch.
`tests/test_peers.py` checks the outputs are equal.
"""

import os
import pickle
import subprocess

import numpy as np

from fcn_jax import layers

ENV = 'FCN_JAX_TORCH_PYTHON'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PYTHON = os.path.join(ROOT, '.venv-torch', 'bin', 'python')


class _Weights:
  """Collects arrays under generated keys (`w0`, `w1`, ...)."""

  def __init__(self):
    self.arrays = {}

  def add(self, array) -> str:
    key = f'w{len(self.arrays)}'
    self.arrays[key] = np.ascontiguousarray(array, dtype=np.float32)
    return key


def _symmetric(padding, what):
  (top, bottom), (left, right) = padding
  if top != bottom or left != right:
    raise ValueError(f'the peer needs symmetric padding, got {padding} in {what}')
  return [top, left]


def _conv(layer: layers.Conv, weights: _Weights) -> dict:
  if layer.padding_mode != 'zeros' or layer.groups != 1:
    raise ValueError('the peer supports zero-padded, ungrouped convs only')
  return dict(op='conv', in_channels=layer.in_channels, out_channels=layer.out_channels,
              kernel_size=list(layer.kernel_size), stride=list(layer.stride),
              padding=_symmetric(layer.padding, 'a conv'), dilation=list(layer.dilation),
              weight=weights.add(np.asarray(layer.kernel[...]).transpose(3, 2, 0, 1)),
              bias=None if layer.bias is None else weights.add(layer.bias[...]))


def _conv_transpose(layer: layers.ConvTranspose, weights: _Weights) -> dict:
  if any(layer.output_padding):
    raise ValueError('the peer needs transposed convs without output padding')
  return dict(op='conv_transpose', in_channels=layer.in_channels,
              out_channels=layer.out_channels, kernel_size=list(layer.kernel_size),
              stride=list(layer.stride), padding=_symmetric(layer.padding, 'a transposed conv'),
              dilation=list(layer.dilation),
              weight=weights.add(np.asarray(layer.kernel[...]).transpose(2, 3, 0, 1)),
              bias=None if layer.bias is None else weights.add(layer.bias[...]))


def _sequential(seq: layers.Sequential, weights: _Weights) -> list[dict]:
  out = []
  for layer in seq.layers:
    if isinstance(layer, layers.Conv):
      out.append(_conv(layer, weights))
    elif isinstance(layer, layers.MaxPool) and layer.padding == ((0, 0), (0, 0)):
      out.append(dict(op='max_pool', window=list(layer.window), stride=list(layer.stride),
                      ceil_mode=layer.ceil_mode))
    elif layer is layers.identity:
      continue
    elif getattr(layer, '__name__', '') == 'relu':
      out.append(dict(op='relu'))
    else:
      raise ValueError(f'no PyTorch peer for {layer!r}')
  return out


def _unet_level(level: layers.Sequential, weights: _Weights) -> dict:
  """A level of `fcn_jax.models.unet`: (encode,) at the bottom, else (encode, skip, decode)
  with the skip's second branch (pool, the level below, up)."""
  encode, *rest = level.layers
  out = dict(encode=_sequential(encode, weights), inner=None)
  if rest:
    skip, decode = rest
    _, inner, up = skip.branches[1].layers
    if not isinstance(up, layers.ConvTranspose):
      raise ValueError("the U-Net peer supports upsample='transpose' only")
    out.update(inner=_unet_level(inner, weights), up=_conv_transpose(up, weights),
               decode=_sequential(decode, weights))
  return out


def export(model, sizes=()) -> tuple[dict, dict[str, np.ndarray]]:
  """(architecture as JSON-able dict, weights by key in PyTorch's layout) of `model`.

  `sizes`: the `(H, W)` input sizes an FCN peer will see (its skip crops are exported per size);
  other models run at any size. Raises ValueError for a model without a peer.
  """
  name = getattr(model, 'name', type(model).__name__)
  weights = _Weights()
  if name == 'patch_net':
    spec = dict(model='patch_net', features=_sequential(model.features, weights),
                head=_sequential(model.head, weights))
  elif name == 'unet':
    if model.body.layers[0].layers[0].padding == ((0, 0), (0, 0)):
      raise ValueError("the U-Net peer supports padding='same' only (no skip crops)")
    spec = dict(model='unet', body=_unet_level(model.body, weights),
                head=_conv(model.head, weights))
  elif name in ('fcn32s', 'fcn16s', 'fcn8s'):
    parts = model.parts()
    spec = dict(model='fcn', first_skip=model.first_skip,
                blocks=[_sequential(b, weights) for b in parts['blocks']],
                classifier=_sequential(parts['classifier'], weights),
                score_pool=[_conv(c, weights) for c in parts['score_pool']],
                up2=[_conv_transpose(u, weights) for u in parts['up2']],
                final_up=_conv_transpose(parts['final_up'], weights),
                offsets={f'{h}x{w}': {k: list(v) for k, v in model.crop_offsets((h, w)).items()}
                         for h, w in sizes})
  else:
    raise ValueError(f'no PyTorch peer for {name!r} (peers: patch_net, unet, fcn8s/16s/32s)')
  return spec, weights.arrays


def torch_python() -> str | None:
  """The Python that has PyTorch: `$FCN_JAX_TORCH_PYTHON`, else `.venv-torch/bin/python` (made
  by `setup.sh` where a Python 3.11 and PyTorch's local CPU wheel exist), else None."""
  path = os.environ.get(ENV) or DEFAULT_PYTHON
  return path if os.access(path, os.X_OK) else None


class TorchUnavailable(RuntimeError):
  pass


class TorchWorker:
  """A PyTorch process that answers calls until closed (`benchmarks.torch_peers --serve`).

    with TorchWorker() as torch:
      y = torch.call('conv2d', x, w, b, stride=2)        # torch.nn.functional.conv2d, NCHW
      y = torch.forward(*export(model, [x.shape[1:3]]), x)  # a peer, NHWC in and out

  Arguments and results are NumPy arrays (tuples of them for ops that return several).
  """

  def __init__(self, python: str | None = None):
    python = python or torch_python()
    if python is None:
      raise TorchUnavailable(f'no Python with PyTorch: run setup.sh (it makes .venv-torch from a '
                             f'Python 3.11 and PyTorch\'s CPU wheel) or set {ENV}')
    self._process = subprocess.Popen(
        [python, '-m', 'benchmarks.torch_peers', '--serve'], cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, env={**os.environ, 'PYTHONPATH': ROOT})
    try:
      self.version = self._request(('version', (), {}))
    except (EOFError, TorchUnavailable) as e:
      self.close()
      raise TorchUnavailable(f'{python} could not start the PyTorch peer ({e}); run setup.sh '
                             f'again or set {ENV}') from e

  def _request(self, message):
    pickle.dump(message, self._process.stdin)
    self._process.stdin.flush()
    ok, result = pickle.load(self._process.stdout)
    if not ok:
      raise RuntimeError(f'PyTorch side: {result}')
    return result

  def call(self, function: str, *args, **kwargs):
    """`torch.nn.functional.<function>(*args, **kwargs)` on arrays; NumPy results."""
    return self._request(('call', (function, *args), kwargs))

  def forward(self, spec: dict, weights: dict, x: np.ndarray) -> np.ndarray:
    """The peer of an exported model on an NHWC batch, in eval mode without gradients."""
    return self._request(('forward', (spec, weights, x), {}))

  def torchvision(self, spec: dict, x: np.ndarray, seed: int = 0) -> tuple[dict, np.ndarray]:
    """A random model in torchvision's layout (`benchmarks/torchvision_layout.py`): its state
    dict as NumPy arrays and its eval-mode output on the NHWC batch `x`."""
    return self._request(('torchvision', (spec, x), {'seed': seed}))

  def close(self):
    if self._process.poll() is None:
      self._process.stdin.close()
      try:
        self._process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self._process.kill()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def run_torch(args: list[str], **kwargs) -> subprocess.CompletedProcess:
  """`python -m benchmarks.torch_peers ARGS` in the PyTorch interpreter (for fresh processes)."""
  python = torch_python()
  if python is None:
    raise TorchUnavailable(f'no Python with PyTorch: run setup.sh or set {ENV}')
  return subprocess.run([python, '-m', 'benchmarks.torch_peers', *args], cwd=ROOT,
                        env={**os.environ, 'PYTHONPATH': ROOT}, check=False, **kwargs)

