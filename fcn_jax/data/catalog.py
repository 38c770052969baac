"""Every dataset fcn_jax can train on, behind one interface, and their common example format.

Offline (generated locally by `fcn_jax.data.builders`): `fcn_shapes`,
`fcn_digits/single`, `fcn_digits/canvas`, `fcn_cells`. From the tfds catalog
(download on first use, so online only): `mnist`, `cifar10`,
`oxford_iiit_pet`, `voc`. A user's own images: `folder` (`fcn_jax.data.folder`).

A dataset is named by a string (`'fcn_shapes/tiny'`) or by the run's data config
(`config.data`, whose `name` is the string): a folder dataset needs the config, which
says where the folder is.

`standardize(dataset)` maps a dataset's examples to the common format:
`image` (uint8 HxWxC) and, as the dataset has them, `label` (int32 class),
`mask` (int32 HxW class map; `tasks.IGNORE` = not labelled), `centres` (float32
Kx2 object centres, row/col in pixels) and `instances` (int32 HxW ids).

Choices: Oxford-IIIT Pet's trimap becomes 1 = pet, 0 = background, and the
uncertain border `tasks.IGNORE`. tfds's `voc` has boxes but no segmentation masks, so
its mask is made from the boxes (each box filled with 1 + its class, smaller
boxes on top, "difficult" boxes `tasks.IGNORE`): box-level supervision, not VOC's
pixel annotation.
"""

import socket
import urllib.parse

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from fcn_jax import errors
from fcn_jax import tasks
from fcn_jax.data import builders  # pylint: disable=unused-import (registers the builders)
from fcn_jax.data import folder

OFFLINE = ('fcn_shapes', 'fcn_digits', 'fcn_cells')
CATALOG = ('mnist', 'cifar10', 'oxford_iiit_pet', 'voc')
FOLDER = 'folder'

Dataset = str | ml_collections.ConfigDict  # a dataset's name, or a data config with its name


def _settings(dataset: Dataset) -> ml_collections.ConfigDict:
  if isinstance(dataset, str):
    return ml_collections.ConfigDict({'name': dataset})
  return dataset


def describe(dataset: Dataset) -> str:
  """The dataset as a reader of results should see it: its name, or a folder's path."""
  data = _settings(dataset)
  if data.name == FOLDER:
    return f'folder {data.get("images")}'
  return data.name


def base_name(name: str) -> str:
  base = name.split('/')[0].split(':')[0]
  if base not in OFFLINE + CATALOG + (FOLDER,):
    raise errors.ConfigError(f'unknown dataset {name!r}; offline: {", ".join(OFFLINE)}; '
                             f'catalog (online): {", ".join(CATALOG)}; your own images: '
                             f'{FOLDER!r} (with data.images)')
  return base


def _reachable(builder: tfds.core.DatasetBuilder, timeout: float = 3.0) -> bool:
  """Whether the first download host of `builder` answers (fails fast when offline)."""
  urls = list(builder.url_infos or {})
  if not urls:
    return True  # nothing known to download from: let tfds try
  host = urllib.parse.urlparse(urls[0]).hostname
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def keep_tensorflow_off_accelerators() -> None:
  """Hides the GPUs from TensorFlow, which only runs the input pipeline: they belong to JAX.

  Called by `prepared_builder`, before fcn_jax first touches a dataset. TensorFlow fixes its
  devices when it first uses them, so a caller that ran TensorFlow on a GPU before keeps it there
  (and this leaves it so); on a machine without GPUs there is nothing to hide.
  """
  if not tf.config.list_physical_devices('GPU'):
    return
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TensorFlow has already initialised its devices
    pass


def prepared_builder(dataset: Dataset, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The tfds builder of `dataset`, generated (offline and folder datasets) or downloaded if
  needed."""
  keep_tensorflow_off_accelerators()
  data = _settings(dataset)
  name = data.name
  base = base_name(name)
  if base == FOLDER:
    return folder.prepared_builder(data, data_dir)
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    if base in CATALOG and not _reachable(builder):
      raise errors.DatasetUnavailableError(
          f'dataset {name!r} is not prepared in {builder.data_dir} and cannot be downloaded '
          f'(no network). Use an offline dataset ({", ".join(OFFLINE)}), or prepare {name!r} '
          'on a machine that is online and copy its tensorflow_datasets folder to data_dir.')
    builder.download_and_prepare()
  return builder


def load(dataset: Dataset, split: str, *, data_dir: str | None = None, shuffle_files: bool = False,
         seed: int = 0, decode: bool = True) -> tf.data.Dataset:
  """Raw tfds examples of `split` (a tfds split string, e.g. 'train[:50%]').

  `decode=False` leaves the images encoded (cheap to shuffle and skip); decode
  them later with `decode_images(dataset, data_dir)`.
  """
  builder = prepared_builder(dataset, data_dir)
  read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
  decoders = None if decode else {k: tfds.decode.SkipDecoding() for k, f in
                                  builder.info.features.items()
                                  if isinstance(f, tfds.features.Image)}
  return builder.as_dataset(split=split, shuffle_files=shuffle_files, read_config=read_config,
                            decoders=decoders)


def decode_images(dataset: Dataset, data_dir: str | None = None):
  """The function decoding the image features that `load(..., decode=False)` left encoded."""
  features = prepared_builder(dataset, data_dir).info.features
  images = {k: f for k, f in features.items() if isinstance(f, tfds.features.Image)}

  def decode(example):
    return {k: images[k].decode_example(v) if k in images else v for k, v in example.items()}

  return decode


# --------------------------------------------------------------------------
# The common example format.


def _mask(m):
  return tf.cast(m[..., 0], tf.int32)


def _shapes(ex):
  return {'image': ex['image'], 'mask': _mask(ex['mask']),
          'centres': tf.cast(ex['objects']['centre'], tf.float32)}


def _digits(ex):
  if 'label' in ex:
    return {'image': ex['image'], 'label': tf.cast(ex['label'], tf.int32)}
  return _shapes(ex)


def _cells(ex):
  return {'image': ex['image'], 'mask': _mask(ex['mask']),
          'instances': tf.cast(ex['instances'][..., 0], tf.int32)}


def _classification(ex):
  return {'image': ex['image'], 'label': tf.cast(ex['label'], tf.int32)}


def _pets(ex):
  trimap = _mask(ex['segmentation_mask'])  # 1 pet, 2 background, 3 border
  mask = tf.where(trimap == 1, 1, tf.where(trimap == 2, 0, tasks.IGNORE))
  return {'image': ex['image'], 'mask': mask}


def _boxes_to_mask(shape, boxes, labels, difficult):
  """Box-level VOC labels: larger boxes first so smaller ones stay on top."""
  height, width = int(shape[0]), int(shape[1])
  mask = np.zeros((height, width), np.int32)
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  for k in np.argsort(-area):
    ymin, xmin, ymax, xmax = boxes[k]
    rows = slice(int(np.floor(ymin * height)), int(np.ceil(ymax * height)))
    cols = slice(int(np.floor(xmin * width)), int(np.ceil(xmax * width)))
    mask[rows, cols] = tasks.IGNORE if difficult[k] else labels[k] + 1
  return mask


def _voc(ex):
  objects = ex['objects']
  mask = tf.numpy_function(_boxes_to_mask, [tf.shape(ex['image']), objects['bbox'],
                                            objects['label'], objects['is_difficult']], tf.int32)
  mask = tf.ensure_shape(mask, [None, None])
  return {'image': ex['image'], 'mask': mask}


_STANDARDIZE = {'fcn_shapes': _shapes, 'fcn_digits': _digits, 'fcn_cells': _cells,
                'mnist': _classification, 'cifar10': _classification,
                'oxford_iiit_pet': _pets, 'voc': _voc, FOLDER: folder.standardize}


def standardize(dataset: Dataset):
  """The function mapping raw examples of `dataset` to the common format."""
  return _STANDARDIZE[base_name(_settings(dataset).name)]


def num_classes(dataset: Dataset) -> int:
  """Classes of the label or mask (background included)."""
  data = _settings(dataset)
  name = data.name
  base = base_name(name)
  if base == FOLDER:
    return folder.num_classes(data)
  if base == 'fcn_digits':
    return 11 if 'canvas' in name else 10
  return {'fcn_shapes': 4, 'fcn_cells': 2, 'mnist': 10, 'cifar10': 10, 'oxford_iiit_pet': 2,
          'voc': 21}[base]
