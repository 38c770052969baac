"""benchmarks/README.md: each benchmark owns one `## ` section and rewrites it in place."""

import os

from fcn_jax import files

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'README.md')


def write_section(text: str, readme: str = README) -> None:
  """Replaces the section whose heading is `text`'s first line (or appends it) in `readme`."""
  heading = text.split('\n', 1)[0]
  old = open(readme).read() if os.path.exists(readme) else '# Benchmarks\n'
  start = old.find(heading + '\n')
  if start < 0:
    new = old.rstrip('\n') + '\n\n' + text.strip('\n') + '\n'
  else:
    end = old.find('\n## ', start + len(heading))
    new = old[:start] + text.strip('\n') + '\n' + ('\n' + old[end + 1:] if end >= 0 else '')
  files.write_text(readme, new)
