"""Recurrent Human Pose Estimation in JAX/Flax.

Importing the package sets the project's XLA flags (rhpe_jax.core.runtime) before
any of its modules starts JAX, and keeps JAX off an installed libtpu on a
machine without TPUs.
"""
from rhpe_jax.core import runtime as _runtime

_runtime.configure_xla_flags()
_runtime.skip_absent_tpu()
