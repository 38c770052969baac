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
