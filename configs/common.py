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
