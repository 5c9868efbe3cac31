"""Recurrent Human Pose Estimation in JAX/Flax.

Importing the package or any of its modules changes nothing in the process:
the project's XLA flags and its other settings for JAX and TensorFlow are
applied by `rhpe_jax.core.runtime.setup()`, which the command lines and
`rhpe_jax.training.train_and_evaluate` call when they start.
"""
