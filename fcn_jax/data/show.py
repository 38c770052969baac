r"""Writes a PNG grid of a dataset's examples with their labels, to look at the data.

  python -m fcn_jax.data.show --dataset=fcn_shapes --out=/tmp/show
  python -m fcn_jax.data.show --dataset=fcn_cells --split=test --num=4 --out=/tmp/show
  python -m fcn_jax.data.show --config=configs/folder_segmentation.py \
      --config.data.images=DIR/images --config.data.masks=DIR/masks --out=/tmp/show

With `--config`, the dataset is the config's data (a folder dataset needs it: where the
folder is, how its masks are coded); `--dataset` is then not used.

Each example is shown as the image, then its labels: the class mask (with object
centres as dots), or instance ids, or the class label in the title.
"""

import os
import sys

import numpy as np
import tensorflow_datasets as tfds
from absl import app
from absl import flags
from matplotlib.figure import Figure
from ml_collections import config_flags

from fcn_jax import errors
from fcn_jax import figures
from fcn_jax import tasks
from fcn_jax.data import catalog

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  flags.DEFINE_string('dataset', 'fcn_shapes', 'tfds name, e.g. fcn_digits/canvas.')
  flags.DEFINE_string('split', 'train', 'Split to show.')
  flags.DEFINE_integer('num', 8, 'Number of examples.')
  flags.DEFINE_string('out', None, 'Output folder (the PNG is <out>/<dataset>_<split>.png).')
  flags.DEFINE_string('data_dir', None, 'tfds data_dir (default: tfds default).')
  config_flags.DEFINE_config_file('config', None, 'A training config: show its data.')


def grid(dataset: catalog.Dataset, split: str, num: int, data_dir: str | None = None) -> Figure:
  """A figure with one column per example: image on top, labels below."""
  ds = catalog.load(dataset, split, data_dir=data_dir).map(catalog.standardize(dataset))
  ds = ds.take(num)
  name = dataset if isinstance(dataset, str) else dataset.name
  examples = list(tfds.as_numpy(ds))
  dense = any(k in examples[0] for k in ('mask', 'instances'))
  rows = 2 if dense else 1
  fig, axes = figures.subplots(rows, len(examples), figsize=(2.6 * len(examples), 2.6 * rows),
                           squeeze=False)
  for col, ex in enumerate(examples):
    image = ex['image']
    axes[0, col].imshow(image[..., 0] if image.shape[-1] == 1 else image,
                        cmap='gray' if image.shape[-1] == 1 else None)
    axes[0, col].set_title(f'{image.shape[0]}x{image.shape[1]}' +
                           (f'  label {ex["label"]}' if 'label' in ex else ''), fontsize=8)
    if dense:
      labels = ex['instances'] if 'instances' in ex else ex['mask']
      shown = np.where(labels == tasks.IGNORE, -1, labels)
      axes[1, col].imshow(shown, cmap='tab20' if 'instances' in ex else 'tab10',
                          vmin=-1, vmax=max(10, int(shown.max())), interpolation='nearest')
      axes[1, col].set_title('instances' if 'instances' in ex else 'mask', fontsize=8)
      if 'centres' in ex and len(ex['centres']):
        axes[1, col].scatter(ex['centres'][:, 1], ex['centres'][:, 0], s=6, c='white')
  for ax in axes.ravel():
    ax.axis('off')
  fig.suptitle(f'{name} [{split}]')
  fig.tight_layout()
  return fig


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.out:
    raise app.UsageError('give --out=DIR')
  os.makedirs(FLAGS.out, exist_ok=True)
  dataset = FLAGS.config.data if FLAGS.config else FLAGS.dataset
  data_dir = FLAGS.data_dir or (FLAGS.config.data.get('data_dir') if FLAGS.config else None)
  try:
    fig = grid(dataset, FLAGS.split, FLAGS.num, data_dir)
  except errors.UserError as e:  # one clear line; a bug keeps its traceback
    print(f'error: {e}', file=sys.stderr)
    return 1
  name = dataset if isinstance(dataset, str) else dataset.name
  path = os.path.join(FLAGS.out, f'{name.replace("/", "_")}_{FLAGS.split}.png')
  figures.save(fig, path, dpi=100)
  print(path)
  return 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
