"""setup.sh finds a Python that fcn_jax supports, or says in one line what it looked for."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ('bash', 'ls', 'sort', 'grep', 'mktemp', 'dirname', 'rm')


def _fake_python(path, version):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(f'#!/bin/sh\necho {version}\n')
  os.chmod(path, 0o755)


def _which(tmp_path, **env):
  """`bash setup.sh --which` with a PATH of basic tools only and HOME in tmp_path."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(exist_ok=True)
  for tool in TOOLS:
    if not (bin_dir / tool).exists():
      os.symlink(shutil.which(tool), bin_dir / tool)
  env = {'PATH': str(bin_dir), 'HOME': str(tmp_path), **env}
  return subprocess.run(['bash', os.path.join(ROOT, 'setup.sh'), '--which'], env=env,
                        capture_output=True, text=True, timeout=60, check=False)


def test_no_supported_python_is_one_line_naming_what_was_searched(tmp_path):
  _fake_python(str(tmp_path / 'bin' / 'python3'), '3.11')  # on PATH, but too old
  out = _which(tmp_path)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines() == [
      'setup.sh: no Python 3.12 or 3.13 found (looked at $FCN_JAX_PYTHON, python3.12, '
      f'python3.13, python3 and {tmp_path}/.pyenv/versions); install one or set '
      'FCN_JAX_PYTHON=/path/to/python3.12']


def test_pyenv_versions_off_path_are_found_newest_patch_first(tmp_path):
  for version in ('3.11.7', '3.12.2', '3.12.10', '3.14.0'):
    _fake_python(str(tmp_path / '.pyenv' / 'versions' / version / 'bin' / 'python'),
                 version.rsplit('.', 1)[0])
  out = _which(tmp_path)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == (f'setup.sh: using Python 3.12 at '
                                f'{tmp_path}/.pyenv/versions/3.12.10/bin/python')


def test_python_on_path_comes_before_pyenv(tmp_path):
  _fake_python(str(tmp_path / 'bin' / 'python3.13'), '3.13')
  _fake_python(str(tmp_path / '.pyenv' / 'versions' / '3.12.1' / 'bin' / 'python'), '3.12')
  out = _which(tmp_path)
  assert out.stdout.strip() == f'setup.sh: using Python 3.13 at {tmp_path}/bin/python3.13'


@pytest.mark.parametrize('version', ['3.11', None])
def test_fcn_jax_python_of_the_wrong_version_is_refused(tmp_path, version):
  chosen = str(tmp_path / 'mine' / 'python')
  if version:
    _fake_python(chosen, version)
  _fake_python(str(tmp_path / 'bin' / 'python3.12'), '3.12')  # not taken instead
  out = _which(tmp_path, FCN_JAX_PYTHON=chosen)
  assert out.returncode == 1 and out.stdout == ''
  assert out.stderr.strip().splitlines() == [
      f'setup.sh: FCN_JAX_PYTHON={chosen} is Python {version or "?"}, not one of 3.12 3.13']


def test_a_hanging_test_fails_at_the_time_limit(tmp_path):
  """pytest.ini's timeout is active: a test that hangs fails instead of stalling CI."""
  (tmp_path / 'test_hang.py').write_text('import time\n\ndef test_hang():\n  time.sleep(60)\n')
  (tmp_path / 'pytest.ini').write_text(
      (pathlib.Path(__file__).parent.parent / 'pytest.ini').read_text().replace(
          'timeout = 600', 'timeout = 2'))
  out = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                        str(tmp_path / 'test_hang.py')], cwd=tmp_path, capture_output=True,
                       text=True, check=False, timeout=50)
  assert out.returncode == 1 and 'Timeout (>2.0s)' in out.stdout, out.stdout[-1000:]
