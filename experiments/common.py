"""What every experiment shares: flags, training a config, timing, tables and atomic outputs.

Each experiment is `python -m experiments.<name> --workdir=DIR [--quick]`: it
trains what it needs under `DIR/<run>` (resuming finished or interrupted runs
instead of redoing them), measures, and writes `DIR/results.md` with its PNG
plots beside it. `--quick` shrinks data and steps so that the whole experiment
runs in about a minute (CI runs it); its numbers show that the code works, not
the claim. The full runs' outputs are committed in `experiments/<name>/`.
"""

import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Sequence

import jax
import matplotlib
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import app
from absl import flags
from flax import nnx

from fcn_jax import inference
from fcn_jax import files
from fcn_jax.files import write_text
from fcn_jax import train
from fcn_jax.data import catalog

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS


def main(run: Callable[[str, bool], Any]) -> None:
  """The command line of an experiment: `--workdir` and `--quick`, then `run(workdir, quick)`."""
  flags.DEFINE_string('workdir', None, 'Where runs, results.md and plots go.')
  flags.DEFINE_bool('quick', False, 'Tiny data and few steps (about a minute): a smoke run.')
  flags.mark_flags_as_required(['workdir'])

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    run(FLAGS.workdir, FLAGS.quick)

  app.run(_main)


def train_run(config: ml_collections.ConfigDict, workdir: str) -> nnx.Module:
  """Trains `config` in `workdir` (or resumes / reuses a finished run) and returns the model."""
  train.train_and_evaluate(config, workdir)
  model, _ = inference.load_trained(workdir)
  return model


def quick_training(config: ml_collections.ConfigDict, steps: int, batch_size: int = 8) -> None:
  """Shrinks a config's schedule in place for `--quick`."""
  config.num_train_steps = steps
  config.batch_size = batch_size
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, max(1, steps // 10))
  config.checkpoint_every = steps
  config.log_every = max(1, steps // 5)


def median_time(fn: Callable[[], Any], repeats: int = 5) -> float:
  """Median wall time of `fn()` in seconds over `repeats` calls after one warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A markdown table; floats get 4 significant digits."""
  def fmt(v):
    return f'{v:.4g}' if isinstance(v, float) else str(v)
  lines = ['| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
  lines += ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def save_figure(fig, path: str) -> str:
  """Saves a matplotlib figure as PNG (whole or not at all) and closes it."""
  return files.save_figure(fig, path, dpi=90, bbox_inches='tight')


def write_results(workdir: str, title: str, sections: Sequence[str], numbers: dict) -> str:
  """`results.md` (title, the command that produced it, sections) and `results.json`."""
  command = 'python -m ' + ' '.join(
      [sys.modules['__main__'].__spec__.name.removesuffix('.__main__')] +
      [a for a in sys.argv[1:]])
  write_text(os.path.join(workdir, 'results.json'), json.dumps(numbers, indent=1, default=str))
  text = [f'# {title}', '', f'Produced by `{command}`' +
          (' (**quick smoke run: the numbers do not test the claim**)' if FLAGS.quick else '') +
          '.', '', *sections]
  return write_text(os.path.join(workdir, 'results.md'), '\n'.join(text) + '\n')


def figure(*args, **kwargs):
  """`plt.subplots` (kept here so experiments need not import pyplot themselves)."""
  return plt.subplots(*args, **kwargs)


def load_split(data: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
  """All `(images float32 in [0, 1], labels)` of a classification dataset's split."""
  ds = catalog.load(data.name, split, data_dir=data.get('data_dir'))
  ds = ds.map(catalog.standardize(data.name))
  images, labels = [], []
  for ex in tfds.as_numpy(ds):
    images.append(ex['image'].astype(np.float32) / 255.0)
    labels.append(ex['label'])
  return np.stack(images), np.asarray(labels)


def accuracy(model: nnx.Module, images: np.ndarray, labels: np.ndarray, batch: int = 256) -> float:
  """Top-1 accuracy of a classifier returning `(N, K)` logits, in batches of one shape."""
  correct = 0
  for first in range(0, len(images), batch):
    chunk = images[first:first + batch]
    padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]),
                                             chunk.dtype)]) if len(chunk) < batch else chunk
    logits = inference.predict(model, padded)[:len(chunk)]
    correct += int((logits.reshape(len(chunk), -1).argmax(-1) == labels[first:first + batch]).sum())
  return correct / len(images)


def resized(images: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """`images` `(N, H, W, C)` resized to `size` (bilinear, antialiased when shrinking)."""
  return np.asarray(jax.image.resize(images, (len(images), *size, images.shape[-1]), 'bilinear'))
