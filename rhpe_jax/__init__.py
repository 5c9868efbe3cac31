"""Recurrent Human Pose Estimation in JAX/Flax.

Importing the package sets the project's XLA flags (rhpe_jax.runtime) before
any of its modules starts JAX.
"""
from rhpe_jax import runtime as _runtime

_runtime.configure_xla_flags()
