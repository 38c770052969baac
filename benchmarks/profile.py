r"""Per-op times of one fcn_jax training step on XLA:CPU, named by their HLO ops.

  python -m benchmarks.profile --model=unet [--top=25]

Runs the training step of `benchmarks.speed`'s model (batch 64 of 64x64x3, Adam,
the batch split over the CPU devices as `fcn_jax.train` does) under
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
  from jax._src.lib import _profile_data  # pylint: disable=g-import-not-at-top
  from benchmarks import speed  # pylint: disable=g-import-not-at-top
  from fcn_jax import train  # pylint: disable=g-import-not-at-top

  name, steps = FLAGS.model, 3
  model = speed._model(name)  # pylint: disable=protected-access
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  split = train.place(model, optimizer, 64)  # as fcn_jax.train places them
  x, y = speed._batch(name, 64, 64)  # pylint: disable=protected-access
  data = {'image': jax.device_put(x, split), 'target': jax.device_put(y, split)}
  task = 'heatmap' if name == 'patch_net' else 'segmentation'

  def step():
    return train.train_step(model, optimizer, data, task, None, 'float32')[0]

  for _ in range(2):
    jax.block_until_ready(step())
  with jax.profiler.trace(f'{work}/trace'):
    for _ in range(steps):
      jax.block_until_ready(step())
  trace = glob.glob(f'{work}/trace/**/*.xplane.pb', recursive=True)[0]
  totals = collections.Counter()
  for plane in _profile_data.ProfileData.from_file(trace).planes:
    for line in plane.lines:
      if line.name.startswith('tf_XLAEigen'):  # the threads that run the compiled step
        for event in line.events:
          totals[event.name] += event.duration_ns / 1e6 / steps / split.mesh.devices.size
  hlo = max(glob.glob(f'{work}/hlo/*train_step*after_optimizations.txt'), key=os.path.getsize)
  text = open(hlo).read()
  print(f'{name}: ms per step per device ({split.mesh.devices.size} devices), top {FLAGS.top}')
  for op, ms in totals.most_common(FLAGS.top):
    found = re.search(r'^\s*(?:ROOT )?%' + re.escape(op) + r' = (\S+) ', text, re.M)
    source = re.search(r'^\s*(?:ROOT )?%' + re.escape(op) + r' = .*?op_name="([^"]*)"', text,
                       re.M)
    print(f'{ms:8.2f}  {op:34s} {found.group(1) if found else "":30s} '
          f'{source.group(1)[-50:] if source else ""}')


if __name__ == '__main__':
  flags.DEFINE_enum('model', 'unet', ['patch_net', 'unet', 'fcn8s'], 'Model of benchmarks.speed.')
  flags.DEFINE_integer('top', 25, 'How many ops to print.')
  app.run(main)
