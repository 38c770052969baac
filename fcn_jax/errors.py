"""The errors a user can cause, and fix: the CLIs print these as one line, anything else as a bug.

Every class is a `ValueError`, so `except ValueError` still catches them. A failure that is not
one of these (an `IndexError` in fcn_jax, an error inside JAX or orbax) keeps its traceback,
because it is a bug to report, not a mistake to correct.
"""


class UserError(ValueError):
  """An error the user caused: the message says what to change."""


class ConfigError(UserError):
  """A config or sweep field, or a model's constructor argument, that cannot be used."""


class InputError(UserError):
  """An input the user named that cannot be used: an image or array file, a workdir, an output
  path, a partial output of another run."""


class GeometryError(UserError):
  """An input size the network cannot take (too small or misaligned)."""


class TilingError(UserError):
  """A model (or layer) whose output cannot be assembled from tiles exactly."""


class DatasetUnavailableError(UserError):
  """A catalog dataset that is neither prepared locally nor downloadable."""


class NoReadableCheckpointError(UserError):
  """Every checkpoint of a directory failed to load."""
