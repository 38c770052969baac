"""What a computation costs, as XLA counts it."""

import jax


def flops(fn, *args) -> float:
  """Floating-point operations of `fn(*args)` from XLA's cost analysis of the compiled
  program (NaN where the backend does not count them)."""
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', float('nan')))
