"""The network of the paper (`RecurrentPoseNet`), its convolution forms and FLOP count.

`RecurrentPoseNet`, `normalize_images` and `init_variables` are re-exported
from `rhpe_jax.model.network`: the names users import.
"""
from rhpe_jax.model.network import RecurrentPoseNet, init_variables, normalize_images

__all__ = ['RecurrentPoseNet', 'init_variables', 'normalize_images']
