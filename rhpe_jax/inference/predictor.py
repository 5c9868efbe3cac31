"""The one inference path: uint8 images -> network -> last stage -> keypoints.

`predict` is the computation (traceable: the training loop's summaries, the
AOT compiles, the export and the benchmarks trace it inside their own
functions); `predict_fn` is that computation compiled once per network a
config describes (`network_key`), on one device (jit) or over the local
devices (pmap, as evaluation runs it). With `flip`, the mirrored input's heat
maps are averaged in inside the compiled function (evaluation of a split);
everything after the network for images and person windows is
rhpe_jax.inference.topdown.

What the export needs of it (rhpe_jax.deploy.export): the last stage taken by
a slice, never by indexing (indexing lowers to a gather, which TFLite cannot
translate for a symbolic batch size), and only the outputs asked for traced.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rhpe_jax import model as model_lib
from rhpe_jax.codec import decode
from rhpe_jax.core import keypoint_sets

# What `predict` can return: keypoints (B, J, 2) in input pixels, confidence
# (B, J) (the maps' maxima, the paper's visibility score), the last stage's
# keypoint maps `heatmaps` (B, h, w, J) and body-part maps `part_maps`
# (B, h, w, P), and every stage's keypoint maps `stages` (S, B, h, w, J).
OUTPUTS = ('keypoints', 'confidence', 'heatmaps', 'part_maps', 'stages')
KEYPOINTS = ('keypoints', 'confidence')

# Config fields that do not change the network: configs that differ only in
# these share one compiled function.
DATA_FIELDS = ('dataset', 'data_dir', 'train_split', 'eval_split', 'num_eval_examples',
               'extra_train_datasets')


def last_stage(maps: jax.Array) -> jax.Array:
  """(S, B, ...) -> the last stage (B, ...), by a slice (see the module doc)."""
  return jax.lax.index_in_dim(maps, maps.shape[0] - 1, keepdims=False)


def predict(net: model_lib.RecurrentPoseNet, variables: Mapping[str, Any], images: jax.Array,
            *, flip_permutation: Sequence[int] | None = None,
            outputs: Sequence[str] = KEYPOINTS + ('heatmaps',)) -> dict[str, jax.Array]:
  """The network on uint8 images (B, S, S, 3) at inference; `outputs` of OUTPUTS.

  With `flip_permutation`, the last stage's maps are the mean of the image's
  and the un-mirrored maps of the mirrored image (`decode.merge_flipped`),
  and the keypoints are decoded from that mean.
  """
  unknown = [name for name in outputs if name not in OUTPUTS]
  if unknown:
    raise ValueError(f'unknown outputs {unknown}; choose from {", ".join(OUTPUTS)}')
  keypoint_maps, part_maps = net.apply(variables, model_lib.normalize_images(images),
                                       train=False)
  heatmaps = last_stage(keypoint_maps).astype(jnp.float32)
  if flip_permutation is not None:
    mirrored, _ = net.apply(variables, model_lib.normalize_images(images[:, :, ::-1]),
                            train=False)
    heatmaps = decode.merge_flipped(heatmaps, last_stage(mirrored).astype(jnp.float32),
                                    flip_permutation)
  out = {'heatmaps': heatmaps}
  if any(name in outputs for name in KEYPOINTS):
    out['keypoints'], out['confidence'] = decode.heatmaps_to_input(heatmaps, model_lib.STRIDE)
  if 'part_maps' in outputs:
    out['part_maps'] = last_stage(part_maps).astype(jnp.float32)
  if 'stages' in outputs:
    out['stages'] = keypoint_maps.astype(jnp.float32)
  return {name: out[name] for name in outputs}


def network_key(config: ml_collections.ConfigDict) -> str:
  """The config without its data fields, as sorted JSON: one compiled
  function per key."""
  fields = {k: v for k, v in config.to_dict().items() if k not in DATA_FIELDS}
  return json.dumps(fields, sort_keys=True, default=str)


def predict_fn(config: ml_collections.ConfigDict, *, flip: bool = False,
               outputs: Sequence[str] = KEYPOINTS, over_devices: bool = False):
  """`predict` of the config's network as (variables, uint8 images) -> outputs,
  compiled once per (network, flip, outputs): jitted for one device, or
  pmapped over the local devices with `over_devices` (replicated variables,
  images (D, B, S, S, 3); `replicate`)."""
  return _compiled(network_key(config), bool(flip), tuple(outputs), bool(over_devices))


@functools.lru_cache(maxsize=16)
def _compiled(key: str, flip: bool, outputs: tuple[str, ...], over_devices: bool):
  config = ml_collections.ConfigDict(json.loads(key))
  net = model_lib.create_model(config)
  permutation = keypoint_sets.of_config(config).flip_permutation if flip else None
  fn = functools.partial(predict, net, flip_permutation=permutation, outputs=outputs)
  return jax.pmap(fn) if over_devices else jax.jit(fn)


def replicate(tree: Any, axis_name: str | None = None) -> Any:
  """`tree` copied to every local device (stacked on a leading device axis),
  laid out as the outputs of a pmap over `axis_name` are: for a
  `predict_fn(over_devices=True)`, and for the training steps (their axis
  name, so that the second step does not compile the program again).

  Each device's copy lives in fresh host memory of its own: a CPU transfer may
  alias host memory instead of copying it, and with a stride-0 broadcast (or
  a view of another array's buffer) the devices would share memory that a
  donating step then overwrites in place.
  """
  count = jax.local_device_count()
  stacked = jax.tree_util.tree_map(lambda x: np.stack([np.array(x) for _ in range(count)]), tree)
  return _identity_pmap(axis_name)(stacked)


@functools.lru_cache(maxsize=None)
def _identity_pmap(axis_name: str | None):
  return jax.pmap(lambda tree: tree, axis_name=axis_name)
