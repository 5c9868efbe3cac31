"""Settings shared by every configuration: the paper's MPII setting.

Other configs start from `get_config()` here and change what differs; the
values live in the library (rhpe_jax.core.config.default_config), where the
configs it writes itself (the MatConvNet import) find them too.
"""
import ml_collections

from rhpe_jax.core import config as config_lib


def get_config() -> ml_collections.ConfigDict:
  return config_lib.default_config()
