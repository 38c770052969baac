"""Early stopping: end training when the validation metric stops rising.

`config.early_stopping.patience = P` (with `config.eval_every = N` and a validation split)
stops a run once P validation evaluations in a row (every N steps) have not raised the
watched metric by more than `min_delta` over its best value so far. The watched metric is
`config.early_stopping.metric` ('' = the task's headline: F1 for heat maps, pixel accuracy for
segmentation, accuracy for classification; any key of the task's metrics, e.g. 'mean_iou'),
averaged over the validation split's image sizes. Training stops at that step, saves a
checkpoint there, and evaluates as a finished run does: the model kept is the last one (at
most P evaluations past the best), not the best one. Only the validation split is read, so
the test split still decides nothing.

The state lives in `metrics.jsonl` (the validation records and an `early_stopped` record),
so a resumed run picks up its best value and its count, and the same command run again on a
run that stopped early does not train it further.
"""

import dataclasses
import json
import math
import os

import ml_collections

from fcn_jax import errors


@dataclasses.dataclass
class EarlyStopping:
  """Counts validation evaluations without improvement; `update` says when to stop."""

  patience: int
  metric: str
  min_delta: float = 0.0
  best: float = -math.inf
  best_step: int | None = None
  since_best: int = 0
  stopped_at: int | None = None

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, headline: str) -> 'EarlyStopping | None':
    """The rule of `config.early_stopping`, or None when it is off (patience 0 or no field)."""
    settings = config.get('early_stopping')
    if settings is None or not settings.get('patience'):
      return None
    patience, min_delta = int(settings.patience), float(settings.get('min_delta', 0.0))
    if patience < 0 or min_delta < 0:
      raise errors.ConfigError(f'early_stopping.patience and .min_delta must be >= 0, got '
                               f'{patience} and {min_delta}')
    if not config.get('eval_every') or not config.data.get('validation_split'):
      raise errors.ConfigError('early_stopping.patience needs validation evaluations during '
                               'training: set eval_every > 0 and data.validation_split')
    return cls(patience=patience, metric=settings.get('metric') or headline,
               min_delta=min_delta)

  def update(self, step: int, value: float) -> bool:
    """Records the validation metric at `step`; True when training should stop there."""
    if value > self.best + self.min_delta or self.best_step is None:
      self.best, self.best_step, self.since_best = value, step, 0
    else:
      self.since_best += 1
    if self.since_best >= self.patience:
      self.stopped_at = step
    return self.stopped_at is not None

  def value(self, scalars: dict[str, float], split: str) -> float:
    """The watched metric, averaged over sizes, from one evaluation's `<split>/<HxW>/<metric>`
    scalars (as `train` writes them)."""
    values = [v for k, v in scalars.items()
              if k.startswith(f'{split}/') and k.rsplit('/', 1)[-1] == self.metric]
    if not values:
      names = sorted({k.rsplit('/', 1)[-1] for k in scalars if k.startswith(f'{split}/')})
      raise errors.ConfigError(f'early_stopping.metric {self.metric!r} is not a metric of this '
                               f'task; choose one of {names}')
    return sum(values) / len(values)

  def replay(self, metrics_path: str, split: str, before: int) -> None:
    """Picks up the state of a resumed run from its `metrics.jsonl`: the validation records
    (up to step `before`, the checkpoint it resumes from) and an `early_stopped` record."""
    if not os.path.exists(metrics_path):
      return
    with open(metrics_path) as f:
      records = [json.loads(line) for line in f if line.strip()]
    replayed = set()
    for r in records:
      if r.get('step', math.inf) > before:
        continue
      if r.get('early_stopped'):
        self.stopped_at = r['step']
      elif r.get('split') == split and r['step'] not in replayed:  # once per step
        replayed.add(r['step'])
        self.update(r['step'], self.value(r, split))
