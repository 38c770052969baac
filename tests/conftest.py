"""Test setup: small XLA CPU compiles."""

import jax

# Tests run tiny models a few times: compile time dominates, so skip most optimisations.
jax.config.update('jax_disable_most_optimizations', True)
