"""What every experiment shares: flags, training a config, provenance, tables and outputs.

Each experiment is `python -m experiments.<name> --workdir=DIR [--quick]`: it
trains what it needs under `DIR/<run>` (resuming finished or interrupted runs
instead of redoing them) through a `Record`, measures, and writes
`DIR/results.json` with its PNG plots beside it; `DIR/results.md` is rendered
from `results.json` alone by the experiment's `render(numbers)` (so it can be
re-rendered, and is never edited by hand: tests/test_experiments.py re-renders
every committed one). `results.json` records its provenance: the git commit and
whether the tree was dirty, a hash of the configs trained, the date, the exact
command, the seeds, the machine, and each run's first and last training loss.
`--quick` shrinks data and steps so that the whole experiment runs in about a
minute (CI runs it); its numbers show that the code works and learns, not the
claim. The full runs' outputs are committed in `experiments/<name>/`.

An experiment longer than one sitting measures in parts (`Record.part`, one per seed): each
part's numbers are kept in `DIR/parts/<key>.json` with the commit that measured them, so a
part can be committed (`experiments/<name>/parts/`) and copied into the next sitting's fresh
`DIR`, which then measures only the missing parts (`experiments.regenerate` does the copying).
"""

import hashlib
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import app
from absl import flags
from flax import nnx

from fcn_jax import errors
from fcn_jax import figures
from fcn_jax import files
from fcn_jax import inference
from fcn_jax import provenance as fcn_provenance
from fcn_jax import train
from fcn_jax.data import catalog

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


class Record:
  """What one experiment run trains and writes: its runs' configs and training summaries,
  and `results.json` / `results.md` with their provenance."""

  def __init__(self, workdir: str, quick: bool):
    self.workdir, self.quick = workdir, quick
    # The commit of the code this process runs: taken now, not when the results are written
    # (the tree may be edited or moved to another commit while a long experiment runs).
    self.source = fcn_provenance.source()
    self.configs: dict[str, ml_collections.ConfigDict | dict] = {}  # dict: from a part
    self.training: dict[str, dict] = {}
    self.evaluations: dict[str, dict] = {}  # run -> {split: [evaluate.SizeResult]}

  def train(self, config: ml_collections.ConfigDict, name: str) -> nnx.Module:
    """Trains `config` in `workdir/name` (or resumes / reuses a finished run), returns the
    model."""
    path = os.path.join(self.workdir, name)
    out = train.train_and_evaluate(config, path)
    self.configs[name] = config
    self.training[name] = training_summary(path, out['step'])
    self.evaluations[name] = {config.data.eval_split: out['results']}
    if out['validation'] is not None:
      self.evaluations[name][config.data.validation_split] = out['validation']
    model, _ = inference.load_trained(path)
    return model

  def part(self, key: str, measure: Callable[[], dict]) -> dict:
    """What `measure()` returns (a dict of numbers, lists and arrays), measured now or read
    back from `workdir/parts/<key>.json`, where it is kept with the runs `measure` trained
    (their configs and training summaries, which `write` records) and the commit that measured
    it. The value is returned as read from JSON (arrays become lists) either way.

    Raises UserError when the kept part was measured by other code (another commit, or a
    tree dirty in one and clean in the other): it is not mixed into these results.
    """
    path = os.path.join(self.workdir, 'parts', f'{key}.json')
    here = {'commit': self.source['commit'], 'dirty': self.source['dirty'], 'quick': self.quick}
    if os.path.exists(path):
      with open(path) as f:
        kept = json.load(f)
      if {k: kept[k] for k in here} != here:
        raise errors.UserError(
            f'{path} was measured at commit {kept["commit"][:12]}'
            f'{" (dirty)" if kept["dirty"] else ""}, quick={kept["quick"]}; this run is at '
            f'{here["commit"][:12]}{" (dirty)" if here["dirty"] else ""}, quick={self.quick}: '
            'move the part away (it is measured again) or use the commit that measured it')
      self.configs.update(kept['configs'])
      self.training.update(kept['training'])
      return kept['numbers']
    before = set(self.configs)
    numbers = measure()
    trained = sorted(set(self.configs) - before)
    kept = json.loads(json.dumps({
        **here, 'configs': {n: _resolved(self.configs[n]) for n in trained},
        'training': {n: self.training[n] for n in trained}, 'numbers': numbers}, default=_plain))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    files.write_json(path, kept, indent=1)
    return kept['numbers']

  def write(self, numbers: dict, render: Callable[[dict], tuple[str, list[str]]]) -> str:
    """`results.json` (`numbers` with 'provenance' and 'training' added) and `results.md`
    rendered from it."""
    numbers = {**numbers, 'provenance': provenance(self.configs, self.quick, self.source),
               'training': self.training}
    numbers = json.loads(json.dumps(numbers, default=_plain))  # what a reader of the file sees
    files.write_text(os.path.join(self.workdir, 'results.json'), json.dumps(numbers, indent=1))
    return files.write_text(os.path.join(self.workdir, 'results.md'), markdown(render, numbers))


def _resolved(config: ml_collections.ConfigDict | dict) -> dict:
  """A config as plain JSON values (a part keeps its runs' configs so)."""
  return config if isinstance(config, dict) else json.loads(config.to_json_best_effort())


def _plain(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)


def training_summary(workdir: str, steps: int) -> dict:
  """The first and last logged training loss of a run (did it learn?), its steps and its
  training time (steps over the median logged rate)."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    logged = [r for r in map(json.loads, f) if 'train_loss' in r]
  rate = statistics.median(r['steps_per_sec'] for r in logged)
  return {'steps': steps, 'first_loss': logged[0]['train_loss'],
          'last_loss': logged[-1]['train_loss'], 'train_seconds': steps / rate}


def provenance(configs: dict[str, ml_collections.ConfigDict | dict], quick: bool,
               started: dict | None = None) -> dict:
  """Where numbers come from: commit, dirty tree, config hash, date, command, seeds, machine.
  `started`: `fcn_provenance.source()` when the run began, whose commit and dirty state are
  the code's (the date is the results' own)."""
  resolved = {name: _resolved(c) for name, c in sorted(configs.items())}
  main_module = sys.modules['__main__'].__spec__
  here = fcn_provenance.source()
  started = started or here
  return {
      'commit': started['commit'], 'dirty': started['dirty'],
      'config_hash': hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16],
      'date': here['date'],
      'command': ' '.join(['python -m', main_module.name.removesuffix('.__main__') if main_module
                           else 'experiments', *sys.argv[1:]]),
      'seeds': sorted({int(c['seed']) for c in resolved.values()}),
      'machine': here['machine'],
      'quick': quick,
  }


def markdown(render: Callable[[dict], tuple[str, list[str]]], numbers: dict) -> str:
  """`results.md`: the title, where the numbers come from, then `render`'s sections."""
  title, sections = render(numbers)
  p = numbers['provenance']
  seeds = ', '.join(map(str, p['seeds'])) or 'none trained'
  head = (f'Produced by `{p["command"]}`' +
          (' (**quick smoke run: the numbers do not test the claim**)' if p['quick'] else '') +
          f' at commit `{p["commit"][:12]}`' +
          (' **with uncommitted changes**' if p['dirty'] else '') +
          f', {p["date"]}, on {p["machine"]}; seeds {seeds}; config hash `{p["config_hash"]}`.')
  return '\n'.join([f'# {title}', '', head, '', *sections]) + '\n'


def quick_training(config: ml_collections.ConfigDict, steps: int, batch_size: int = 8) -> None:
  """Shrinks a config's schedule in place for `--quick`."""
  config.num_train_steps = steps
  config.batch_size = batch_size
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, max(1, steps // 10))
  config.checkpoint_every = steps
  config.log_every = max(1, steps // 5)


def wall_times(fn: Callable[[], Any], repeats: int = 5) -> list[float]:
  """Wall times of `fn()` in seconds over `repeats` calls after one warm-up call; `fn`'s
  result is waited for (`jax.block_until_ready`), so asynchronous dispatch is not timed short."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return times


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A markdown table; floats get 4 significant digits."""
  def fmt(v):
    return f'{v:.4g}' if isinstance(v, float) else str(v)
  lines = ['| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
  lines += ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def save_figure(fig, path: str) -> str:
  """Saves a matplotlib figure as PNG (whole or not at all) and closes it."""
  return figures.save(fig, path, dpi=90, bbox_inches='tight')


def figure(*args, **kwargs):
  """`(figure, axes)` without pyplot (`fcn_jax.figures.subplots`)."""
  return figures.subplots(*args, **kwargs)


def load_split(data: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
  """All `(images float32 in [0, 1], labels)` of a classification dataset's split."""
  ds = catalog.load(data, split, data_dir=data.get('data_dir'))
  ds = ds.map(catalog.standardize(data))
  images, labels = [], []
  for ex in tfds.as_numpy(ds):
    images.append(ex['image'].astype(np.float32) / 255.0)
    labels.append(ex['label'])
  return np.stack(images), np.asarray(labels)


def predicted_labels(model: nnx.Module, images: np.ndarray, batch: int = 256) -> np.ndarray:
  """Top-1 labels of a classifier returning `(N, K)` logits, in batches of one shape. A net
  returning a score map `(N, H', W', K)` (a convolutionalized classifier on a larger image)
  gives each image the class of its highest score anywhere in the map (max over positions)."""
  out = []
  for first in range(0, len(images), batch):
    chunk = images[first:first + batch]
    padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]),
                                             chunk.dtype)]) if len(chunk) < batch else chunk
    logits = inference.predict(model, padded)[:len(chunk)]
    if logits.ndim == 4:
      logits = logits.max(axis=(1, 2))
    out.append(logits.reshape(len(chunk), -1).argmax(-1))
  return np.concatenate(out)


def correct_counts(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Per example `(correct, 1)`: the counts `fcn_jax.stats` pools into an accuracy."""
  return np.stack([np.asarray(predicted) == np.asarray(labels),
                   np.ones(len(labels), bool)], axis=1).astype(np.int64)


def interval_dict(i) -> dict:
  """A `fcn_jax.stats.Interval` as results.json stores it."""
  return {'estimate': i.estimate, 'low': i.low, 'high': i.high}


def ci(v: dict, signed: bool = False, digits: int = 3) -> str:
  """An interval dict as 'estimate [low, high]'."""
  f = f'{{:+.{digits}f}}' if signed else f'{{:.{digits}f}}'
  return f'{f.format(v["estimate"])} [{f.format(v["low"])}, {f.format(v["high"])}]'


def resized(images: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """`images` `(N, H, W, C)` resized to `size` (bilinear, antialiased when shrinking)."""
  return np.asarray(jax.image.resize(images, (len(images), *size, images.shape[-1]), 'bilinear'))
