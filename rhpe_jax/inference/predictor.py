"""The one inference path: uint8 images -> network -> last stage -> keypoints.

`predict` is the computation (traceable: the training loop's summaries, the
AOT compiles, the export and the benchmarks trace it inside their own
functions); `predict_fn` is that computation compiled once per network a
config describes (`network_key`), on one device (jit) or over the local
devices (pmap, as evaluation runs it). Test-time augmentation: the mirrored
input's heat maps (`flip`) inside the compiled function, and other box scales'
heat maps brought to the scale-1 grid (`grid_to_grid_affine`,
`resample_heatmaps`) before they are averaged.

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
from rhpe_jax.core import skeleton

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


def decode_heatmaps(heatmaps: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Heat maps (..., h, w, J) -> keypoints (..., J, 2) in input pixels and
  confidences (..., J)."""
  coords, confidence = decode.heatmaps_to_keypoints(heatmaps)
  return decode.grid_to_input(coords, model_lib.STRIDE), confidence


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
    out['keypoints'], out['confidence'] = decode_heatmaps(heatmaps)
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
  permutation = skeleton.of_config(config).flip_permutation if flip else None
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


def grid_to_grid_affine(target_input_to_image: np.ndarray,
                        source_input_to_image: np.ndarray, stride: int = 4) -> np.ndarray:
  """(..., 2, 3) map from the target crop's heat-map grid to the source crop's.

  Both crops see one original image through their `input_to_image`; a target
  grid pixel goes grid -> input -> image (target), then image -> input -> grid
  (source); rows whose source affine is singular (batch padding) get the
  identity. Used to bring the heat maps of another box scale into the scale-1
  frame before averaging.
  """
  def hom(a):
    a = np.asarray(a, np.float64)
    last = np.broadcast_to(np.array([0.0, 0.0, 1.0]), a.shape[:-2] + (1, 3))
    return np.concatenate([a, last], axis=-2)

  # grid -> input: x_in = s x + (s - 1) / 2; its inverse x = (x_in - (s - 1) / 2) / s.
  g2i = np.array([[stride, 0, (stride - 1) / 2], [0, stride, (stride - 1) / 2], [0, 0, 1.0]])
  i2g = np.linalg.inv(g2i)
  source = hom(source_input_to_image)
  # Padding rows of a batch have all-zero affines: map them to the identity.
  singular = np.abs(np.linalg.det(source)) < 1e-12
  source = np.where(singular[..., None, None], np.eye(3), source)
  full = i2g @ np.linalg.inv(source) @ hom(target_input_to_image) @ g2i
  full = np.where(singular[..., None, None], np.eye(3), full)
  return full[..., :2, :]


@jax.jit
def resample_heatmaps(heatmaps: jnp.ndarray, affine: jnp.ndarray) -> jnp.ndarray:
  """Heat maps (B, h, w, J) sampled (bilinear, 0 outside) at `affine` (B, 2, 3)
  applied to every pixel centre of a (h, w) output grid."""
  heatmaps = jnp.asarray(heatmaps)
  height, width = heatmaps.shape[1:3]
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing='ij')

  def one(maps, a):
    sx = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
    sy = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
    sample = lambda m: jax.scipy.ndimage.map_coordinates(m, [sy, sx], order=1,
                                                         mode='constant', cval=0.0)
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(maps)

  return jax.vmap(one)(heatmaps, jnp.asarray(affine, jnp.float32))
