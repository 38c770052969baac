r"""Trains a fully convolutional network from a config, then evaluates it at many input sizes.

  python -m fcn_jax.train --config=configs/default.py --workdir=/tmp/fcn_default
  python -m fcn_jax.train --config=configs/default.py:runlocal --workdir=/tmp/smoke \
      --config.num_train_steps=20

Everything lands in `--workdir`: `config.json` (the resolved config),
`checkpoints/` (orbax: model, optimiser and step; the data stream is a pure
function of the seed and the step), TensorBoard events and a readable log
(clu), `metrics.jsonl`, `results.md` and `examples.png`. Running the same
command again resumes from the latest checkpoint.

Selection apart from reporting: the `config.data.validation_split` is evaluated
every `eval_every` steps and at the end (scalars `validation/<H>x<W>/<metric>`,
what sweeps optimise and any choice of a setting should read); the
`config.data.eval_split` (the test split) is evaluated once, at the end, and is
what `results.md` reports (scalars `test/<H>x<W>/<metric>`); where the two name the same
split (an experiment that scores its test split itself), the closing evaluation runs once. With
`config.early_stopping.patience` set, training ends early once the validation metric stops
rising (`fcn_jax.early_stopping`).

Data parallel over the local devices (a 'data' mesh axis splits the batch,
parameters are replicated; a batch that does not divide over all devices uses
the most that it does, see `fcn_jax.devices`; on CPU JAX makes one device
unless `JAX_NUM_CPU_DEVICES` says otherwise) and across processes after `jax.distributed.initialize`
(see `--coordinator`); one device is the same code path.
"""

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import app
from absl import flags
from absl import logging
from clu import metric_writers
from clu import periodic_actions
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import config_flags

from fcn_jax import checkpoints as checkpoints_lib
from fcn_jax import devices
from fcn_jax import early_stopping
from fcn_jax import errors
from fcn_jax import evaluate
from fcn_jax import files
from fcn_jax import geometry
from fcn_jax import layers
from fcn_jax import models
from fcn_jax import optim
from fcn_jax import tasks
from fcn_jax.data import catalog
from fcn_jax.data import pipeline
from fcn_jax.inference import loading as inference_loading

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so tests can import this)."""
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/<name>.py).',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
  flags.DEFINE_bool('overwrite', False, 'If --workdir holds a run of a different config, move it '
                    'aside (to <workdir>.replaced-<time>) and start over.')
  flags.DEFINE_string('coordinator', None, 'host:port of process 0, for a multi-process run '
                      '(with --num_processes and --process_id).')
  flags.DEFINE_integer('num_processes', 1, 'Processes in a multi-process run.')
  flags.DEFINE_integer('process_id', 0, 'This process in a multi-process run.')
  flags.mark_flags_as_required(['config'])


# Fields that may change between runs in one workdir (extending or re-scheduling a run, or
# moving it to another backend: the lowerings agree up to float rounding).
RESUMABLE_CHANGES = ('num_train_steps', 'log_every', 'eval_every', 'checkpoint_every',
                     'max_eval_images', 'lowering', 'early_stopping')


class Interrupted(Exception):
  """SIGTERM or SIGINT stopped training after saving a checkpoint."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


@contextlib.contextmanager
def _stop_requests():
  """Turns SIGTERM/SIGINT into a request checked between steps (main thread only)."""
  requests: list[int] = []
  if threading.current_thread() is not threading.main_thread():
    yield requests
    return
  previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
  for sig in previous:
    signal.signal(sig, lambda signum, frame: requests.append(signum))
  try:
    yield requests
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite."""


def _check_workdir(config: ml_collections.ConfigDict, workdir: str, overwrite: bool) -> None:
  """Refuses a workdir that cannot be written or holds a run of a different config.

  With `overwrite`, such a run is moved aside to `<workdir>.replaced-<time>` (not deleted).
  """
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.InputError(f'cannot create workdir {workdir!r}: {e.strerror}') from None
  if not os.access(workdir, os.W_OK):
    raise errors.InputError(f'workdir {workdir!r} is not writable')
  path = os.path.join(workdir, 'config.json')
  resolved = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    changed = sorted(k for k in set(previous) | set(resolved)
                     if previous.get(k) != resolved.get(k) and k not in RESUMABLE_CHANGES)
    if changed and not overwrite:
      raise errors.InputError(
          f'workdir {workdir!r} holds a run of a different config (fields '
          f'{changed} differ); use another --workdir, or pass --overwrite to move '
          'that run aside and start over')
    if changed and jax.process_index() == 0:
      aside = f'{workdir}.replaced-{time.strftime("%Y%m%d-%H%M%S")}'
      os.replace(workdir, aside)
      os.makedirs(workdir)
      logging.warning('moved the previous run (a different config) to %s', aside)


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """`config.json` of the run, written once the model and the data have been set up."""
  if jax.process_index() == 0:
    files.write_json(os.path.join(workdir, 'config.json'),
                     json.loads(config.to_json_best_effort()), indent=2, sort_keys=True)


def _grow_from(model: nnx.Module, workdir: str) -> None:
  """Initialises `model` from the trained coarser model of the run in `workdir`
  (`fcn.Model.grow_from`: FCN-16s from FCN-32s, FCN-8s from FCN-16s)."""
  if not hasattr(model, 'grow_from'):
    raise errors.ConfigError(f'model.init_from grows an FCN from a coarser FCN run; '
                             f'{geometry.of(model).name} has no such stages')
  coarser, _ = inference_loading.load_trained(workdir)
  model.grow_from(coarser)
  logging.info('%s initialised from %s (%s)', geometry.of(model).name, workdir,
               geometry.of(coarser).name)


def _train_step(model, optimizer, batch, task: tasks.Task, compute_dtype: str):
  def loss_fn(model):
    # The layers compute in their input's dtype: a bfloat16 image gives bfloat16 convs on
    # float32 parameters (whose gradients stay float32); the loss is float32.
    logits = model(batch['image'].astype(compute_dtype))
    return task.loss(logits.astype(jnp.float32), batch)

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss, optax.tree.norm(grads)


train_step = nnx.jit(_train_step, static_argnames=('task', 'compute_dtype'),
                     donate_argnames=('model', 'optimizer'))


def place(model: nnx.Module, optimizer: nnx.Optimizer, batch_size: int) -> NamedSharding:
  """Copies the model and optimiser state to every device of `devices.batch_mesh(batch_size)`;
  returns the sharding that splits a batch over that mesh's 'data' axis."""
  mesh = devices.batch_mesh(batch_size)
  nnx.update((model, optimizer), jax.device_put(nnx.state((model, optimizer)),
                                                NamedSharding(mesh, P())))
  return NamedSharding(mesh, P('data'))


def _global_batch(batch: dict, sharding: NamedSharding) -> dict:
  """This process's part of the batch -> arrays split over the 'data' axis of all devices."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       overwrite: bool = False) -> dict[str, Any]:
  """Trains (resuming from `workdir` if it holds a checkpoint), evaluates, writes results.

  Returns the final training loss and the evaluation results.
  """
  workdir = os.path.abspath(workdir)
  if config.compute_dtype not in ('float32', 'bfloat16'):
    raise errors.ConfigError(f"compute_dtype must be 'float32' or 'bfloat16', got "
                             f'{config.compute_dtype!r}')
  # The dataset first: a folder dataset with a problem (or a catalog dataset offline) stops
  # here, before anything is written to the workdir.
  catalog.prepared_builder(config.data, config.data.get('data_dir'))
  _check_workdir(config, workdir, overwrite)
  with jax.debug_nans(bool(config.get('debug_nans', False))):  # the caller's setting comes back
    return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The body of `train_and_evaluate`, once the config and workdir are checked."""
  local_batch = config.batch_size // jax.process_count()

  model = models.get_model(config.model, rngs=nnx.Rngs(config.seed))
  layers.set_lowering(model, config.get('lowering', 'auto'))
  optimizer = nnx.Optimizer(model, optim.make_optimizer(config), wrt=nnx.Param)
  g = geometry.of(model)
  logging.info('%s: %d parameters, receptive field %s, stride %s', g.name, g.params,
               g.receptive_field, g.stride)

  checkpoints = ocp.CheckpointManager(
      os.path.join(workdir, 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True))
  step = 0
  abstract = {'model': nnx.state(model), 'optimizer': nnx.state(optimizer)}
  restored_step, restored = checkpoints_lib.restore(checkpoints, abstract, quarantine=True)
  if restored_step is not None:
    step = restored_step
    nnx.update(model, restored['model'])
    nnx.update(optimizer, restored['optimizer'])
    logging.info('resumed from step %d', step)
  elif config.model.get('init_from'):  # a fresh run grows from a coarser one (FCN stages)
    _grow_from(model, config.model.init_from)
  split = place(model, optimizer, config.batch_size)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  report = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps, writer=writer,
                                           every_steps=config.log_every)
  metrics_path = os.path.join(workdir, 'metrics.jsonl')

  data = pipeline.train_dataset(config.data, g, batch_size=local_batch, seed=config.seed,
                                start_index=step * config.batch_size,
                                process_index=jax.process_index(),
                                process_count=jax.process_count())
  task = tasks.from_config(config.data, config.loss)
  stopping = early_stopping.EarlyStopping.from_config(config, task.headline)
  if stopping:  # a resumed run picks up its best value, or that it stopped early
    stopping.replay(metrics_path, config.data.validation_split, step)
  _write_config(config, workdir)  # only now: a run that fails to start leaves no config
  batches = data.as_numpy_iterator()
  last_loss, losses_since_log, t0 = math.nan, [], time.time()
  validation, validated_at = None, None
  with metric_writers.ensure_flushes(writer), _stop_requests() as stop:
    while step < config.num_train_steps and not (stopping and stopping.stopped_at is not None):
      batch = _global_batch(next(batches), split)
      loss, grad_norm = (float(v) for v in train_step(
          model, optimizer, batch, task, config.compute_dtype))
      if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        latest = checkpoints.latest_step()
        what = f'loss is {loss}' if not math.isfinite(loss) else (
            f'gradient norm is {grad_norm} (loss {loss:.4g})')
        raise NonFiniteLossError(
            f'{what} at step {step + 1}; stopped. The last good checkpoint is '
            f'{"step " + str(latest) if latest is not None else "none"} in {workdir}/checkpoints '
            '(lower optimizer.learning_rate or set optimizer.grad_clip_norm).')
      step += 1
      last_loss = loss
      losses_since_log.append(loss)
      report(step)
      if step % config.log_every == 0 or step == config.num_train_steps:
        record = {'step': step, 'train_loss': float(np.mean(losses_since_log)),
                  'steps_per_sec': len(losses_since_log) / max(time.time() - t0, 1e-9)}
        writer.write_scalars(step, {k: v for k, v in record.items() if k != 'step'})
        _append_record(metrics_path, record)
        losses_since_log, t0 = [], time.time()
      if step % config.checkpoint_every == 0 or step == config.num_train_steps or stop:
        checkpoints.save(step, args=ocp.args.StandardSave(
            {'model': nnx.state(model), 'optimizer': nnx.state(optimizer)}))
      if stop:
        checkpoints.wait_until_finished()
        name = signal.Signals(stop[0]).name
        raise Interrupted(f'stopped by {name} at step {step}; checkpoint saved in '
                          f'{workdir}/checkpoints: run the same command to resume', stop[0])
      if (config.eval_every and step % config.eval_every == 0 and step < config.num_train_steps
          and config.data.get('validation_split')):
        split_name = config.data.validation_split
        validation, validated_at = _evaluate(model, config, writer, step, workdir,
                                             split_name), step
        if stopping and stopping.update(step, stopping.value(_scalars(validation, split_name),
                                                             split_name)):
          if checkpoints.latest_step() != step:
            checkpoints.save(step, args=ocp.args.StandardSave(
                {'model': nnx.state(model), 'optimizer': nnx.state(optimizer)}))
          _append_record(metrics_path, {
              'step': step, 'early_stopped': True, 'metric': stopping.metric,
              'best': stopping.best, 'best_step': stopping.best_step})
          logging.info('early stopping at step %d: validation %s %.4f at step %d, not raised '
                       'by more than %g in %d evaluations', step, stopping.metric,
                       stopping.best, stopping.best_step, stopping.min_delta, stopping.patience)
  checkpoints.wait_until_finished()
  if config.data.get('validation_split') and validated_at != step:
    validation = _evaluate(model, config, writer, step, workdir, config.data.validation_split)
  if config.data.eval_split == config.data.get('validation_split'):
    results = validation  # the same split at the same step: evaluated once
  else:
    results = _evaluate(model, config, writer, step, workdir, config.data.eval_split)
  _write_results(model, config, results, step, workdir)
  return {'train_loss': last_loss, 'results': results, 'validation': validation, 'step': step,
          'early_stopped': bool(stopping and stopping.stopped_at is not None),
          'state': jax.device_get(nnx.state(model))}


def _evaluate(model, config, writer, step: int, workdir: str, split: str):
  """Metrics at every size of `split`, written as `<split>/<H>x<W>/<metric>` scalars."""
  # Evaluate a host-local copy: whole images of varying size are not batch-parallel work.
  graphdef, state = nnx.split(model)
  local_model = nnx.merge(graphdef, jax.device_get(state))
  results = evaluate.evaluate(local_model, config.data, split=split,
                              max_images=config.max_eval_images)
  scalars = _scalars(results, split)
  writer.write_scalars(step, scalars)
  _append_record(os.path.join(workdir, 'metrics.jsonl'), {'step': step, 'split': split,
                                                         **scalars})
  return results


def _scalars(results, split: str) -> dict[str, float]:
  """`<split>/<H>x<W>/<metric>` of every size and metric of an evaluation."""
  return {f'{split}/{r.size[0]}x{r.size[1]}/{name}': value
          for r in results for name, value in r.metrics.items()}


def _append_record(path: str, record: dict) -> None:
  """One line of `metrics.jsonl` (written by process 0)."""
  if jax.process_index() == 0:
    with open(path, 'a') as f:
      f.write(json.dumps(record) + '\n')


def _write_results(model, config, results, step: int, workdir: str) -> None:
  """results.md and examples.png of the reported (`eval_split`) evaluation."""
  if jax.process_index() > 0:
    return
  g = geometry.of(model)
  png = evaluate.plot_examples(results, tasks.from_config(config.data),
                               os.path.join(workdir, 'examples.png'))
  text = [f'# {g.name} on {catalog.describe(config.data)} after {step} steps', '',
          f'Trained on {config.data.patch_size or "whole"}'
          f'{"×" + str(config.data.patch_size) if config.data.patch_size else ""} '
          f'{"patches" if config.data.patch_size else "images"}, evaluated on whole '
          f'`{config.data.eval_split}` images at their native sizes. '
          f'{g.params:,} parameters; receptive field {g.receptive_field[0]}, '
          f'stride {g.stride[0]}.', '',
          evaluate.markdown(results, 'Output shape and metric per input size'),
          'Examples: for each size, the first image whose target holds a positive (the first '
          'image if none does).', '',
          f'![input, target, prediction per size]({os.path.basename(png)})', '']
  files.write_text(os.path.join(workdir, 'results.md'), '\n'.join(text))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.workdir:
    raise app.UsageError('give --workdir=DIR')
  if FLAGS.coordinator:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU all-reduce
    jax.distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(), jax.process_count(),
               jax.devices())
  try:
    out = train_and_evaluate(FLAGS.config, FLAGS.workdir, FLAGS.overwrite)
  except (errors.UserError, NonFiniteLossError) as e:  # one clear line; a bug keeps its traceback
    print(f'error: {e}', file=sys.stderr)
    return 1
  except Interrupted as e:
    print(str(e), file=sys.stderr)
    return 128 + e.signum
  logging.info('done at step %d, final train loss %.4f', out['step'], out['train_loss'])
  print(f'results: {os.path.join(os.path.abspath(FLAGS.workdir), "results.md")}')
  return 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
