r"""Per-op times of one fcn_jax training step on XLA:CPU, named by their HLO ops.

  python -m benchmarks.profile --model=unet [--top=25]
  python -m benchmarks.profile --model=patch_net --infer=1024   # inference.predict instead
  python -m benchmarks.profile --model=unet --lowering=cpu       # XLA's convs, not oneDNN's

Runs the training step of `benchmarks.speed`'s model (batch 64 of 64x64x3, Adam,
placed on the devices as `fcn_jax.train` does) under
`jax.profiler.trace` with XLA's per-op trace events on, and prints the ops that
took longest (ms per step per device) with the shape and source op of each,
from the optimised HLO (`--xla_dump_to`). This is the evidence behind "Where the
time goes" in benchmarks/README.md.
"""

import collections
import glob
import os
import re
import sys
import tempfile

from absl import app
from absl import flags

FLAGS = flags.FLAGS


def main(argv):
  del argv
  work = tempfile.mkdtemp(prefix='fcn_jax_profile_')
  if 'jax' in sys.modules:
    raise RuntimeError('run as python -m benchmarks.profile (XLA flags must come first)')
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             f' --xla_cpu_enable_xprof_traceme=true --xla_dump_to={work}/hlo'
                             ' --xla_dump_hlo_as_text')
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from benchmarks import speed  # pylint: disable=g-import-not-at-top
  from benchmarks import workload  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fcn_jax import inference, tasks, train  # pylint: disable=g-import-not-at-top

  name, steps = FLAGS.model, 3
  model = speed._model(name, FLAGS.lowering)  # pylint: disable=protected-access
  if FLAGS.infer:  # inference.predict on one image, as benchmarks.speed times it
    model.eval()
    image = np.random.default_rng(0).random((FLAGS.infer, FLAGS.infer, 3), dtype=np.float32)
    count = 1
    what = f'inference.predict at {FLAGS.infer}², ms per call'

    def step():
      return inference.predict(model, image)
  else:
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    split = train.place(model, optimizer, 64)  # as fcn_jax.train places them
    x, y = workload.batch(name, 64, 64)
    data = {'image': jax.device_put(x, split), 'target': jax.device_put(y, split)}
    task = tasks.Heatmap() if name == 'patch_net' else tasks.Segmentation()
    count, what = split.mesh.devices.size, 'training, ms per step'

    def step():
      return train.train_step(model, optimizer, data, task, 'float32')[0]

  for _ in range(2):
    jax.block_until_ready(step())
  with jax.profiler.trace(f'{work}/trace'):
    for _ in range(steps):
      jax.block_until_ready(step())
  trace = glob.glob(f'{work}/trace/**/*.xplane.pb', recursive=True)[0]
  totals = collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(trace).planes:
    for line in plane.lines:
      # The threads that run compiled programs: XLA's pool, or the client's own thread.
      if line.name.startswith(('tf_XLAEigen', 'tf_XLAPjRtCpuClient')):
        for event in line.events:
          if not event.name.endswith('(wait for completion)'):
            totals[event.name] += event.duration_ns / 1e6 / steps / count
  program = 'forward' if FLAGS.infer else 'train_step'
  hlos = glob.glob(f'{work}/hlo/*{program}*after_optimizations.txt')
  text = '\n'.join(open(h).read() for h in hlos)
  print(f'{name}: {what} per device ({count} devices), top {FLAGS.top}')
  for op, ms in totals.most_common(FLAGS.top):
    found = re.search(r'^\s*(?:ROOT )?%' + re.escape(op) + r' = (\S+) ', text, re.M)
    source = re.search(r'^\s*(?:ROOT )?%' + re.escape(op) + r' = .*?op_name="([^"]*)"', text,
                       re.M)
    print(f'{ms:8.2f}  {op:34s} {found.group(1) if found else "":30s} '
          f'{source.group(1)[-50:] if source else ""}')


if __name__ == '__main__':
  flags.DEFINE_enum('model', 'unet', ['patch_net', 'unet', 'fcn8s'], 'Model of benchmarks.speed.')
  flags.DEFINE_integer('top', 25, 'How many ops to print.')
  flags.DEFINE_integer('infer', 0, 'Profile inference.predict on one image of this size instead.')
  flags.DEFINE_enum('lowering', 'auto', ['auto', 'onednn', 'cpu', 'xla'],
                    "The layers' lowering policy (fcn_jax.lowering).")
  app.run(main)
