"""Floating-point operations of the network, counted from its layer shapes.

XLA's cost analysis on GPU leaves out the convolutions it hands to cuDNN, so
the benchmark's GFLOP/image and MFU come from this count on every backend.
It follows XLA's conventions so that it can be checked against XLA's CPU cost
analysis: a multiply-add is 2 FLOPs, a convolution counts only the products
that touch real input (zero padding is free), and an elementwise operation or
one reduction step is 1 FLOP per element.

Per image, a convolution with 'same' padding costs
2 * Cin * Cout * taps(H, k) * taps(W, k), where taps(n, k) is the number of
(output position, kernel tap) pairs that fall inside an axis of length n. The
training step runs every convolution three times: forward, input gradient
(a convolution of the output gradient with the flipped kernel) and weight
gradient (a convolution of the input with the output gradient); both
gradients pair the same positions and taps, so each costs the forward's
FLOPs. The first layer's input gradient is not computed (the image is no
parameter).
"""
from __future__ import annotations

import dataclasses

from rhpe_jax.model import network as model_lib

# Elementwise FLOPs per output element of a layer, forward and backward,
# counted from the operations the layer applies (bias add, batch norm, ReLU).
BIAS_FORWARD = 1  # x + b
BIAS_BACKWARD = 1  # the bias gradient: a sum over the output elements
RELU_FORWARD = 1  # max(x, 0)
RELU_BACKWARD = 2  # compare, select
# Batch norm in training: mean (1), centre (1), square (1), variance sum (1),
# scale by rsqrt(var) (1), times gamma (1), plus beta (1).
BATCH_NORM_TRAIN_FORWARD = 7
# Its gradient: the sums of g and g * x_hat (2 + 1), and
# dx = gamma * rsqrt(var) * (g - mean(g) - x_hat * mean(g * x_hat)) (4), and
# the recomputation of x_hat (1).
BATCH_NORM_BACKWARD = 8
# Batch norm at inference: (x - mean) * (gamma * rsqrt(var)) + beta.
BATCH_NORM_INFERENCE = 3
# A 2x2 max-pool: 3 comparisons per output; its gradient selects one of 4
# inputs for each input element (compare and select: 2 per input element).
POOL_FORWARD_PER_OUTPUT = 3
POOL_BACKWARD_PER_INPUT = 2
# The loss sum(w * (p - t)^2) and its gradient 2 w (p - t) per predicted map
# element: the difference, its product with w, and the product with the
# difference summed; the gradient reuses w (p - t) (XLA counts 3).
LOSS_PER_MAP_ELEMENT = 3
# Per parameter and step: SGD with momentum (m = g + beta m; p -= lr m: 4)
# and the gradient's global norm in the metrics (square, sum: 2).
OPTIMIZER_PER_PARAMETER = 6


def taps(length: int, kernel: int) -> int:
  """(output, tap) pairs inside an axis of `length` under 'same' padding."""
  low = (kernel - 1) // 2
  return sum(min(length, o - low + kernel) - max(0, o - low) for o in range(length))


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """One convolution block at its resolution (per image)."""
  height: int
  width: int
  kernel: int
  in_features: int
  out_features: int
  batch_norm: bool
  relu: bool = True

  @property
  def outputs(self) -> int:
    return self.height * self.width * self.out_features

  @property
  def conv_flops(self) -> int:
    return (2 * self.in_features * self.out_features
            * taps(self.height, self.kernel) * taps(self.width, self.kernel))

  def elementwise_flops(self, train: bool) -> int:
    per_output = BIAS_FORWARD + RELU_FORWARD * self.relu
    if self.batch_norm:
      per_output += BATCH_NORM_TRAIN_FORWARD if train else BATCH_NORM_INFERENCE
    if train:
      per_output += BIAS_BACKWARD + RELU_BACKWARD * self.relu
      per_output += BATCH_NORM_BACKWARD * self.batch_norm
    return per_output * self.outputs


@dataclasses.dataclass(frozen=True)
class NetworkLayers:
  """The network's layers at one input size, per image.

  `convolutions` lists every convolution that inference runs (each fusion
  pass again, and the heads of the last stage only); `intermediate_heads` the
  heads of the earlier stages, which only training needs; `pools` the
  max-pools as (output height, output width, features); `parameters` the
  parameter count, each shared weight once.
  """
  convolutions: tuple[ConvLayer, ...]
  intermediate_heads: tuple[ConvLayer, ...]
  pools: tuple[tuple[int, int, int], ...]
  parameters: int
  map_elements: int  # predicted map elements of one stage


def network_layers(net: model_lib.RecurrentPoseNet, height: int, width: int) -> NetworkLayers:
  """The layers of `net` for (height, width) images; see NetworkLayers."""
  convs, intermediate_heads, pools = [], [], []
  parameters = 0

  def conv(h, w, kernel, features, out, bn, relu=True, shared_pass=False):
    nonlocal parameters
    layer = ConvLayer(h, w, kernel, features, out, bn, relu)
    if not shared_pass:  # weights, bias and batch-norm scale and offset
      parameters += kernel * kernel * features * out + out + 2 * out * bn
    return layer

  features = 3
  h, w = height, width
  for layer in model_lib.FEED_FORWARD_LAYERS:
    if layer == 'pool':
      h, w = h // 2, w // 2
      pools.append((h, w, features))
      continue
    kernel, out, bn = layer
    out = model_lib.scaled_features(out, net.width)
    convs.append(conv(h, w, kernel, features, out, bn))
    features = out
  skip = features
  for kernel, out, bn in model_lib.TRUNK_LAYERS:
    out = model_lib.scaled_features(out, net.width)
    convs.append(conv(h, w, kernel, features, out, bn))
    features = out
  map_counts = [count for count in (net.num_keypoints, net.num_parts) if count]
  heads = [conv(h, w, 1, features, count, False, net.relu_output) for count in map_counts]
  num_passes = net.num_iterations + 1
  state_features = features
  for index in range(num_passes):
    features = state_features + skip  # concat(skip, h)
    for kernel, out, bn in model_lib.FUSION_LAYERS:
      out = model_lib.scaled_features(out, net.width)
      convs.append(conv(h, w, kernel, features, out, bn, shared_pass=index > 0))
      features = out
    intermediate_heads += heads
    heads = [conv(h, w, 1, features, count, False, net.relu_output, shared_pass=index > 0)
             for count in map_counts]
    state_features = features
  return NetworkLayers(tuple(convs + heads), tuple(intermediate_heads), tuple(pools),
                       parameters, h * w * sum(map_counts))


def forward_flops(net: model_lib.RecurrentPoseNet, height: int, width: int,
                  batch: int = 1) -> int:
  """FLOPs of an inference forward pass (batch norm with running averages,
  only the last stage's heads) on `batch` images."""
  layers = network_layers(net, height, width)
  per_image = sum(layer.conv_flops + layer.elementwise_flops(train=False)
                  for layer in layers.convolutions)
  per_image += sum(POOL_FORWARD_PER_OUTPUT * h * w * c for h, w, c in layers.pools)
  return batch * per_image


def train_step_flops(net: model_lib.RecurrentPoseNet, height: int, width: int,
                     batch: int = 1) -> int:
  """FLOPs of a training step on `batch` images: the forward pass of every
  stage, the loss, the backward pass and the optimiser update (the targets'
  rendering is not counted)."""
  layers = network_layers(net, height, width)
  every_conv = layers.convolutions + layers.intermediate_heads
  per_image = sum(3 * layer.conv_flops + layer.elementwise_flops(train=True)
                  for layer in every_conv)
  per_image -= every_conv[0].conv_flops  # no gradient for the image
  per_image += sum((POOL_FORWARD_PER_OUTPUT + 4 * POOL_BACKWARD_PER_INPUT) * h * w * c
                   for h, w, c in layers.pools)
  stages = net.num_iterations + 2
  per_image += LOSS_PER_MAP_ELEMENT * stages * layers.map_elements
  return batch * per_image + OPTIMIZER_PER_PARAMETER * layers.parameters
