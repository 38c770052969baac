"""fcn_jax.devices: importing fcn_jax leaves JAX's devices alone; the mesh divides the batch."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, **env):
  """stdout words of `code` run in a fresh Python with `env` (and no device settings of ours)."""
  base = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_NUM_CPU_DEVICES')}
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=base | env,
                       capture_output=True, text=True, check=False, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout.split()


def test_importing_fcn_jax_keeps_jaxs_device_count():
  code = 'import fcn_jax, fcn_jax.train, jax; print(len(jax.devices()))'
  assert _python(code) == ['1']
  assert _python(code, JAX_NUM_CPU_DEVICES='3') == ['3']


def test_batch_mesh_uses_the_most_devices_that_divide_the_batch():
  code = ('from fcn_jax import devices\n'
          'print(*(devices.batch_mesh(b).devices.size for b in (6, 1, 4, 7)))')
  assert _python(code, JAX_NUM_CPU_DEVICES='3') == ['3', '1', '2', '1']


def test_importing_every_module_changes_nothing_in_the_process():
  """No module of fcn_jax, its experiments or benchmarks selects a plotting backend, hides
  devices from TensorFlow or sets a JAX flag when imported (keras, under TensorFlow, imports
  pyplot itself: that alone selects no backend). The PyTorch-side modules (torch_peers,
  torchvision_layout) run in their own interpreter and are not imported here."""
  code = '\n'.join([
      'import importlib, pkgutil',
      'import jax, matplotlib, tensorflow as tf',
      'backend = dict.__getitem__(matplotlib.rcParams, "backend")',
      'visible = tf.config.get_visible_devices()',
      'flags = {k: getattr(jax.config, k) for k in ("jax_debug_nans", "jax_enable_x64",',
      '         "jax_default_matmul_precision", "jax_platforms")}',
      'names = []',
      'for package in ("fcn_jax", "experiments", "benchmarks"):',
      '  module = importlib.import_module(package)',
      '  names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")',
      '            if not m.name.endswith(("__main__", "torch_peers", "torchvision_layout"))]',
      'for name in names:',
      '  importlib.import_module(name)',
      'print(len(names) > 30,',
      '      dict.__getitem__(matplotlib.rcParams, "backend") == backend,',
      '      tf.config.get_visible_devices() == visible,',
      '      {k: getattr(jax.config, k) for k in flags} == flags, jax.device_count())'])
  assert _python(code) == ['True', 'True', 'True', 'True', '1']
