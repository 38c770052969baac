"""Helpers shared by the config files."""

import ast

import ml_collections


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
