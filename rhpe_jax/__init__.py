"""Recurrent Human Pose Estimation in JAX/Flax.

    from rhpe_jax import PoseEstimator
    poses = PoseEstimator.from_workdir('runs/own').predict('photo.jpg')

Importing the package or any of its modules changes nothing in the process:
the project's XLA flags and its other settings for JAX and TensorFlow are
applied by `rhpe_jax.core.runtime.setup()`, which the command lines,
`PoseEstimator.from_workdir` and `rhpe_jax.training.train_and_evaluate` call
when they start. `PoseEstimator` is imported on first use (PEP 562), so that
importing the package imports neither JAX nor TensorFlow.
"""
__all__ = ['PoseEstimator', 'Poses']


def __getattr__(name: str):
  if name in __all__:
    from rhpe_jax.inference import estimator  # pylint: disable=g-import-not-at-top
    return getattr(estimator, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
