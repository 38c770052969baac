"""Test setup: small XLA CPU compiles."""

import os

import hypothesis
import jax
import pytest

from benchmarks import peers
from fcn_jax import onednn

# Tests run tiny models a few times: compile time dominates, so skip most optimisations, here and
# in the training, sweep and experiment processes the tests start (they inherit the variable).
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', 'true')
jax.config.update('jax_disable_most_optimizations', True)

# Property tests draw new examples on every local run; CI (`.ci/run` sets HYPOTHESIS_PROFILE=ci)
# draws the same ones every time, so a CI failure reproduces and a pass is not luck.
hypothesis.settings.register_profile('ci', derandomize=True, database=None, print_blob=True)
# 'debug': no shrinking, to see a failure quickly (`HYPOTHESIS_PROFILE=debug`).
hypothesis.settings.register_profile('debug', phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate], print_blob=True)
hypothesis.settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'default'))


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


@pytest.fixture(scope='session')
def onednn_extension():
  """`fcn_jax.onednn`, for tests of its convolutions: skipped where the extension cannot be
  built here; with `FCN_JAX_REQUIRE_ONEDNN=1` (CI) that is a failure."""
  if not onednn.available():
    if os.environ.get('FCN_JAX_REQUIRE_ONEDNN') == '1':
      pytest.fail('FCN_JAX_REQUIRE_ONEDNN=1 but the oneDNN extension is unavailable (see the log '
                  'line above; python -m fcn_jax.onednn build says why)')
    pytest.skip('the oneDNN extension is unavailable here (python -m fcn_jax.onednn build)')
  return onednn
