r"""The PyTorch side of the peers: runs in PyTorch's own Python (3.11 here), imports no JAX.

  python -m benchmarks.torch_peers --serve            # answer `peers.TorchWorker` calls
  python -m benchmarks.torch_peers --one=SPEC.json     # one benchmark figure (benchmarks.speed)

`build(spec, weights)` makes the `nn.Module` that `benchmarks.peers.export` described (NCHW in
and out, weights copied, nothing initialised at random).
"""

import json
import pickle
import resource
import statistics
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import workload


def _param(weights, key):
  return nn.Parameter(torch.from_numpy(np.array(weights[key])))


def _layer(op: dict, weights) -> nn.Module:
  if op['op'] == 'relu':
    return nn.ReLU()
  if op['op'] == 'max_pool':
    return nn.MaxPool2d(op['window'], op['stride'], ceil_mode=op['ceil_mode'])
  kind = nn.Conv2d if op['op'] == 'conv' else nn.ConvTranspose2d
  layer = kind(op['in_channels'], op['out_channels'], op['kernel_size'], op['stride'],
               op['padding'], dilation=op['dilation'], bias=op['bias'] is not None)
  layer.weight = _param(weights, op['weight'])
  if op['bias'] is not None:
    layer.bias = _param(weights, op['bias'])
  return layer


def _sequential(ops, weights) -> nn.Sequential:
  return nn.Sequential(*(_layer(op, weights) for op in ops))


class _UNetLevel(nn.Module):

  def __init__(self, level, weights):
    super().__init__()
    self.encode = _sequential(level['encode'], weights)
    self.is_bottom = level['inner'] is None
    if not self.is_bottom:
      self.pool = nn.MaxPool2d(2)
      self.inner = _UNetLevel(level['inner'], weights)
      self.up = _layer(level['up'], weights)
      self.decode = _sequential(level['decode'], weights)

  def forward(self, x):
    x = self.encode(x)
    if self.is_bottom:
      return x
    below = self.up(self.inner(self.pool(x)))
    return self.decode(torch.cat([x, below], dim=1))


class _PatchNet(nn.Module):

  def __init__(self, spec, weights):
    super().__init__()
    self.features = _sequential(spec['features'], weights)
    self.head = _sequential(spec['head'], weights)

  def forward(self, x):
    return self.head(self.features(x))


class _UNet(nn.Module):

  def __init__(self, spec, weights):
    super().__init__()
    self.body = _UNetLevel(spec['body'], weights)
    self.head = _layer(spec['head'], weights)

  def forward(self, x):
    return self.head(self.body(x))


class _FCN(nn.Module):
  """FCN-32s/16s/8s; the crop offsets of every fusion are the Flax model's, per input size."""

  def __init__(self, spec, weights):
    super().__init__()
    self.first_skip = spec['first_skip']
    self.blocks = nn.ModuleList(_sequential(b, weights) for b in spec['blocks'])
    self.classifier = _sequential(spec['classifier'], weights)
    self.score_pool = nn.ModuleList(_layer(c, weights) for c in spec['score_pool'])
    self.up2 = nn.ModuleList(_layer(u, weights) for u in spec['up2'])
    self.final_up = _layer(spec['final_up'], weights)
    self.offsets = spec['offsets']

  def _fused(self, b, x, offsets):
    if b == 5:
      return self.classifier(x)
    k = b - self.first_skip
    deeper = self.up2[k](self._fused(b + 1, self.blocks[b](x), offsets))
    (top, left), (h, w) = offsets[f'score_pool{b}'], deeper.shape[2:]
    return self.score_pool[k](x)[:, :, top:top + h, left:left + w] + deeper

  def forward(self, x):
    size = tuple(x.shape[2:])
    offsets = self.offsets.get(f'{size[0]}x{size[1]}')
    if offsets is None:
      raise ValueError(f'the FCN peer was exported without crop offsets for {size}: pass it in '
                       'export(model, sizes=...)')
    h = x
    for block in self.blocks[:self.first_skip]:
      h = block(h)
    scores = self.final_up(self._fused(self.first_skip, h, offsets))
    top, left = offsets['final']
    return scores[:, :, top:top + size[0], left:left + size[1]]


def build(spec: dict, weights) -> nn.Module:
  """The `nn.Module` of an exported model (NCHW in and out)."""
  return {'patch_net': _PatchNet, 'unet': _UNet, 'fcn': _FCN}[spec['model']](spec, weights)


def forward(spec: dict, weights, x: np.ndarray) -> np.ndarray:
  """The peer's output on an NHWC batch (eval mode, no gradients), NHWC."""
  module = build(spec, weights).eval()
  with torch.no_grad():
    return module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def _numpy(value):
  if isinstance(value, torch.Tensor):
    return value.detach().numpy()
  if isinstance(value, (tuple, list)):
    return tuple(_numpy(v) for v in value)
  return value


def _tensor(value):
  return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def serve() -> None:
  """Answers pickled `(kind, args, kwargs)` requests on stdin until it closes: `version`,
  `forward`, or `call` (a `torch.nn.functional` op on arrays); replies on stdout."""
  stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
  sys.stdout = sys.stderr  # a stray print must not corrupt the replies
  while True:
    try:
      kind, args, kwargs = pickle.load(stdin)
    except EOFError:
      return
    try:
      if kind == 'version':
        result = str(torch.__version__)
      elif kind == 'forward':
        result = forward(*args)
      elif kind == 'torchvision':
        from benchmarks import torchvision_layout  # pylint: disable=import-outside-toplevel
        result = torchvision_layout.reference(*args, **kwargs)
      else:
        name, *args = args
        result = _numpy(getattr(F, name)(*map(_tensor, args), **kwargs))
      reply = (True, result)
    except Exception as e:  # pylint: disable=broad-exception-caught  # reported to the caller
      reply = (False, f'{type(e).__name__}: {e}')
    pickle.dump(reply, stdout)
    stdout.flush()


def _train(module, spec, compiled):
  model = torch.compile(module) if compiled else module
  optimizer = torch.optim.Adam(module.parameters(), 1e-3)
  x, y = workload.batch(spec['model'], spec['batch'], spec['size'])
  x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  if spec['model'] in workload.HEATMAP_MODELS:
    y = torch.from_numpy(y).permute(0, 3, 1, 2).contiguous()
    loss_fn = nn.BCEWithLogitsLoss()
  else:
    y = torch.from_numpy(y).long()
    loss_fn = nn.CrossEntropyLoss()

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss

  return workload.timed(step, spec['repeats'], spec['steps'])


def _infer(module, spec, compiled):
  module.eval()
  model = torch.compile(module) if compiled else module
  x = torch.from_numpy(workload.image(spec['size'])).permute(0, 3, 1, 2).contiguous()

  def run():
    with torch.no_grad():
      return model(x)

  return workload.timed(run, spec['repeats'], warmup=spec.get('warmup', 0))


def _matmul_peak(repeats: int) -> float:
  n = 2048
  a = torch.from_numpy(np.random.default_rng(0).random((n, n), dtype=np.float32))
  _, times = workload.timed(lambda: torch.mm(a, a), repeats)
  return 2 * n ** 3 / min(times) / 1e9


def measure(spec: dict) -> dict:
  """One benchmark figure of `benchmarks.speed` for 'torch' or 'torch.compile'. The model comes
  exported in `spec['export']` (a .npz with the weights beside a .json with the architecture)."""
  out = dict(spec, torch=str(torch.__version__), threads=torch.get_num_threads())
  try:
    if spec['kind'] == 'matmul':
      out['gflops'] = _matmul_peak(spec['repeats'])
    else:
      with open(spec['export'] + '.json') as f:
        arch = json.load(f)
      module = build(arch, np.load(spec['export'] + '.npz'))
      compiled = spec['framework'] == 'torch.compile'
      first, times = (_train if spec['kind'] == 'train' else _infer)(module, spec, compiled)
      per_run = spec['batch'] * spec['steps'] if spec['kind'] == 'train' else (
          spec['size'] ** 2 / 1e6)
      out.update(first_s=first, **workload.stats(times), rate=per_run / statistics.median(times))
  except Exception as e:  # pylint: disable=broad-exception-caught  # e.g. torch.compile missing a compiler
    out['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:120]}' if str(e) else type(
        e).__name__
  out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return out


def main(argv: list[str]) -> None:
  if argv == ['--serve']:
    serve()
  elif len(argv) == 1 and argv[0].startswith('--one='):
    print(json.dumps(measure(json.loads(argv[0][len('--one='):]))))
  else:
    sys.exit('usage: python -m benchmarks.torch_peers --serve | --one=JSON')


if __name__ == '__main__':
  main(sys.argv[1:])
