"""Model registry: `get_model(config.model, rngs=...)` builds a model by name.

Each architecture lives in `fcn_jax/models/<name>.py` and exposes `Model`, an
`nnx.Module` whose constructor takes the config fields (besides `name`) as
keyword arguments and which reports its geometry (`fcn_jax.geometry.of`).
"""

import importlib
import inspect
from typing import Any, Mapping

from flax import nnx

from fcn_jax import errors
from fcn_jax import weights

MODELS = ('patch_net', 'dense_classifier', 'gap_classifier', 'nin', 'encoder_decoder', 'unet',
          'fcn', 'resnet')  # SegNet-style unpooling is encoder_decoder(upsample='unpool')


def model_class(name: str) -> type[nnx.Module]:
  if name not in MODELS:
    raise errors.ConfigError(f'unknown model {name!r}; choose one of {", ".join(MODELS)}')
  return importlib.import_module(f'fcn_jax.models.{name}').Model


def get_model(config: Mapping[str, Any], *, rngs: nnx.Rngs) -> nnx.Module:
  """Builds `config.name` with the other fields of `config` as constructor arguments;
  `config.pretrained` (a path) loads torchvision weights into it (`fcn_jax.weights`);
  `config.init_from` (a coarser FCN run) is applied by the training loop when a run starts
  (`fcn_jax.train`), not here."""
  fields = dict(config)
  name = fields.pop('name', None)
  pretrained = fields.pop('pretrained', None)
  fields.pop('init_from', None)
  cls = model_class(name)
  accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ('self', 'rngs')]
  unknown = sorted(set(fields) - set(accepted))
  if unknown:
    raise errors.ConfigError(f'model {name!r} has no field(s) {unknown}; its fields are {accepted}')
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
  model = cls(**fields, rngs=rngs)
  if pretrained:  # torchvision weights (fcn_jax.weights), after the model is built
    weights.load_torchvision(model, pretrained)
  return model


def inference_view(model: nnx.Module) -> nnx.Module:
  """`model` in inference mode (dropout off, batch norm on its running statistics).

  A view that shares `model`'s arrays: `model` itself stays in the mode it was in, so a
  library function that evaluates the caller's model hands it back unchanged.
  """
  return nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
