"""Test setup: small XLA CPU compiles."""

import os

import jax
import pytest

from benchmarks import peers

# Tests run tiny models a few times: compile time dominates, so skip most optimisations, here and
# in the training, sweep and experiment processes the tests start (they inherit the variable).
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', 'true')
jax.config.update('jax_disable_most_optimizations', True)


@pytest.fixture(scope='session')
def torch_worker():
  """The PyTorch process of the cross-checks (`benchmarks.peers.TorchWorker`), or None where no
  Python with PyTorch is set up; with `FCN_JAX_REQUIRE_TORCH=1` (CI) its absence is a failure."""
  try:
    worker = peers.TorchWorker()
  except peers.TorchUnavailable as e:
    if os.environ.get('FCN_JAX_REQUIRE_TORCH') == '1':
      pytest.fail(f'FCN_JAX_REQUIRE_TORCH=1 but {e}')
    yield None
    return
  yield worker
  worker.close()


@pytest.fixture
def torch_peer(torch_worker):  # pylint: disable=redefined-outer-name
  """`torch_worker` for a test that checks nothing else: skipped without PyTorch."""
  if torch_worker is None:
    pytest.skip('no Python with PyTorch (setup.sh makes .venv-torch where it can)')
  return torch_worker
