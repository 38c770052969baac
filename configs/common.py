"""Helpers shared by the config files."""

import ast

import ml_collections
from ml_collections import config_dict


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses a config arg like 'variant=fcn16s,runlocal' into typed fields.

  Only names in `defaults` are accepted (a misspelt one is an error naming the
  valid ones); a bare name sets a boolean field to True; values are read as
  Python literals when they parse, as strings otherwise.
  """
  values = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, _, text = item.partition('=')
    key = key.strip()
    if key not in values:
      raise ValueError(f'unknown config arg {key!r}; valid: {sorted(values)}')
    if not _:
      values[key] = True
      continue
    try:
      values[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      values[key] = text
  return ml_collections.ConfigDict(values)


def digits_classification(config: ml_collections.ConfigDict, runlocal: bool) -> None:
  """Data and schedule for classifying the 28x28 digits of fcn_digits/single (in place)."""
  config.data.name = 'fcn_digits/single'  # 28x28 real handwritten digits
  config.data.task = 'classification'
  config.data.patch_size = config_dict.placeholder(int)  # None: whole 28x28 images
  config.data.augment = ml_collections.ConfigDict()  # no flips for digits
  config.data.validation_split = None  # fcn_digits/single has train and test only
  config.data.eval_split = 'test'
  config.batch_size = 4 if runlocal else 64  # global batch
  config.num_train_steps = 3 if runlocal else 800  # optimiser steps


def folder_data(config: ml_collections.ConfigDict, task: str) -> None:
  """The fields of a folder dataset (fcn_jax.data.folder), set in `config.data` (in place).

  Give the folders on the command line: `--config.data.images=DIR/images` and, as the task
  needs, `--config.data.masks=DIR/masks` or `--config.data.points=DIR/points.csv`.
  """
  data = config.data
  data.name = 'folder'  # your own images (fcn_jax.data.folder)
  data.task = task
  data.images = config_dict.placeholder(str)  # folder of images (classification: of folders)
  data.masks = config_dict.placeholder(str)  # folder of masks, matched to images by stem
  data.points = config_dict.placeholder(str)  # CSV (image,row,col) or JSON of object centres
  data.image_suffix = ''  # '' = any image extension; else the name's tail, e.g. '_img.jpg'
  data.mask_suffix = ''  # likewise for masks, e.g. '_mask.png'
  data.mask_format = 'index'  # 'index' (grey/palette PNG) | 'colour' (RGB) | 'binary' (0/255)
  data.num_classes = 2  # classes of the masks or folders, background included
  data.class_names = config_dict.placeholder(tuple)  # names of the classes, in order
  data.colours = config_dict.placeholder(tuple)  # 'colour': ((r, g, b), ...) per class
  data.ignore_colour = config_dict.placeholder(tuple)  # 'colour': (r, g, b) of unlabelled
  data.ignore_index = 255  # 'index': the value of unlabelled pixels
  data.reduce_zero_label = False  # 'index': 0 = unlabelled, k = class k-1 (ADE20K)
  data.channels = 3  # what the model sees: 3 (grey repeated) | 1 (RGB to luma)
  # Splits: files of names (one per line) or a seeded random split of the images.
  data.split_files = ml_collections.ConfigDict({s: config_dict.placeholder(str)
                                                for s in ('train', 'validation', 'test')})
  data.validation_fraction = 0.2
  data.test_fraction = 0.2
  data.split_seed = 0
  data.small_images = 'pad'  # images smaller than the patch are padded (labels ignored)
