"""The tiled prediction as a Dask graph (fcn_jax.inference.distributed): equal to the
single-process output, on Dask's threads and on a 2-worker LocalCluster that loses a worker
mid-run, and resumable."""

import logging
import os
import signal
import threading
import time

import numpy as np
import pytest
import zarr
from flax import nnx

from fcn_jax import errors
from fcn_jax import inference
from fcn_jax import models
from fcn_jax.inference import distributed
from fcn_jax.inference import outofcore


@pytest.fixture(scope='module')
def scan(tmp_path_factory):
  """patch_net, a uint8 scan on disk and its single-process tiled output."""
  folder = tmp_path_factory.mktemp('scan')
  model = models.get_model(dict(name='patch_net'), rngs=nnx.Rngs(0))
  image = (np.random.default_rng(1).random((1000, 1030, 3)) * 255).astype(np.uint8)
  np.save(folder / 'scan.npy', image)
  reference = outofcore.predict_to_file(model, image, str(folder / 'reference.npy'), tile=64,
                                        progress=False)
  return model, str(folder / 'scan.npy'), np.load(reference)


def _tasks(reference) -> int:
  """Tasks of 2 x 2 tiles (8 x 8 outputs each, patch_net at tile 64) over the output."""
  return int(np.prod([-(-(-(-n // 8)) // 2) for n in reference.shape[:2]]))


def test_the_dask_graph_is_the_whole_image_output(scan):
  model, path, reference = scan
  graph = distributed.prediction(model, path, tile=64)
  assert graph.shape == reference.shape and graph.chunks[0][0] == 16  # 2 tiles of 8 outputs
  np.testing.assert_allclose(graph.compute(), reference, rtol=1e-5, atol=1e-6)
  # A net with more context than stride (a U-Net) and an in-memory image.
  unet = models.get_model(dict(name='unet', depth=3, width=4), rngs=nnx.Rngs(0))
  image = np.random.default_rng(0).random((180, 228, 1), dtype=np.float32)
  np.testing.assert_allclose(distributed.prediction(unet, image, tile=96,
                                                    tiles_per_task=1).compute(),
                             inference.predict(unet, image), rtol=1e-5, atol=1e-5)


def test_a_two_worker_cluster_that_loses_a_worker_gives_the_single_process_output(scan,
                                                                                 tmp_path):
  from dask.distributed import Client, LocalCluster  # pylint: disable=g-import-not-at-top
  model, path, reference = scan
  output = str(tmp_path / 'out.zarr')
  markers = tmp_path / 'out.zarr.done.d'
  total = _tasks(reference)
  with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                    silence_logs=logging.ERROR, dashboard_address=None) as cluster, \
       Client(cluster) as client:
    before = client.run(os.getpid)
    failure = []

    def run():
      try:
        distributed.predict_to_zarr(model, path, output, tile=64, client=client)
      except Exception as e:  # pylint: disable=broad-except
        failure.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    def finished():
      return len([p for p in os.listdir(markers) if p != 'record.json']) if markers.is_dir() else 0

    deadline = time.time() + 120
    while worker.is_alive() and time.time() < deadline and finished() < 10:
      time.sleep(0.005)
    victim = sorted(before.values())[0]
    os.kill(victim, signal.SIGKILL)
    at_kill = finished()
    worker.join(300)
    assert not worker.is_alive() and not failure, failure
    assert 10 <= at_kill < total  # the kill landed mid-run
    after = client.run(os.getpid)
    assert victim not in after.values()  # the killed worker is gone (its nanny started anew)
  np.testing.assert_allclose(zarr.open_array(output, mode='r')[:], reference, rtol=1e-5,
                             atol=1e-6)
  assert not markers.exists() and not (tmp_path / 'out.partial.zarr').exists()


def test_running_again_computes_only_the_missing_tiles(scan, tmp_path, monkeypatch):
  model, path, reference = scan
  output = str(tmp_path / 'out.ome.zarr')
  run_tile, calls, lock = distributed._run_chunk, [], threading.Lock()

  def dies_after_12(*args, **kwargs):
    with lock:
      calls.append(1)
      if len(calls) > 12:
        raise InterruptedError('killed')
    return run_tile(*args, **kwargs)

  monkeypatch.setattr(distributed, '_run_chunk', dies_after_12)
  with pytest.raises(InterruptedError):
    distributed.predict_to_zarr(model, path, output, tile=64, values='labels')
  monkeypatch.setattr(distributed, '_run_chunk', run_tile)
  with pytest.raises(errors.InputError, match='records a partial output of another'):
    distributed.predict_to_zarr(model, path, output, tile=64, values='labels+confidence')
  time.sleep(0.5)  # a task in flight when the first run failed finishes its tile
  finished = len(os.listdir(output + '.done.d')) - 1  # less record.json
  assert finished >= 8 and not os.path.exists(output)
  calls.clear()
  monkeypatch.setattr(distributed, '_run_chunk', lambda *a, **k: (calls.append(1),
                                                                  run_tile(*a, **k))[1])
  distributed.predict_to_zarr(model, path, output, tile=64, values='labels')
  assert len(calls) == _tasks(reference) - finished
  labels = zarr.open_group(output, mode='r')['labels/prediction/s0'][:]
  np.testing.assert_array_equal(labels, reference[..., 0] > 0)


def test_refusals_of_the_dask_path(scan, tmp_path):
  model, path, _ = scan
  with pytest.raises(errors.InputError, match='writes .zarr or .ome.zarr'):
    distributed.predict_to_zarr(model, path, str(tmp_path / 'o.npy'), tile=64)
  circular = models.get_model(dict(name='patch_net', padding_mode='circular'), rngs=nnx.Rngs(0))
  with pytest.raises(errors.TilingError, match='does not wrap halos'):
    distributed.prediction(circular, np.zeros((128, 128, 3), np.float32), tile=64)
  unet = models.get_model(dict(name='unet', depth=3, width=4), rngs=nnx.Rngs(0))
  with pytest.raises(errors.TilingError, match='too small for the Dask path.*use a tile of at '
                     'least'):
    distributed.prediction(unet, np.zeros((300, 300, 1), np.float32), tile=16)
