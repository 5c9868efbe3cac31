"""The network of the paper (`RecurrentPoseNet`), its convolution forms and FLOP count.

`RecurrentPoseNet`, `normalize_images`, `init_variables` and `create_model` (the
network a config describes) are re-exported
from `rhpe_jax.model.network`: the names users import.
"""
from rhpe_jax.model.network import RecurrentPoseNet, create_model, init_variables, normalize_images

__all__ = ['RecurrentPoseNet', 'create_model', 'init_variables', 'normalize_images']
