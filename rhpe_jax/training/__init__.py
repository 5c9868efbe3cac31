"""Training: state and optimiser, the pure pmapped steps, the loss, the loop.

`train_and_evaluate` (rhpe_jax.training.loop) is re-exported here, imported
when first asked for: the loop brings TensorFlow's data pipeline, which the
steps alone do not need.
"""
from __future__ import annotations

from typing import Any

__all__ = ['train_and_evaluate']


def __getattr__(name: str) -> Any:
  if name == 'train_and_evaluate':
    from rhpe_jax.training import loop  # pylint: disable=g-import-not-at-top
    return loop.train_and_evaluate
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
