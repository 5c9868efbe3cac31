"""The recurrent pose network of Belagiannis & Zisserman (FG 2017) in Flax linen.

A feed-forward module turns a (B, H, W, 3) image into a 128-channel skip
feature and a 256-channel state `h0` at H/4 x W/4. A fusion module, applied
`num_iterations + 1` times to concat(skip, h), refines the state. Every pass
runs the same convolution weights (`flax.linen.scan` with the parameters
broadcast, so they are stored once) while batch-norm statistics are kept per
pass (the `batch_stats` collection is stacked along the scan axis). The
batch-norm scale and offset are parameters and hence shared too: 17,246,910
parameters for the reference network. The authors' release keeps a scale and
offset per pass (17,247,934 parameters); `batch_norm_per_pass=True` builds
that network, so that their trained weights load one to one
(rhpe_jax.interop.matconvnet).

Outputs are supervised after the feed-forward module (its own heads) and
after every fusion pass (one set of heads shared by all passes), so the model
returns `num_iterations + 2` stages; the last one is the prediction.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from rhpe_jax.core import config as config_lib
from rhpe_jax.core import keypoint_sets
from rhpe_jax.model import conv
from rhpe_jax.model import pooling

Dtype = Any

# (kernel, features, batch_norm) of the feed-forward module; 'pool' is a 2x2
# max-pool with stride 2. Layer 6 (the last 3x3 conv) gives the skip feature.
FEED_FORWARD_LAYERS = (
    (3, 64, True), (3, 64, True), 'pool',
    (3, 64, True), (3, 128, True), 'pool',
    (3, 128, True), (3, 128, True),
)
TRUNK_LAYERS = ((9, 256, True), (9, 512, True), (1, 256, False), (1, 256, False))
FUSION_LAYERS = ((7, 64, True), (13, 64, True), (13, 128, True), (1, 256, False))
STATE_FEATURES = 256
SKIP_FEATURES = 128
BATCH_NORM_EPSILON = 1e-5
# Input pixels per heat-map pixel: each 'pool' of the feed-forward module halves the grid.
STRIDE = 2 ** FEED_FORWARD_LAYERS.count('pool')

# He-normal initialisation suits the ReLU after every convolution.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')


# The network's input range: (pixel - PIXEL_MEAN) / PIXEL_SCALE.
PIXEL_MEAN = 128.0
PIXEL_SCALE = 256.0


def normalize_images(images: jax.Array) -> jax.Array:
  """uint8 (or float 0-255) RGB to the network's input range: (x - 128) / 256."""
  return (images.astype(jnp.float32) - PIXEL_MEAN) / PIXEL_SCALE


def scaled_features(features: int, width: float) -> int:
  """Channel count of a layer in a network `width` times as wide (at least 1)."""
  return max(1, int(round(features * width)))


class ConvBlock(nn.Module):
  """Convolution, optional batch norm, ReLU ('same' padding, stride 1).

  With `batch_norm_folded` the batch norm is left out: its inference-time
  affine map is part of the convolution's weights (rhpe_jax.deploy.export).
  `tuned_convolutions`: see `RecurrentPoseNet`.
  """

  features: int
  kernel: int
  use_batch_norm: bool
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  batch_norm_folded: bool = False
  tuned_convolutions: bool = True

  @nn.compact
  def __call__(self, x: jax.Array | tuple[jax.Array, ...], train: bool,
               scale_offset: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """`x`: an input, or inputs to convolve as their channel concatenation.

    `scale_offset`: the batch norm's scale and offset, given from outside
    (per-pass parameters, `PassScaleOffset`) instead of its own; with
    `batch_norm_folded`, the whole batch norm as that affine map.
    """
    # The release keeps a bias before batch norm too; it is redundant but is
    # part of the reference parameter count.
    x = conv.Conv(self.features, (self.kernel, self.kernel), dtype=self.dtype,
                  kernel_init=conv_init, tuned_convolutions=self.tuned_convolutions)(
                      *(x if isinstance(x, tuple) else (x,)))
    if self.use_batch_norm and not self.batch_norm_folded:
      own = scale_offset is None
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       epsilon=BATCH_NORM_EPSILON, dtype=self.dtype,
                       use_scale=own, use_bias=own,
                       axis_name=self.axis_name if train else None)(x)
    if scale_offset is not None:  # after the normalisation, or the folded batch norm itself
      scale, offset = scale_offset
      x = x * scale.astype(x.dtype) + offset.astype(x.dtype)
    return nn.relu(x)


class PassScaleOffset(nn.Module):
  """Batch-norm scale and offset of one fusion layer, one row per pass:
  `scale` and `bias` (passes, features), as the authors' release keeps them."""

  num_passes: int
  features: int

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    shape = (self.num_passes, self.features)
    return (self.param('scale', nn.initializers.ones, shape, jnp.float32),
            self.param('bias', nn.initializers.zeros, shape, jnp.float32))


class Heads(nn.Module):
  """1x1 convolutions to keypoint and body-part maps.

  The paper follows them with ReLU. A ReLU output channel that an update
  pushes below zero everywhere never receives gradient again (seen on small
  networks trained with Adam), so `relu_output=False` leaves them linear.
  `tuned_convolutions`: see `RecurrentPoseNet`.
  """

  num_keypoints: int
  num_parts: int
  dtype: Dtype = jnp.float32
  relu_output: bool = True
  tuned_convolutions: bool = True

  @nn.compact
  def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    activation = nn.relu if self.relu_output else (lambda x: x)
    head = functools.partial(conv.Conv, kernel_size=(1, 1), dtype=self.dtype,
                             kernel_init=conv_init, tuned_convolutions=self.tuned_convolutions)
    keypoints = activation(head(self.num_keypoints, name='keypoints')(h))
    if self.num_parts:
      parts = activation(head(self.num_parts, name='parts')(h))
    else:
      parts = jnp.zeros(h.shape[:-1] + (0,), keypoints.dtype)
    return keypoints, parts


class FusionScaleOffsets(nn.Module):
  """`PassScaleOffset` of every batch-normalised fusion layer, by the name
  of its ConvBlock in `FusionPass`."""

  num_passes: int
  width: float = 1.0

  @nn.compact
  def __call__(self) -> dict[str, tuple[jax.Array, jax.Array]]:
    return {f'ConvBlock_{k}': PassScaleOffset(self.num_passes, scaled_features(features, self.width),
                                              name=f'ConvBlock_{k}')()
            for k, (_, features, bn) in enumerate(FUSION_LAYERS) if bn}


class FeedForward(nn.Module):
  """Layers 1-10: returns the skip feature (layer 6) and the first state h0."""

  width: float = 1.0
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  batch_norm_folded: bool = False
  tuned_convolutions: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    block = functools.partial(ConvBlock, dtype=self.dtype, axis_name=self.axis_name,
                              batch_norm_folded=self.batch_norm_folded,
                              tuned_convolutions=self.tuned_convolutions)
    for layer in FEED_FORWARD_LAYERS:
      if layer == 'pool':
        x = pooling.max_pool_2x2(x)
      else:
        kernel, features, bn = layer
        x = block(scaled_features(features, self.width), kernel, bn)(x, train)
    skip = x
    for kernel, features, bn in TRUNK_LAYERS:
      x = block(scaled_features(features, self.width), kernel, bn)(x, train)
    return skip, x


class FusionPass(nn.Module):
  """One pass of the recurrent module: (h, skip) -> next h and its heat maps.

  Written as a scan body: `carry` is the state h, `skip` is broadcast.
  """

  num_keypoints: int
  num_parts: int
  width: float = 1.0
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  relu_output: bool = True
  batch_norm_folded: bool = False
  tuned_convolutions: bool = True

  @nn.compact
  def __call__(self, h: jax.Array, skip: jax.Array, train: bool,
               scale_offsets: dict[str, tuple[jax.Array, jax.Array]] | None = None):
    """`scale_offsets`: this pass's batch-norm scale and offset per layer
    ('ConvBlock_k'), when they are kept per pass; None: the layers' own."""
    block = functools.partial(ConvBlock, dtype=self.dtype, axis_name=self.axis_name,
                              batch_norm_folded=self.batch_norm_folded,
                              tuned_convolutions=self.tuned_convolutions)
    # concat(skip, h) as a pair: the skip part of the first convolution is the
    # same in every pass, and XLA computes it once (rhpe_jax.model.conv.Conv).
    x = (skip, h)
    for k, (kernel, features, bn) in enumerate(FUSION_LAYERS):
      given = (scale_offsets or {}).get(f'ConvBlock_{k}')
      x = block(scaled_features(features, self.width), kernel, bn,
                name=f'ConvBlock_{k}')(x, train, given)
    maps = Heads(self.num_keypoints, self.num_parts, self.dtype, self.relu_output,
                 self.tuned_convolutions, name='heads')(x)
    return x, maps


class RecurrentPoseNet(nn.Module):
  """The full network; see the module docstring.

  Attributes:
    num_keypoints: keypoint maps (16 for MPII, 14 for LSP).
    num_parts: body-part maps (15 for MPII); 0 turns the part heads off.
    num_iterations: recurrent iterations as counted in the paper; the
      network makes num_iterations + 1 fusion passes.
    width: channel multiplier for every hidden layer (1.0 = the paper's).
    dtype: compute dtype (bfloat16/float16 for mixed precision); parameters
      stay float32.
    axis_name: a pmap/shard_map axis over which batch statistics are
      averaged during training, so they cover the global batch.
    remat: recompute each fusion pass in the backward pass (saves memory).
    unroll: fusion passes unrolled per scan step; None unrolls the whole
      loop (XLA on CPU is ~80x slower at the gradient of a rolled loop of
      convolutions, JAX issue 12868), 1 keeps it rolled.
    relu_output: ReLU after the prediction layers, as in the paper.
    batch_norm_folded: the inference network of rhpe_jax.deploy.export: no batch
      norm layers. Their affine maps are folded into the feed-forward
      convolutions; the fusion convolutions stay shared (stored once), and
      since every fusion pass has statistics of its own, each pass applies
      its batch norm after them as a scale and offset of its own
      ('fusion_batch_norm', as `batch_norm_per_pass` keeps them).
    batch_norm_per_pass: the fusion passes keep a batch-norm scale and
      offset of their own (params 'fusion_batch_norm', (passes, C) each), as
      the authors' release does; the convolutions stay shared. False (the
      default) shares them like every other fusion parameter.
    tuned_convolutions: run each convolution in the form rhpe_jax.model.conv's
      table names for its platform and shape (on CPU the 9x9 float32 layers
      by Winograd's algorithm, rhpe_jax.model.winograd: the training step is ~1.3x
      faster). Exported networks turn it off: the runtimes that load them
      bring their own convolution kernels.
  """

  num_keypoints: int = 16
  num_parts: int = 15
  num_iterations: int = 2
  width: float = 1.0
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  remat: bool = False
  unroll: int | None = None
  relu_output: bool = True
  batch_norm_folded: bool = False
  batch_norm_per_pass: bool = False
  tuned_convolutions: bool = True

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False
               ) -> tuple[jax.Array, jax.Array]:
    """(B, H, W, 3) normalised images -> (keypoint_maps, part_maps).

    Each output is (num_iterations + 2, B, H/4, W/4, C): the feed-forward
    head first, then one entry per fusion pass.
    """
    if self.num_iterations < 0:
      raise ValueError(f'num_iterations must be >= 0, got {self.num_iterations}')
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'images must be (B, H, W, 3), got shape {images.shape}')
    if images.shape[1] % 4 or images.shape[2] % 4:
      raise ValueError(f'image height and width must be multiples of 4, got {images.shape[1:3]}')
    x = images.astype(self.dtype)
    skip, h = FeedForward(self.width, self.dtype, self.axis_name, self.batch_norm_folded,
                          self.tuned_convolutions, name='feed_forward')(x, train)
    first = Heads(self.num_keypoints, self.num_parts, self.dtype, self.relu_output,
                  self.tuned_convolutions, name='heads_0')(h)

    num_passes = self.num_iterations + 1
    scan_inputs = (h, skip, train)
    in_axes = (nn.broadcast, nn.broadcast)
    if self.batch_norm_per_pass or self.batch_norm_folded:
      # a scanned input: row p is pass p's scale and offset
      scan_inputs += (FusionScaleOffsets(num_passes, self.width, name='fusion_batch_norm')(),)
      in_axes += (0,)
    body = nn.remat(FusionPass, static_argnums=(3,)) if self.remat else FusionPass
    # One set of weights for every pass; batch statistics (when there are) per pass.
    variables = {'variable_broadcast': 'params', 'split_rngs': {'params': False}}
    if not self.batch_norm_folded:
      variables['variable_axes'] = {'batch_stats': 0}
    fusion = nn.scan(
        body,
        in_axes=in_axes,
        length=num_passes,
        # 0 unrolls every pass: lax.scan keeps a one-pass loop rolled for
        # unroll=1 (num_iterations=0), where the CPU gradient is ~80x slower.
        unroll=0 if self.unroll is None else self.unroll,
        **variables,
    )(self.num_keypoints, self.num_parts, self.width, self.dtype, self.axis_name,
      self.relu_output, self.batch_norm_folded, self.tuned_convolutions, name='fusion')
    _, (keypoints, parts) = fusion(*scan_inputs)
    keypoint_maps = jnp.concatenate([first[0][None], keypoints], axis=0)
    part_maps = jnp.concatenate([first[1][None], parts], axis=0)
    return keypoint_maps, part_maps


def count_parameters(params: Any) -> int:
  """Number of scalars in a parameter tree."""
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))


def init_variables(model: RecurrentPoseNet, rng: jax.Array,
                   image_shape: Sequence[int] = (1, 248, 248, 3)) -> dict:
  """Initial variables ({'params', 'batch_stats'}) for images of `image_shape`."""
  return jax.jit(functools.partial(model.init, train=False))(
      rng, jnp.zeros(image_shape, jnp.float32))


# config.compute_dtype -> the dtype the network computes in (parameters stay float32).
COMPUTE_DTYPES = {name: getattr(jnp, name) for name in config_lib.COMPUTE_DTYPES}


def create_model(config: ml_collections.ConfigDict, axis_name: str | None = None
                 ) -> RecurrentPoseNet:
  """The network a config describes."""
  keypoint_set = keypoint_sets.of_config(config)
  if config.compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f'compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, '
                     f'got {config.compute_dtype!r}')
  return RecurrentPoseNet(
      num_keypoints=keypoint_set.num_keypoints,
      num_parts=keypoint_set.num_parts if config.use_parts else 0,
      num_iterations=config.num_iterations,
      width=config.width,
      dtype=COMPUTE_DTYPES[config.compute_dtype],
      axis_name=axis_name,
      remat=config.remat,
      unroll=config.scan_unroll or None,
      relu_output=config.relu_output,
      batch_norm_per_pass=config.get('batch_norm_per_pass', False))
