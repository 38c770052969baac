"""tf.data input pipelines: random fixed-size patches for training, whole images for evaluation.

Training (`train_dataset`): one global stream of the split (files and examples
shuffled with the seed, repeated), of which each process decodes every
`process_count`-th example, so the global batch does not depend on the number
of processes; each
example gets a random crop of `patch_size` that stays inside the image (smaller
images are rejected or padded, per `config.small_images`), the same crop of its
labels, augmentation, and targets at the model's output resolution computed
from its geometry by the task (`fcn_jax.tasks`). Randomness is stateless, keyed by
`(seed, example index)`, so the stream is a pure function of the seed and
`start_index` skips ahead without decoding (resuming a run).

Evaluation (`eval_examples`): every image of a split at its native size (cropped
to the largest size the model accepts, for nets like U-Net with valid
convolutions), one at a time, with its targets as NumPy arrays.

Element of a training batch: `image` float32 `(B, P, P, C)` in [0, 1] and
`target` — float32 `(B, H', W', 1)` for heat maps, int32 `(B, H', W')` for
segmentation (`tasks.IGNORE` = no label), int32 `(B,)` for classification —
plus `weight` float32 `(B, H', W')` when U-Net weight maps are on.
"""

from typing import Any, Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from fcn_jax import errors
from fcn_jax import geometry
from fcn_jax import tasks
from fcn_jax.data import catalog
from fcn_jax.tasks import segmentation

def _seeds(seed, index, n):
  """`n` independent stateless seeds for example `index`."""
  base = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
  return tf.unstack(tf.random.experimental.stateless_split(base, n))


def _pad_to(ex, patch: int):
  """Pads an image smaller than the patch at the bottom/right (labels with IGNORE)."""
  shape = tf.shape(ex['image'])
  pad_h, pad_w = tf.maximum(patch - shape[0], 0), tf.maximum(patch - shape[1], 0)
  out = dict(ex)
  out['image'] = tf.pad(ex['image'], [[0, pad_h], [0, pad_w], [0, 0]])
  for key in ('mask', 'instances'):
    if key in ex:
      value = tasks.IGNORE if key == 'mask' else 0
      out[key] = tf.pad(ex[key], [[0, pad_h], [0, pad_w]], constant_values=value)
  return out


def _augment(ex, size, augment, seed):
  """Random flips / rot90 / colour jitter, applied alike to image, labels and centres."""
  flip_seed, vflip_seed, rot_seed, colour_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 4))
  spatial = [k for k in ('mask', 'instances', 'weight') if k in ex]
  height, width = float(size[0]), float(size[1])

  def apply(ex, do, image_fn, centre_fn):
    out = dict(ex)
    out['image'] = tf.cond(do, lambda: image_fn(ex['image']), lambda: ex['image'])
    for k in spatial:
      out[k] = tf.cond(do, lambda k=k: image_fn(ex[k][..., None])[..., 0], lambda k=k: ex[k])
    if 'centres' in ex:
      out['centres'] = tf.cond(do, lambda: centre_fn(ex['centres']), lambda: ex['centres'])
    return out

  coin = lambda s: tf.random.stateless_uniform([], s) < 0.5  # pylint: disable=unnecessary-lambda-assignment
  if augment.get('flip', False):
    ex = apply(ex, coin(flip_seed), tf.image.flip_left_right,
               lambda c: tf.stack([c[:, 0], width - c[:, 1]], axis=1))
  if augment.get('vflip', False):
    ex = apply(ex, coin(vflip_seed), tf.image.flip_up_down,
               lambda c: tf.stack([height - c[:, 0], c[:, 1]], axis=1))
  if augment.get('rot90', False):
    if size[0] != size[1]:
      raise errors.ConfigError('rot90 augmentation needs square patches')
    ex = apply(ex, coin(rot_seed), tf.image.rot90,
               lambda c: tf.stack([width - c[:, 1], c[:, 0]], axis=1))
  strength = augment.get('colour', 0.0)
  if strength:
    b_seed, c_seed = tf.unstack(tf.random.experimental.stateless_split(colour_seed, 2))
    image = tf.image.stateless_random_brightness(ex['image'], strength, b_seed)
    image = tf.image.stateless_random_contrast(image, 1 - strength, 1 + strength, c_seed)
    ex = dict(ex, image=tf.clip_by_value(image, 0, 1))
  return ex


def _weight_map(instances, w0, sigma):
  return segmentation.unet_weight_map(instances, w0, sigma).astype(np.float32)


def _check_fields(task: tasks.Task, data: ml_collections.ConfigDict, needed, ex) -> None:
  """A clear error when the dataset lacks what the task's targets are made from."""
  missing = sorted(set(needed) - set(ex))
  if missing:
    raise errors.ConfigError(
        f'data.task={task.name!r} (with these data settings) needs {missing} from each example, '
        f'which {data.name} does not have: choose another task, data.heatmap or data.weight_map')


def _numpy_targets(task: tasks.Task, g: geometry.Geometry, size: tuple[int, int],
                   ex: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """The task's targets of a patch of `size`, computed by its one (NumPy) implementation."""
  names, specs = task.inputs(), task.target_specs(g, size)
  make = task.target_maker(g, size)

  def targets(*values):
    out = make(dict(zip(names, values)))
    return [out[k] for k in specs]

  values = tf.numpy_function(targets, [ex[k] for k in names],
                             [tf.as_dtype(dtype) for _, dtype in specs.values()], stateful=False)
  return {k: tf.ensure_shape(v, shape) for (k, (shape, _)), v in zip(specs.items(), values)}


def train_dataset(data: ml_collections.ConfigDict, g: geometry.Geometry, *, batch_size: int,
                  seed: int, start_index: int = 0, process_index: int = 0,
                  process_count: int = 1) -> tf.data.Dataset:
  """An infinite, deterministic stream of this process's training batches.

  `start_index` counts examples of the global stream (step * global batch);
  `batch_size` is this process's share of the global batch.
  """
  task = tasks.from_config(data)
  ds = catalog.load(data, data.train_split, data_dir=data.get('data_dir'),
                    shuffle_files=True, seed=seed, decode=False)
  decode = catalog.decode_images(data, data.get('data_dir'))
  standardize = catalog.standardize(data)
  ds = ds.repeat().shuffle(data.get('shuffle_buffer', 256), seed=seed).enumerate()
  # One global stream; each process decodes every process_count-th example of it, so a
  # global batch holds the same examples whatever the number of processes.
  ds = ds.skip(start_index).shard(process_count, process_index)

  patch = data.get('patch_size')
  small = data.get('small_images', 'reject')
  if small not in ('reject', 'pad'):
    raise errors.ConfigError(f"data.small_images must be 'reject' or 'pad', got {small!r}")
  weights = data.get('weight_map')
  margin = int(3 * weights.sigma) if weights else 0
  augment = data.get('augment') or {}

  def prepare(index, raw):
    crop_seed, aug_seed = _seeds(seed, index, 2)
    ex = standardize(decode(raw))
    ex['image'] = tf.cast(ex['image'], tf.float32) / 255.0
    # The weight map (U-Net) is computed from the instance ids, below.
    _check_fields(task, data, ['instances' if k == 'weight' else k for k in task.inputs()], ex)
    if patch:
      keep = tf.constant(True) if small == 'pad' else tf.reduce_all(
          tf.shape(ex['image'])[:2] >= patch)
      ex = _pad_to(ex, patch)  # rejected examples are padded too, then filtered out
      shape = tf.shape(ex['image'])
      top = tf.random.stateless_uniform([], crop_seed, 0, tf.maximum(shape[0] - patch, 0) + 1,
                                        tf.int32)
      left = tf.random.stateless_uniform([], tf.reverse(crop_seed, [0]), 0,
                                         tf.maximum(shape[1] - patch, 0) + 1, tf.int32)
      if weights:
        # The weight map of a window with a margin (distances to cells just outside count).
        t0, l0 = tf.maximum(top - margin, 0), tf.maximum(left - margin, 0)
        window = ex['instances'][t0:top + patch + margin, l0:left + patch + margin]
        w = tf.numpy_function(_weight_map, [window, weights.w0, weights.sigma], tf.float32)
        ex['weight'] = tf.ensure_shape(w, [None, None])[top - t0:top - t0 + patch,
                                                        left - l0:left - l0 + patch]
      ex['image'] = ex['image'][top:top + patch, left:left + patch]
      for key in ('mask', 'instances'):
        if key in ex:
          ex[key] = ex[key][top:top + patch, left:left + patch]
      if 'centres' in ex:
        ex['centres'] = ex['centres'] - tf.cast(tf.stack([top, left]), tf.float32)
      size = (patch, patch)
    else:
      keep = tf.constant(True)
      size = tuple(ex['image'].shape[:2])
      if None in size:
        raise errors.ConfigError(f'{data.name} has images of varying size: set data.patch_size')
      if weights:
        w = tf.numpy_function(_weight_map, [ex['instances'], weights.w0, weights.sigma],
                              tf.float32)
        ex['weight'] = tf.ensure_shape(w, size)
    ex = _augment(ex, size, augment, aug_seed)
    out = {'image': tf.ensure_shape(ex['image'], [*size, None]),
           **_numpy_targets(task, g, size, ex)}
    return out, keep

  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = _fail_on_long_rejection(ds, data.name, patch).filter(_is_kept).map(_without_flag)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


MAX_REJECTED_IN_A_ROW = 1000


def _fail_on_long_rejection(ds: tf.data.Dataset, name: str, patch) -> tf.data.Dataset:
  """Raises instead of looping forever when (almost) no image is as large as the patch."""

  def count(streak, element):
    _, keep = element
    streak = tf.where(keep, tf.zeros_like(streak), streak + 1)
    check = tf.debugging.assert_less(
        streak, tf.constant(MAX_REJECTED_IN_A_ROW, tf.int64),
        message=f'{MAX_REJECTED_IN_A_ROW} images in a row of {name} are smaller than '
                f'patch_size {patch}: use a smaller data.patch_size or set '
                'data.small_images to pad')
    with tf.control_dependencies([check]):
      return tf.identity(streak), element

  return ds.scan(tf.constant(0, tf.int64), count)


def _is_kept(example, keep):
  del example
  return keep


def _without_flag(example, keep):
  del keep
  return example


def fit_size(g: geometry.Geometry, size: tuple[int, int]) -> tuple[int, int]:
  """The largest input size <= `size` (per axis) that the model accepts."""
  fitted = []
  for a, n in enumerate(size):
    valid = g.valid_sizes(max(1, n - 512), n, axis=a)
    if not valid:
      raise errors.GeometryError(
          f'{g.name}: no valid input size up to {n} (minimum {g.min_input_size})')
    fitted.append(valid[-1])
  return tuple(fitted)


def eval_examples(data: ml_collections.ConfigDict, g: geometry.Geometry, split: str,
                  max_examples: int | None = None) -> Iterator[dict[str, Any]]:
  """Whole images of `split` at native size, with NumPy targets at the output resolution.

  Yields `image` float32 `(1, H, W, C)`, `target` (as in training, without the
  batch axis), the cropped `mask`/`centres`/`label` it came from, and `size`.
  """
  ds = catalog.load(data, split, data_dir=data.get('data_dir'))
  ds = ds.map(catalog.standardize(data))
  if max_examples:
    ds = ds.take(max_examples)
  task = tasks.from_config(data)
  for ex in tfds.as_numpy(ds):
    h, w = fit_size(g, ex['image'].shape[:2])
    out = {'image': (ex['image'][:h, :w].astype(np.float32) / 255.0)[None], 'size': (h, w)}
    if 'label' in ex:
      out['label'] = ex['label']
    if 'mask' in ex:
      out['mask'] = ex['mask'][:h, :w]
    if 'centres' in ex:
      out['centres'] = ex['centres'][(ex['centres'][:, 0] < h) & (ex['centres'][:, 1] < w)]
    needed = [k for k in task.inputs() if k != 'weight']  # evaluation weighs no pixel
    _check_fields(task, data, needed, out)
    fields = {k: out[k] for k in needed}
    out.update(task.targets(g, (h, w), fields))
    yield out
