"""The network of the paper (`RecurrentPoseNet`), its convolution forms and FLOP count.

`RecurrentPoseNet`, `normalize_images`, `init_variables`, `create_model` (the
network a config describes) and `STRIDE` (input pixels per heat-map pixel) are re-exported
from `rhpe_jax.model.network`: the names users import.
"""
from rhpe_jax.model.network import (STRIDE, RecurrentPoseNet, create_model, init_variables,
                                    normalize_images)

__all__ = ['STRIDE', 'RecurrentPoseNet', 'create_model', 'init_variables', 'normalize_images']
