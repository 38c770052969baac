r"""fcn_jax vs PyTorch on the same functions: training and inference throughput, compile, memory.

  python -m benchmarks.speed            # the full table (about 30 minutes on 2 cores)
  python -m benchmarks.speed --rounds=1 # one pair of runs per figure (about 10 minutes)
  python -m benchmarks.speed --quick    # patch_net, batch 8, 256^2, one run (CI smoke run)
  python -m benchmarks.speed --only=infer:256 --rounds=5  # some figures, printed only

Models (`benchmarks/peers.py` copies the Flax weights into PyTorch; the tests
check equal outputs): `patch_net` as in the issue (stride-2 3x3 convs 32/64/128,
1x1 convs 32 -> 1), a small same-padding U-Net (depth 3, width 16) and a small
FCN-8s (VGG widths 8-64, fc 128, 21 classes, no dropout). Every run is a fresh
process (so peak RSS and the first step are its own); fcn_jax and PyTorch eager
alternate, `--rounds` pairs per figure, and each ratio is of one pair:

* training: patches/s of a full step (forward, backward, Adam) at batch 64 of
  64x64x3, fcn_jax as `fcn_jax.train` runs it (placed with `train.place`); the
  first step's time is the compile time (JAX) or first-call overhead (PyTorch);
* inference: Mpixel/s of `fcn_jax.inference.predict` at 256^2, 1024^2 and 4096^2
  (FCN-8s: 256^2, 1024^2), batch 1, timed after the first call and, up to 1024^2,
  INFER_WARMUP untimed ones (a fresh process's first calls are slower on both frameworks);
* achieved GFLOP/s (the FLOPs of the step from XLA's cost analysis) against the
  measured float32 matmul peak of the machine (2048^2 matmuls).

Rewrites the "fcn_jax vs PyTorch" section of benchmarks/README.md and writes
benchmarks/speed.json (every run; `--rewrite`: only the section, from that file), with
the fcn_jax figures of an earlier run beside them (`--before`): `restructuring` (default,
`speed_before_restructuring.json`: jax 0.12 before issue 19 moved tiling, inference, skips
and tasks) or `jax_0_10_2` (`speed_jax_0_10_2.json`: the last run on jax 0.10.2).
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from benchmarks import peers
from benchmarks import report
from benchmarks import workload

FLAGS = flags.FLAGS
HERE = os.path.dirname(os.path.abspath(__file__))
SECTION = '## fcn_jax vs PyTorch'
JSON = os.path.join(HERE, 'speed.json')
# Earlier runs to show beside this one (--before): {'setup': description, 'rows': [...]}.
BEFORE = {'jax_0_10_2': os.path.join(HERE, 'speed_jax_0_10_2.json'),  # the last on jax 0.10.2
          'restructuring': os.path.join(HERE, 'speed_before_restructuring.json')}  # issue 19
MODELS = {
    'patch_net': dict(name='patch_net', features=(32, 64, 128), head=(32, 1)),
    'unet': dict(name='unet', in_channels=3, num_classes=2, depth=3, width=16, padding='same'),
    'fcn8s': dict(name='fcn', variant='fcn8s', widths=(8, 16, 32, 64, 64), fc_width=128,
                  num_classes=21, dropout=0.0),
}
INFER_WARMUP = 10  # untimed calls after the first, inference up to 1024² (workload.timed)
SIZES = {'fcn8s': (256, 1024), 'user_net': ()}  # inference sizes other than (256, 1024, 4096)
STEPS = {'fcn8s': 3}  # training steps per timed run other than 10
FRAMEWORKS = ('jax', 'torch', 'torch.compile')


def user_net(rngs):
  """A researcher's own net from `fcn_jax.layers`, not from `fcn_jax.models`: the issue's seed-like
  net (3x3 stride-2 convs 3 -> 32 -> 64 -> 128, 1x1 convs 128 -> 64 -> 1). Its PyTorch peer is
  patch_net's (`peers.export` reads `features` and `head`)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from fcn_jax import layers  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  class UserNet(nnx.Module):
    name = 'patch_net'

    def __init__(self):
      widths = (3, 32, 64, 128)
      self.features = layers.Sequential(*(part for a, b in zip(widths, widths[1:]) for part in (
          layers.Conv(a, b, 3, stride=2, padding=1, rngs=rngs), jax.nn.relu)))
      self.head = layers.Sequential(layers.Conv(128, 64, 1, rngs=rngs), jax.nn.relu,
                                    layers.Conv(64, 1, 1, rngs=rngs))

    def __call__(self, x):
      return self.head(self.features(x))

  return UserNet()


def _model(name: str, lowering: str = 'auto'):
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from fcn_jax import layers  # pylint: disable=g-import-not-at-top
  from fcn_jax import models  # pylint: disable=g-import-not-at-top
  if name == 'user_net':
    model = user_net(nnx.Rngs(0))
  else:
    model = models.get_model(MODELS[name], rngs=nnx.Rngs(0))
  return layers.set_lowering(model, lowering)


def _task(name: str):
  from fcn_jax import tasks  # pylint: disable=g-import-not-at-top
  return tasks.Heatmap() if name in workload.HEATMAP_MODELS else tasks.Segmentation()


def _flops(name: str, batch: int, size: int, train: bool) -> float:
  """FLOPs of one step (forward, or forward + backward) from XLA's cost analysis, of the model
  lowered to XLA's own convolutions (the cost analysis counts no FLOPs in oneDNN's FFI calls)."""
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from fcn_jax import cost  # pylint: disable=g-import-not-at-top
  graphdef, state = nnx.split(_model(name, 'xla'))
  x, y = workload.batch(name, batch, size)

  def loss(state, x, y):
    return _task(name).loss(nnx.merge(graphdef, state)(x), {'target': y})

  fn = jax.value_and_grad(loss) if train else (lambda s, x, y: nnx.merge(graphdef, s)(x))
  return cost.flops(fn, state, x, y)


def _plain_train(spec):
  """`user_net` trained as a user would write it: `jax.jit` of value_and_grad and an optax
  Adam update on the split state, no fcn_jax training loop, placement or donation."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  graphdef, params = nnx.split(_model(spec['model'], spec.get('lowering', 'auto')))
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)
  x, y = workload.batch(spec['model'], spec['batch'], spec['size'])
  loss = lambda p: optax.sigmoid_binary_cross_entropy(nnx.merge(graphdef, p)(x), y).mean()  # pylint: disable=unnecessary-lambda-assignment

  @jax.jit
  def update(params, opt_state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  state = [params, opt_state]

  def step():
    state[0], state[1], value = update(*state)
    return value

  return workload.timed(step, spec['repeats'], spec['steps'], jax.block_until_ready)


def _jax_train(spec):
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from fcn_jax import train  # pylint: disable=g-import-not-at-top
  name = spec['model']
  if name == 'user_net':
    return _plain_train(spec)
  model = _model(name, spec.get('lowering', 'auto'))
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  split = train.place(model, optimizer, spec['batch'])  # as fcn_jax.train places them
  x, y = workload.batch(name, spec['batch'], spec['size'])
  data = {'image': jax.device_put(x, split), 'target': jax.device_put(y, split)}

  def step():
    return train.train_step(model, optimizer, data, _task(name), 'float32')[0]

  return workload.timed(step, spec['repeats'], spec['steps'], jax.block_until_ready)


def _jax_infer(spec):
  from fcn_jax import inference  # pylint: disable=g-import-not-at-top
  model = _model(spec['model'], spec.get('lowering', 'auto'))
  model.eval()
  x = workload.image(spec['size'])
  return workload.timed(lambda: inference.predict(model, x), spec['repeats'],
                        warmup=spec.get('warmup', 0))


def _jax_matmul_peak(repeats: int, n: int = 2048) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  a = jax.device_put(np.random.default_rng(0).random((n, n), dtype=np.float32))
  f = jax.jit(lambda a: jnp.dot(a, a))
  _, times = workload.timed(lambda: f(a), repeats, wait=jax.block_until_ready)
  return 2 * n ** 3 / min(times) / 1e9


def _has_gpu() -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  try:
    return bool(jax.devices('gpu'))
  except (RuntimeError, AssertionError):  # no CUDA plugin or no device (JAX_PLATFORMS=cuda)
    return False


def measure(spec: dict) -> dict:
  """Runs in the child process: one fcn_jax figure (PyTorch's: `benchmarks.torch_peers`)."""
  import jax  # pylint: disable=g-import-not-at-top
  if spec.get('platform') == 'gpu' and not _has_gpu():
    return dict(spec, error='JAX finds no GPU (a CUDA jaxlib plugin and an NVIDIA driver are '
                            'needed: pip install -r requirements-gpu.txt)')
  out = dict(spec, jax=jax.__version__, devices=jax.local_device_count(),
             device=jax.devices()[0].device_kind)
  try:
    if spec['kind'] == 'matmul':
      out['gflops'] = _jax_matmul_peak(spec['repeats'], spec.get('n', 2048))
    else:
      first, times = (_jax_train if spec['kind'] == 'train' else _jax_infer)(spec)
      per_run = spec['batch'] * spec['steps'] if spec['kind'] == 'train' else (
          spec['size'] ** 2 / 1e6)
      out.update(first_s=first, **workload.stats(times), rate=per_run / statistics.median(times))
  except Exception as e:  # pylint: disable=broad-exception-caught  # reported in the table
    out['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:120]}' if str(e) else type(
        e).__name__
  out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return out


def _export(name: str, sizes, folder: str) -> str:
  """Writes the PyTorch peer of `name` under `folder` (once); returns its path stem."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks import peers  # pylint: disable=g-import-not-at-top
  stem = os.path.join(folder, name)
  if not os.path.exists(stem + '.json'):
    spec, weights = peers.export(_model(name), [(s, s) for s in sizes])
    np.savez(stem + '.npz', **weights)
    with open(stem + '.json', 'w') as f:
      json.dump(spec, f)
  return stem


def _child(spec: dict, folder: str) -> dict:
  """One figure in a fresh process: fcn_jax in this Python, PyTorch in its own."""
  if spec['framework'] == 'jax':
    # A GPU figure runs on JAX's CUDA backend only (lowering 'auto': XLA's own kernels there).
    env = dict(os.environ, JAX_PLATFORMS='cuda') if spec.get('platform') == 'gpu' else None
    out = subprocess.run([sys.executable, '-m', 'benchmarks.speed', f'--one={json.dumps(spec)}'],
                         capture_output=True, text=True, check=False, cwd=peers.ROOT, env=env)
  else:
    if spec['kind'] != 'matmul':
      spec = {**spec, 'export': _export(spec['model'], _sizes(spec['model']) + (64,), folder)}
    try:
      out = peers.run_torch([f'--one={json.dumps(spec)}'], capture_output=True, text=True)
    except peers.TorchUnavailable as e:
      return {**spec, 'error': str(e)}
  lines = [l for l in out.stdout.splitlines() if l.startswith('{')]
  if not lines:
    return {**spec, 'error': (out.stderr.strip().splitlines() or ['no output'])[-1][:150]}
  return json.loads(lines[-1])


def _sizes(name: str) -> tuple[int, ...]:
  return SIZES.get(name, (256, 1024, 4096))


def cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      names = [l.split(':', 1)[1].strip() for l in f if l.startswith('model name')]
    return f'{names[0]}, {len(names)} logical CPUs'
  except OSError:
    return platform.processor()


def _fmt(row: dict | None, key: str, digits: int = 1) -> str:
  if row is None:
    return '-'
  if 'error' in row:
    return 'n/a'
  return f'{row[key]:,.{digits}f}'


def _rounds(rows: list[dict], kind: str, framework: str, name: str | None = None,
            size: int | None = None) -> list[dict]:
  return [r for r in rows if (r['kind'], r['framework']) == (kind, framework) and
          r.get('model') == name and (size is None or r.get('size') == size)]


def _median(rows: list[dict], key: str) -> dict | None:
  """The row whose `key` is the median over `rows` (None if none; an error row if any failed)."""
  if not rows:
    return None
  failed = [r for r in rows if 'error' in r]
  if failed:
    return failed[0]
  return sorted(rows, key=lambda r: r[key])[(len(rows) - 1) // 2]


def figures(quick: bool = False) -> list[dict]:
  """The figures of the table (specs `measure` takes): training and inference per model and
  size; `quick`: patch_net only, small batches, one size."""
  batch, steps, repeats = (8, 2, 1) if quick else (64, 10, 3)
  out = []
  for name in ('patch_net',) if quick else (*MODELS, 'user_net'):
    out.append({'kind': 'train', 'model': name, 'batch': batch, 'size': 64,
                'steps': STEPS.get(name, steps) if not quick else steps, 'repeats': repeats})
    for size in ((256,) if quick else _sizes(name)):
      out.append({'kind': 'infer', 'model': name, 'size': size,
                  'repeats': repeats + (2 if size <= 1024 else 0),
                  'warmup': INFER_WARMUP if size <= 1024 and not quick else 0})
  return out


def main(argv):
  del argv
  if FLAGS.one:
    print(json.dumps(measure(json.loads(FLAGS.one))))
    return
  if FLAGS.rewrite:
    with open(JSON) as f:
      rows = json.load(f)
    write_table(rows, len(_rounds(rows, *next((r['kind'], 'jax', r['model'], r['size'])
                                             for r in rows if r['kind'] == 'train'))), False)
    return
  if FLAGS.platform == 'gpu':
    return gpu()
  quick = FLAGS.quick
  rounds = 1 if quick else FLAGS.rounds
  specs = select(figures(quick), FLAGS.only)
  with tempfile.TemporaryDirectory() as folder:
    rows = [_child({'kind': 'matmul', 'framework': f, 'repeats': 3 if quick else 10}, folder)
            for f in ('jax', 'torch')]
    for spec in specs:
      # fcn_jax and PyTorch eager alternate, `rounds` pairs (each its own fresh process), so
      # every ratio is of two runs taken side by side; torch.compile runs once.
      for _ in range(rounds):
        for framework in ('jax', 'torch'):
          rows.append(_child({**spec, 'framework': framework}, folder))
      if not quick:
        rows.append(_child({**spec, 'framework': 'torch.compile'}, folder))
  write_table(rows, rounds, quick, save=not quick and not FLAGS.only)


def select(specs: list[dict], only: list[str]) -> list[dict]:
  """The figures named by `only` (`kind[:size]` each, e.g. `infer:256`; all when empty)."""
  if not only:
    return specs
  chosen = [s for s in specs if any(
      pattern.split(':')[0] == s['kind'] and
      (':' not in pattern or pattern.split(':')[1] == str(s['size'])) for pattern in only)]
  if not chosen:
    raise app.UsageError(f'--only={",".join(only)} names no figure; use kind[:size] with kind '
                         'train or infer, e.g. infer:256')
  return chosen


def _before() -> tuple[str, str, list[dict]]:
  """The file, setup and rows of the earlier run named by --before (BEFORE), or ('', '', [])."""
  path = BEFORE.get(FLAGS.before) if FLAGS.before else None
  if not path or not os.path.exists(path):
    return '', '', []
  with open(path) as f:
    before = json.load(f)
  return os.path.basename(path), before['setup'], before['rows']


def _ratio(jax_rows: list[dict], torch_rows: list[dict]) -> str:
  """fcn_jax / PyTorch eager per pair: median (min–max)."""
  ratios = [a['rate'] / b['rate'] for a, b in zip(jax_rows, torch_rows)
            if 'rate' in a and 'rate' in b]
  if not ratios:
    return 'n/a'
  text = f'{statistics.median(ratios):.2f}×'
  if len(ratios) > 1:
    text += f' ({min(ratios):.2f}–{max(ratios):.2f})'
  return text


def write_table(rows: list[dict], rounds: int, quick: bool, save: bool | None = None) -> None:
  """The "fcn_jax vs PyTorch" section from the measured rows, printed, and with `save`
  (default: not `quick`) written to the README and speed.json; with the fcn_jax figures of the
  --before run beside them."""
  save = not quick if save is None else save
  shown = list({(r['kind'], r['model'], r['size']): r for r in rows
                  if r['kind'] != 'matmul'}.values())
  batch = next((r['batch'] for r in shown if r['kind'] == 'train'), 64)
  repeats = next((r['repeats'] for r in shown if r['kind'] == 'train'),
                 max(r['repeats'] for r in shown) - 2)
  before_file, before_setup, before = ('', '', []) if quick else _before()
  peak = max(r.get('gflops', 0) for r in rows if r['kind'] == 'matmul')
  versions = {f: next((r for r in rows if r['framework'] == f and 'error' not in r), {})
              for f in ('jax', 'torch')}
  lines = [SECTION, '',
           f'`python -m benchmarks.speed{" --quick" if quick else f" --rounds={rounds}"}'
           f'{"" if save or quick else " --only=" + ",".join(FLAGS.only)}` on '
           f'{cpu_name()}; '
           f'Python {platform.python_version()}, jax {versions["jax"].get("jax", "?")} '
           f'({versions["jax"].get("devices", "?")} CPU devices); in its own Python, torch '
           f'{versions["torch"].get("torch", "?")} '
           f'(threads: {versions["torch"].get("threads", "?")}), '
           'float32. Every run is a fresh process; fcn_jax and PyTorch eager alternate, '
           f'{rounds} pair(s) per figure, each run the median of {repeats} timed runs '
           f'({repeats + 2} for inference up to 1024², after {INFER_WARMUP} untimed calls: a '
           'fresh process\'s first calls are slower, on both frameworks) after the first. '
           'The ratio is per pair, '
           'shown as median (min–max over the pairs); rates are the medians over the rounds. '
           '"first" is the first step (JAX: trace + compile; torch.compile: compile). '
           'GFLOP/s: the FLOPs of the same function from XLA\'s cost analysis, per second of '
           'fcn_jax. Matmul peak (2048², '
           f'float32): JAX {_fmt(_median(_rounds(rows, "matmul", "jax"), "gflops"), "gflops")}, '
           f'PyTorch {_fmt(_median(_rounds(rows, "matmul", "torch"), "gflops"), "gflops")} '
           'GFLOP/s. Training: batch of 64×64×3 patches (patch_net: heat-map BCE; U-Net, '
           'FCN-8s: per-pixel cross-entropy), Adam; inference: batch 1.' +
           (f' "Before": fcn_jax\'s rate and its ratio to PyTorch eager (measured side by side '
            f'then) in `benchmarks/{before_file}` (`--before={FLAGS.before}`): {before_setup}. '
            'Its CPU may '
            'differ from this one (the same command runs about 2× slower on one of these '
            'machines than on another), so compare the ratios to eager across the two, not '
            'the rates.' if before else ''), '',
           '| figure | model | fcn_jax | PyTorch eager | torch.compile | fcn_jax / eager | '
           'before: fcn_jax | before: fcn_jax / eager | fcn_jax GFLOP/s (% of peak) | '
           'first step s (jax / eager / compile) | peak RSS MB (jax / eager) |',
           '|---|---|' + '---:|' * 9]
  for spec in shown:
    kind, name, size = spec['kind'], spec['model'], spec['size']
    per = {f: _rounds(rows, kind, f, name, size) for f in FRAMEWORKS}
    j, t, c = (_median(per[f], 'rate') for f in FRAMEWORKS)
    ratio = _ratio(per['jax'], per['torch'])
    then = [_rounds(before, kind, f, name, size) for f in ('jax', 'torch')]
    old = f'{_fmt(_median(then[0], "rate"), "rate")} | {_ratio(*then) if then[0] else "-"}'
    gflops = '-'
    if j and 'rate' in j:
      flops = _flops(name, batch if kind == 'train' else 1, size, kind == 'train')
      per_second = j['rate'] / batch if kind == 'train' else j['rate'] * 1e6 / size ** 2
      achieved = flops * per_second / 1e9
      gflops = f'{achieved:.1f} ({achieved / peak:.0%})' if peak else f'{achieved:.1f}'
    label = (f'training, patches/s (batch {batch}, 64²)' if kind == 'train' else
             f'inference {size}², Mpixel/s')
    lines.append(f'| {label} | {name} | {_fmt(j, "rate")} | {_fmt(t, "rate")} | '
                 f'{_fmt(c, "rate")} | {ratio} | {old} | {gflops} | {_fmt(j, "first_s", 2)} / '
                 f'{_fmt(t, "first_s", 2)} / {_fmt(c, "first_s", 2)} | '
                 f'{_fmt(j, "peak_rss_mb", 0)} / {_fmt(t, "peak_rss_mb", 0)} |')
  errors = sorted({f'{r["framework"]}: {r["error"]}' for r in rows if 'error' in r})
  if errors:
    lines += ['', 'Not measured: ' + '; '.join(errors)]
  text = '\n'.join(lines) + '\n'
  print(text)
  if save:
    with open(JSON, 'w') as f:
      json.dump(rows, f, indent=1)
    report.write_section(text)


GPU_SECTION = '## fcn_jax on a GPU'
GPU_JSON = os.path.join(HERE, 'speed_gpu.json')


def gpu() -> int:
  """`--platform=gpu`: the figures of the table by fcn_jax on JAX's CUDA backend (XLA's own
  kernels; PyTorch here is CPU-only, so no peers), with the GPU's float32 matmul peak measured
  at 8192² beside them; writes the "fcn_jax on a GPU" section and speed_gpu.json. Where JAX
  has no GPU, says so in one line (exit status 1) and writes nothing."""
  peak = _child({'kind': 'matmul', 'framework': 'jax', 'repeats': 10, 'n': 8192,
                 'platform': 'gpu'}, '')
  if 'error' in peak:
    print(f'benchmarks.speed --platform=gpu: no GPU for JAX here ({peak["error"]})',
          file=sys.stderr)
    return 1
  rows = [peak] + [_child({**spec, 'framework': 'jax', 'platform': 'gpu'}, '')
                   for spec in figures(FLAGS.quick) for _ in range(FLAGS.rounds)]
  flops = {}
  for row in rows[1:]:  # XLA's count of the function's FLOPs (the same on every backend)
    key = (row['model'], row['batch'] if row['kind'] == 'train' else 1, row['size'],
           row['kind'] == 'train')
    row['flops'] = flops[key] = flops.get(key) or _flops(*key)
  text = gpu_table(rows, FLAGS.rounds)
  print(text)
  if not FLAGS.quick:
    with open(GPU_JSON, 'w') as f:
      json.dump(rows, f, indent=1)
    report.write_section(text)
  return 0


def gpu_table(rows: list[dict], rounds: int) -> str:
  """The "fcn_jax on a GPU" section: per figure the rate (median over `rounds` runs), the
  achieved GFLOP/s (XLA's cost analysis) and its share of the measured matmul peak."""
  peak = next(r for r in rows if r['kind'] == 'matmul')
  lines = [GPU_SECTION, '',
           f'`python -m benchmarks.speed --platform=gpu --rounds={rounds}` on '
           f'{peak.get("device", "?")}, jax {peak.get("jax", "?")}, float32, XLA\'s own '
           'kernels (lowering \'auto\' off the CPU). Every run is a fresh process; rates are '
           f'the median of {rounds} run(s). Peak: a float32 8192² matmul measured on the same '
           f'GPU, {peak["gflops"]:,.0f} GFLOP/s (XLA\'s default precision: TF32 tensor cores '
           'where the GPU has them). GFLOP/s: the FLOPs of the same function from XLA\'s cost '
           'analysis per second.', '',
           '| figure | model | rate | GFLOP/s (% of peak) | first step s |', '|---|---|---:|---:|---:|']
  for spec in {(r['kind'], r['model'], r['size']): r for r in rows
               if r['kind'] != 'matmul'}.values():
    kind, name, size = spec['kind'], spec['model'], spec['size']
    row = _median(_rounds(rows, kind, 'jax', name, size), 'rate')
    gflops = '-'
    if row and 'rate' in row:
      batch = row['batch'] if kind == 'train' else 1
      per_second = row['rate'] / batch if kind == 'train' else row['rate'] * 1e6 / size ** 2
      achieved = row.get('flops', 0) * per_second / 1e9
      gflops = f'{achieved:,.0f} ({achieved / peak["gflops"]:.1%})'
    label = (f'training, patches/s (batch {spec["batch"]}, 64²)' if kind == 'train' else
             f'inference {size}², Mpixel/s')
    lines.append(f'| {label} | {name} | {_fmt(row, "rate")} | {gflops} | '
                 f'{_fmt(row, "first_s", 2)} |')
  errors = sorted({r['error'] for r in rows if 'error' in r})
  if errors:
    lines += ['', 'Not measured: ' + '; '.join(errors)]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  flags.DEFINE_enum('platform', 'cpu', ['cpu', 'gpu'],
                    "cpu: the table against PyTorch; gpu: fcn_jax's figures on a GPU.")
  flags.DEFINE_bool('quick', False, 'Small batches and one size: a smoke run.')
  flags.DEFINE_integer('rounds', 3, 'fcn_jax / PyTorch pairs of runs per figure.')
  flags.DEFINE_bool('rewrite', False, 'Only rewrite the README section from speed.json.')
  flags.DEFINE_enum('before', 'restructuring', [*BEFORE, ''],
                    'The earlier run shown beside this one ("" for none).')
  flags.DEFINE_list('only', [], 'Only these figures, kind[:size] each (e.g. infer:256): the '
                    'table is printed, not written to the README or speed.json.')
  flags.DEFINE_string('one', None, 'Internal: measure one figure (JSON spec) and print it.')
  app.run(main)
