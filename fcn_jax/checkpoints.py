"""Reading checkpoints that may be damaged: the newest readable one wins, loudly.

Orbax writes a checkpoint into a temporary directory and renames it when it is
complete, so a run killed mid-write leaves no checkpoint under a final step
name. A checkpoint damaged afterwards (a truncated or corrupted file, a full
disk) is detected when it is read: `restore` then warns and falls back to the
previous step, and never deletes anything (training moves the damaged steps
aside, since it will write those steps again).
"""

import logging
import os
import time
from typing import Any

import orbax.checkpoint as ocp

from fcn_jax import errors

logger = logging.getLogger(__name__)



def restore(manager: ocp.CheckpointManager, abstract: Any, step: int | None = None,
            quarantine: bool = False) -> tuple[int | None, Any]:
  """`(step, state)` of checkpoint `step`, or of the newest readable one when `step` is None.

  Returns `(None, None)` when the directory holds no checkpoint. A damaged
  checkpoint is skipped with a warning naming it and the error; if a given
  `step` is damaged, or none is readable, raises `NoReadableCheckpointError`.
  With `quarantine` (training, which will write those steps again), damaged
  steps newer than the one restored are moved to `damaged_checkpoints/` beside
  the checkpoint directory, not deleted.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    return None, None
  candidates = steps if step is None else [step]
  problems, damaged = [], []
  for candidate in candidates:
    try:
      state = manager.restore(candidate, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-exception-caught  # any damage looks different
      message = f'{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'
      problems.append(f'step {candidate}: {message}')
      damaged.append(candidate)
      logger.warning('checkpoint step %d in %s is unreadable (%s)%s', candidate,
                     manager.directory, message,
                     '; trying the previous one' if candidate != candidates[-1] else '')
      continue
    if quarantine and damaged:
      directory = os.fspath(manager.directory)
      aside = os.path.join(os.path.dirname(directory.rstrip('/')), 'damaged_checkpoints')
      os.makedirs(aside, exist_ok=True)
      for bad in damaged:
        target = os.path.join(aside, f'{bad}.{int(time.time())}')
        os.replace(os.path.join(directory, str(bad)), target)
        logger.warning('moved the unreadable checkpoint step %d to %s', bad, target)
      manager.reload()
    return candidate, state
  raise errors.NoReadableCheckpointError(
      f'no readable checkpoint in {manager.directory} ({"; ".join(problems)}). Nothing was '
      'deleted: move the damaged steps away to start from an older one, or use a new --workdir')
