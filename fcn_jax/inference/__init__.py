"""Inference: a trained model and its prediction on images of any size, one module per idea.

* `loading`: `load_config`, `load_trained(workdir, step)` (the model of a training run);
* `whole`: `predict(model, image)` on the whole image in one call, `output_shape`,
  `pad_to_accepted` (for sizes a same-size net does not accept);
* `tiling`: the algebra of exact tiling (`axis_tiling`, `plan`, `alignment`, `check_tile`);
* `tiled`: `predict_tiled(model, image, tile)`, equal to `predict` from fixed-shape tiles;
* `outofcore`: `open_image` and `predict_to_file` for images larger than memory;
* `outputs`: what a streamed prediction writes (logits, probabilities, labels, confidence;
  OME-Zarr pyramids) and the record that refuses another model's or image's output;
* `blended`: `predict_blended(model, image, tile, overlap, weights)`, overlapping weighted
  windows for models exact tiling refuses (exact tiling where it applies);
* `tta`: `predict_tta(model, image, views, scales, average)`, test-time augmentation;
* `border`: `border_map(model, size)`, the fraction of each output's field outside the image;
* `memory`: `plan(model, image_shape, budget)`, the tile and batch that fit a memory budget;
* `stitch`: `shift_and_stitch(model, image, stride)`, a dense output from a strided net;
* `distributed`: `dask_prediction(model, source, tile)`, the tiled prediction as a Dask
  graph, and `predict_to_zarr(..., client)` on a dask.distributed cluster, resumably;
* `export`: `export(model)` / `load_exported(data)`, a `jax.export` artifact of any size.

The names below are the public interface (`from fcn_jax import inference`).
"""

from fcn_jax.inference import outputs
from fcn_jax.inference.blended import predict_blended
from fcn_jax.inference.border import border_map
from fcn_jax.inference.distributed import predict_to_zarr
from fcn_jax.inference.distributed import prediction as dask_prediction
from fcn_jax.inference.export import export
from fcn_jax.inference.export import load_exported
from fcn_jax.inference.export import size_lattice
from fcn_jax.inference.loading import load_config
from fcn_jax.inference.loading import load_trained
from fcn_jax.inference.memory import plan as plan_memory
from fcn_jax.inference.outofcore import open_image
from fcn_jax.inference.outofcore import predict_to_file
from fcn_jax.inference.outputs import VALUES
from fcn_jax.inference.stitch import shift_and_stitch
from fcn_jax.inference.tiled import compilations
from fcn_jax.inference.tiled import predict_tiled
from fcn_jax.inference.tiling import AxisTiling
from fcn_jax.inference.tiling import alignment
from fcn_jax.inference.tiling import axis_tiling
from fcn_jax.inference.tiling import check_tile
from fcn_jax.inference.tiling import layer_keys
from fcn_jax.inference.tiling import plan
from fcn_jax.inference.tta import predict_tta
from fcn_jax.inference.whole import output_shape
from fcn_jax.inference.whole import pad_to_accepted
from fcn_jax.inference.whole import predict
