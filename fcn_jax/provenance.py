"""Where a set of numbers comes from: the git commit (and whether the tree was dirty), the
date and the machine. Experiments (`experiments/common.py`) and sweeps record it in their
`results.json` and print it at the top of their `results.md`."""

import datetime
import os
import platform
import subprocess

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args: str) -> str:
  try:
    return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return ''


def machine() -> str:
  """The CPU model, core count, jax version and the device JAX runs on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
  except (OSError, StopIteration):
    pass
  device = jax.devices()[0]
  return (f'{cpu}, {os.cpu_count()} cores; jax {jax.__version__} on {device.platform} '
          f'({device.device_kind})')


def source() -> dict:
  """`{'commit', 'dirty', 'date', 'machine'}` of the code running now (commit 'unknown' outside
  a git checkout; dirty: tracked files differ from the commit)."""
  return {
      'commit': _git('rev-parse', 'HEAD') or 'unknown',
      'dirty': bool(_git('status', '--porcelain', '--untracked-files=no')),
      'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
      'machine': machine(),
  }
