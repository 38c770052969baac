"""Files written whole or not at all: a reader (or a resumed run) never sees a partial one.

Everything the project writes for people and for resuming (results, configs,
figures, progress records) goes through `write_atomically`: the content is written
under a temporary name next to the target and renamed over it (atomic on POSIX).
"""

import json
import os
from typing import Any, Callable


def write_atomically(path: str, write: Callable[[str], Any]) -> str:
  """Calls `write(tmp)` for a temporary name next to `path` (same extension), then renames
  it to `path`. If `write` fails, the temporary file is removed and `path` is untouched."""
  tmp = f'{path}.tmp{os.path.splitext(path)[1]}'
  try:
    write(tmp)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  os.replace(tmp, path)
  return path


def write_text(path: str, text: str) -> str:
  def write(tmp):
    with open(tmp, 'w') as f:
      f.write(text)
  return write_atomically(path, write)


def write_json(path: str, value: Any, **dump_kwargs) -> str:
  return write_text(path, json.dumps(value, **dump_kwargs))
