"""Test setup: small XLA CPU compiles."""

import os

import jax

# Tests run tiny models a few times: compile time dominates, so skip most optimisations, here and
# in the training, sweep and experiment processes the tests start (they inherit the variable).
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', 'true')
jax.config.update('jax_disable_most_optimizations', True)
