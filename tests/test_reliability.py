"""Faults: SIGKILL and SIGTERM during training, damaged checkpoints."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from fcn_jax import inference

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _command(workdir, steps=12, every=3):
  return [sys.executable, '-m', 'fcn_jax.train', '--config=configs/default.py:runlocal',
          f'--workdir={workdir}', f'--config.num_train_steps={steps}',
          f'--config.checkpoint_every={every}', '--config.log_every=1']


def _params(workdir):
  model, _ = inference.load_trained(str(workdir))
  from flax import nnx  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def _steps_logged(workdir) -> int:
  path = workdir / 'metrics.jsonl'
  if not path.exists():
    return 0
  return sum(1 for line in path.read_text().splitlines() if '"train_loss"' in line)


def _start(workdir, **kwargs):
  return subprocess.Popen(_command(workdir, **kwargs), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _wait_for_steps(process, workdir, steps: int, timeout: float = 240):
  deadline = time.time() + timeout
  while _steps_logged(workdir) < steps and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
  """An uninterrupted 12-step run."""
  workdir = tmp_path_factory.mktemp('straight')
  out = subprocess.run(_command(workdir), cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  return _params(workdir)


@pytest.mark.parametrize('kill_after_steps', [2, 5, 7])
def test_sigkill_then_same_command_gives_bitwise_identical_parameters(straight, tmp_path,
                                                                     kill_after_steps):
  """Killed at several points (between, before and around checkpoint writes), then resumed."""
  process = _start(tmp_path)
  _wait_for_steps(process, tmp_path, kill_after_steps)
  process.send_signal(signal.SIGKILL)
  assert process.wait() == -signal.SIGKILL  # the kill landed while the run was training
  logged = _steps_logged(tmp_path)
  assert kill_after_steps <= logged < 12
  out = subprocess.run(_command(tmp_path), cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  resumed = [int(line.rsplit(' ', 1)[1]) for line in out.stderr.splitlines()
             if 'resumed from step' in line]
  # From a periodic checkpoint (every 3 steps) the killed run had reached, if one was complete
  # (saves finish asynchronously, so which one is not fixed by the step the kill landed at).
  assert all(r % 3 == 0 and 0 < r <= logged for r in resumed), out.stderr[-2000:]
  for a, b in zip(_params(tmp_path), straight, strict=True):
    np.testing.assert_array_equal(a, b)


def test_sigterm_saves_a_checkpoint_then_resumes(straight, tmp_path):
  process = _start(tmp_path, every=100)  # no periodic checkpoint before the end
  _wait_for_steps(process, tmp_path, 4)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  line = [l for l in stderr.splitlines() if l.startswith('stopped by SIGTERM at step')][-1]
  step = int(line.split('at step ')[1].split(';')[0])
  assert 'run the same command to resume' in line
  assert ocp.CheckpointManager(tmp_path / 'checkpoints').all_steps() == [step]
  out = subprocess.run(_command(tmp_path, every=100), cwd=ROOT, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert f'resumed from step {step}' in out.stderr
  for a, b in zip(_params(tmp_path), straight, strict=True):
    np.testing.assert_array_equal(a, b)


def _damage(step_dir: pathlib.Path):
  """Overwrites the largest data file of a checkpoint with garbage of the same size."""
  files = sorted((p for p in step_dir.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  victim = files[-1]
  victim.write_bytes(os.urandom(victim.stat().st_size))


def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  out = subprocess.run(_command(tmp_path, steps=6), cwd=ROOT, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  _damage(tmp_path / 'checkpoints' / '6')
  model, _ = inference.load_trained(str(tmp_path))  # predict's loader: falls back, warns
  assert model is not None
  assert any('checkpoint step 6' in r.getMessage() and 'unreadable' in r.getMessage()
             for r in caplog.records)
  # Training resumes from step 3 (with a warning) and rewrites nothing it cannot read.
  out = subprocess.run(_command(tmp_path, steps=9), cwd=ROOT, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'checkpoint step 6' in out.stderr and 'resumed from step 3' in out.stderr


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
  out = subprocess.run(_command(tmp_path, steps=3), cwd=ROOT, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  _damage(tmp_path / 'checkpoints' / '3')
  out = subprocess.run(_command(tmp_path, steps=6), cwd=ROOT, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 1
  # One line says it (orbax's background threads may write to stderr on the same line as
  # they shut down, so the line need not start with it).
  assert re.search(r'error: no readable checkpoint in .*Nothing was deleted', out.stderr), (
      out.stderr[-2000:])
  assert (tmp_path / 'checkpoints' / '3').is_dir()  # nothing deleted


def test_non_finite_gradient_with_a_finite_loss_stops_training(tmp_path, monkeypatch):
  from configs import default  # pylint: disable=g-import-not-at-top
  from fcn_jax import train  # pylint: disable=g-import-not-at-top
  real = train.train_step
  calls = []

  def step(*args, **kwargs):
    loss, norm = real(*args, **kwargs)
    calls.append(1)
    return (loss, float('inf')) if len(calls) == 3 else (loss, norm)

  monkeypatch.setattr(train, 'train_step', step)
  config = default.get_config('runlocal')
  config.num_train_steps, config.checkpoint_every = 6, 2
  with pytest.raises(train.NonFiniteLossError, match=r'gradient norm is inf \(loss [0-9.]+\) at '
                     r'step 3; stopped\. The last good checkpoint is step 2'):
    train.train_and_evaluate(config, str(tmp_path))


def _kill_when(process, condition, timeout: float = 240) -> int:
  """SIGKILLs `process` as soon as `condition()` holds; returns its exit status."""
  deadline = time.time() + timeout
  while process.poll() is None and time.time() < deadline:
    if condition():
      process.send_signal(signal.SIGKILL)
      break
    time.sleep(0.001)
  return process.wait()


def test_killed_predict_leaves_no_partial_file_under_the_final_name(tmp_path):
  """SIGKILL while predict computes, and while it writes each output (its temporary file
  exists): the final names are then absent or hold complete files."""
  workdir = tmp_path / 'run'
  out = subprocess.run(_command(workdir, steps=2, every=2), cwd=ROOT, capture_output=True,
                       text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  image = np.random.default_rng(0).random((2048, 2048, 3), dtype=np.float32)
  np.save(tmp_path / 'big.npy', image)
  mid_write = []
  for moment in ('computing', 'big.npy', 'big_overlay.png'):
    output = tmp_path / f'out_{moment}'
    process = subprocess.Popen([sys.executable, '-m', 'fcn_jax.predict', f'--workdir={workdir}',
                                f'--input={tmp_path / "big.npy"}', f'--output={output}'],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    temporary = output / f'{moment}.tmp{os.path.splitext(moment)[1]}'
    if moment == 'computing':  # once the model is loaded and the output folder made
      status = _kill_when(process, lambda: output.exists())
    else:
      status = _kill_when(process, temporary.exists)
      mid_write.append(temporary.exists())  # still there: the kill landed during the write
    # The 256 KB logits may be written between two polls (then the run finishes); the 2048²
    # overlay takes long enough to encode that the kill lands during its write.
    assert status == -signal.SIGKILL or (moment == 'big.npy' and status == 0), (moment, status)
    final = output / 'big.npy'
    if final.exists():  # written completely, or not at all
      assert np.load(final).shape == (256, 256, 1)
    png = output / 'big_overlay.png'
    if png.exists():
      from PIL import Image  # pylint: disable=g-import-not-at-top
      with Image.open(png) as overlay:
        overlay.load()
    if moment == 'big_overlay.png':
      assert final.exists()  # the logits were written before the overlay
  assert mid_write[-1], 'the kill did not land while the overlay was being written'
