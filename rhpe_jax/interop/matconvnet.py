"""The authors' trained networks (MatConvNet DagNN .mat files) as Flax variables.

ox-vgg/keypoint_models releases keypoint-v3.mat (the FG 2017 model) and
keypoint-v4.mat: a `dagnn.DagNN` saved through `saveobj`, i.e. a struct of
`layers` (name, type, inputs, outputs, params, block), `params` (name,
value, ...), `vars` and `meta`. The network is the one
`initialize3ObjeRecFusion(opts, 3, 0, 'shareFlag', [0 1 1])` builds
(../shared/docs/authors_release_format.md): SimpleNN layers `layer1..layer30`
with batch norms `bn1..bn8`, heads `conv1_A/B`, and per fusion pass i
`skip_maps<i>`, `fu_<i>_conv<k>`, `fu_<i>_<k>_bn`, `relu_fu_<i>_<k>` and the
heads `conv<i+1>_key/_part`. The passes share the convolutions (`fu_1_*`) and
the heads (`conv2_A/B`) but each has batch norms of its own.

`expected_network(arch)` spells that network out for a width and a number of
passes; `check` compares a file against it by name (layers, their wiring
through their producers, parameters and shapes, block settings) and lists
every difference in one error; `to_flax` maps the parameters one to one onto
`RecurrentPoseNet(batch_norm_per_pass=True)`.

Why a model option rather than the folded inference network: the per-pass
batch norm is the one thing the project's network shares and the release
does not, and keeping its scale and offset per pass (`batch_norm_per_pass`)
makes every MatConvNet array exactly one Flax array (kernels as they are,
vectors flattened, moments [mean, sigma] as mean and sigma^2 - eps), with the
parameter count of the release (17,247,934) as a self-check. The checkpoint
is then an ordinary training checkpoint: predict, evaluate and export take it
as any other (export folds it), and fine-tuning trains the authors' network
itself. A folded import would hold 23.8 M parameters without batch norm: a
different network to train, and a second checkpoint layout for every tool.

Kernel layout: MatConvNet's `vl_nnconv` is a correlation over filters
[H W In Out], Flax's convolution is a correlation over HWIO kernels: the
values carry over with neither a flip nor a transpose. Batch norm at test
time is `G / sigma * (x - mu) + B` with moments [mu, sigma] (MatConvNet does
not add epsilon when the moments are given); Flax computes
`scale * (x - mean) / sqrt(var + eps) + bias`, so var = sigma^2 - eps.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import re
import shutil
from typing import Any, Callable, Iterable

import jax
import ml_collections
import numpy as np

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import mat_files
from rhpe_jax.model import network as model_lib

CONV, BN, RELU, POOL, CONCAT = ('dagnn.Conv', 'dagnn.BatchNorm', 'dagnn.ReLU',
                                'dagnn.Pooling', 'dagnn.Concat')
LOSS_TYPES = ('dagnn.RegLoss', 'dagnn.Loss')  # training-only layers, no parameters
KNOWN_TYPES = (CONV, BN, RELU, POOL, CONCAT) + LOSS_TYPES
INPUT = 'input'  # the network's input variable (fromSimpleNN's canonical name)
NUM_KEYPOINTS, NUM_PARTS = 16, 15  # MPII's joints and the release's body parts

RESAVE_HINT = ("in MATLAB with MatConvNet on the path, re-save it as a struct: "
               "load(f); if ~isstruct(net), net = net.saveobj(); end; save(f2, 'net', '-v7')")


class MatConvNetError(ValueError):
  """A file that is not the authors' network; the message lists every difference."""


@dataclasses.dataclass(frozen=True)
class Architecture:
  """What varies between files of the authors' network builder."""
  width: float = 1.0  # channel multiplier (1 = the release)
  passes: int = 3  # fusion passes (`skip_maps<i>` layers) = num_iterations + 1
  num_keypoints: int = NUM_KEYPOINTS
  num_parts: int = NUM_PARTS

  def features(self, count: int) -> int:
    return model_lib.scaled_features(count, self.width)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One layer of the network: inputs named by the layers that produce them
  (or INPUT), parameters by name, the block settings that must hold."""
  name: str
  type: str
  producers: tuple[str, ...]
  params: tuple[str, ...] = ()
  kernel: tuple[int, int, int, int] | None = None  # Conv: [h w in out]
  channels: int | None = None  # BatchNorm


@dataclasses.dataclass
class Network:
  """The expected layers (in order) and parameter shapes, and the names of
  the layers whose outputs are the keypoint and part maps of every stage."""
  layers: dict[str, LayerSpec]
  param_shapes: dict[str, tuple[int, ...]]
  keypoint_outputs: list[str]  # layer names, one per stage
  part_outputs: list[str]


def expected_network(arch: Architecture) -> Network:
  """The network `initialize3ObjeRecFusion` builds, at `arch`'s width and passes."""
  layers: dict[str, LayerSpec] = {}
  shapes: dict[str, tuple[int, ...]] = {}

  def add(spec: LayerSpec) -> str:
    layers[spec.name] = spec
    return spec.name

  def conv(name, producer, kernel, cin, cout, params):
    shapes.setdefault(params[0], (kernel, kernel, cin, cout))
    shapes.setdefault(params[1], (1, cout))
    return add(LayerSpec(name, CONV, (producer,), tuple(params), (kernel, kernel, cin, cout)))

  def batch_norm(name, producer, channels, prefix):
    names = (f'{prefix}m', f'{prefix}b', f'{prefix}x') if prefix.startswith('bn') else (
        f'{prefix}_m', f'{prefix}_b', f'{prefix}_x')
    shapes.update({names[0]: (channels, 1), names[1]: (channels, 1), names[2]: (channels, 2)})
    return add(LayerSpec(name, BN, (producer,), names, channels=channels))

  # The SimpleNN part: layer l maps x<l-1> to x<l>, named layer<l> or bn<k>.
  simple = list(model_lib.FEED_FORWARD_LAYERS) + list(model_lib.TRUNK_LAYERS)
  producer, channels, index, norms, skip = INPUT, 3, 0, 0, None
  for position, layer in enumerate(simple):
    if layer == 'pool':
      index += 1
      producer = add(LayerSpec(f'layer{index}', POOL, (producer,)))
      continue
    kernel, features, use_bn = layer
    features = arch.features(features)
    index += 1
    producer = conv(f'layer{index}', producer, kernel, channels, features,
                    (f'layer{index}f', f'layer{index}b'))
    if use_bn:
      index += 1
      norms += 1
      producer = batch_norm(f'bn{norms}', producer, features, f'bn{norms}')
    index += 1
    producer = add(LayerSpec(f'layer{index}', RELU, (producer,)))
    channels = features
    if position == len(model_lib.FEED_FORWARD_LAYERS) - 1:
      skip, skip_channels = producer, channels

  keypoint_outputs, part_outputs = [], []

  def heads(idx, producer, channels, shared):
    prefix = 'conv2' if shared else f'conv{idx}'
    kp = conv(f'conv{idx}_key', producer, 1, channels, arch.num_keypoints,
              (f'{prefix}_A_filters', f'{prefix}_A_biases'))
    keypoint_outputs.append(add(LayerSpec(f'relu{idx}_A', RELU, (kp,))))
    if arch.num_parts:
      part = conv(f'conv{idx}_part', producer, 1, channels, arch.num_parts,
                  (f'{prefix}_B_filters', f'{prefix}_B_biases'))
      part_outputs.append(add(LayerSpec(f'relu{idx}_B', RELU, (part,))))

  heads(1, producer, channels, shared=False)
  state, state_channels = producer, channels
  for i in range(1, arch.passes + 1):
    producer = add(LayerSpec(f'skip_maps{i}', CONCAT, (skip, state)))
    channels = skip_channels + state_channels
    for k, (kernel, features, use_bn) in enumerate(model_lib.FUSION_LAYERS, start=1):
      features = arch.features(features)
      producer = conv(f'fu_{i}_conv{k}', producer, kernel, channels, features,
                      (f'fu_1_{k}_filters', f'fu_1_{k}_biases'))
      if use_bn:
        producer = batch_norm(f'fu_{i}_{k}_bn', producer, features, f'fu_{i}_{k}_bn')
      producer = add(LayerSpec(f'relu_fu_{i}_{k}', RELU, (producer,)))
      channels = features
    heads(i + 1, producer, channels, shared=True)
    state, state_channels = producer, channels
  return Network(layers, shapes, keypoint_outputs, part_outputs)


# ----------------------------------------------------------------------------
# Reading


def _text(value: Any) -> str:
  if isinstance(value, str):
    return value
  if isinstance(value, list) and len(value) == 1:
    return _text(value[0])
  if isinstance(value, np.ndarray) and value.size == 0:
    return ''
  return str(value)


def _names(value: Any) -> list[str]:
  """A cell of names ({} -> [])."""
  if isinstance(value, str):
    return [value] if value else []
  if isinstance(value, np.ndarray) and value.size == 0:
    return []
  return [_text(v) for v in value]


def _struct(value: Any) -> dict[str, Any]:
  """A 1x1 struct (or a dict) as a dict."""
  if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
    return value[0]
  if isinstance(value, dict):
    return value
  if value is None or (isinstance(value, list) and all(v is None for v in value)):
    return {}  # struct() without fields (scipy reads it as an empty object)
  if isinstance(value, np.ndarray) and value.size == 0:
    return {}
  raise MatConvNetError(f'expected a struct, got {type(value).__name__}')


def _dagnn_from(variables: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
  """The saved DagNN struct among a file's variables, and how it was stored."""
  net = variables.get('net')
  if isinstance(net, mat_files.MatlabObject):
    props = net.properties
    if props is None:
      return None, f'object of class {net.classname}'
    struct = props.get('any', props)  # saveobj's return value is kept as 'any'
    struct = _struct(struct) if not isinstance(struct, dict) else struct
    return struct, f'{net.classname} object'
  if net is not None:
    return _struct(net), 'struct `net`'
  if 'layers' in variables and 'params' in variables:
    return variables, 'top-level fields'
  return None, ''


def load_dagnn(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
  """The saved DagNN struct of a file ({'layers': [...], 'params': [...], ...})
  and a description of how the file stores it."""
  path = str(path)
  hdf5 = mat_files.is_hdf5(path) if os.path.isfile(path) else False
  version = 'MAT v7.3' if hdf5 else 'MAT v5'
  variables = mat_files.read_variables(path)
  opaque = [v for v in variables.values() if isinstance(v, mat_files.MatlabObject)]
  struct, how = _dagnn_from(variables)
  if struct is None and opaque:
    decoded = mat_files.decode_objects(path)
    if decoded is None:
      raise MatConvNetError(
          f'{path} stores the network as a MATLAB object ({opaque[0].classname}), which '
          f"needs the mat-io package (pip install mat-io); or {RESAVE_HINT}")
    struct, how = _dagnn_from(decoded)
    if struct is None:
      raise MatConvNetError(f'{path} holds a MATLAB object that mat-io could not decode into a '
                         f'DagNN struct; {RESAVE_HINT}')
  if struct is None:
    raise MatConvNetError(f"{path} holds no MatConvNet network: no variable 'net' and no "
                       f"top-level 'layers' and 'params' (variables: {sorted(variables)})")
  missing = [f for f in ('layers', 'params') if f not in struct]
  if missing:
    raise MatConvNetError(f'{path}: the network struct has no {" or ".join(missing)} field '
                       f'(fields: {sorted(struct)})')
  return struct, f'{version}, {how}'


@dataclasses.dataclass
class Layer:
  name: str
  type: str
  inputs: list[str]
  outputs: list[str]
  params: list[str]
  block: dict[str, Any]


def parse_layers(struct: dict[str, Any]) -> list[Layer]:
  layers = []
  for entry in struct['layers']:
    layers.append(Layer(_text(entry.get('name', '')), _text(entry.get('type', '')),
                        _names(entry.get('inputs', [])), _names(entry.get('outputs', [])),
                        _names(entry.get('params', [])), _struct(entry.get('block', {}))))
  return layers


def parse_params(struct: dict[str, Any]) -> dict[str, np.ndarray]:
  params = {}
  for entry in struct['params']:
    params[_text(entry.get('name', ''))] = np.asarray(entry.get('value'))
  return params


def infer_architecture(layers: list[Layer], params: dict[str, np.ndarray]) -> Architecture:
  """Width from layer1's filters, passes from the `skip_maps<i>` layers, map
  counts from the first heads; what cannot be read keeps the release's value
  (and `check` then reports the difference)."""
  def out_channels(name):
    value = params.get(name)
    return int(value.shape[3]) if value is not None and value.ndim == 4 else None
  first = out_channels('layer1f')
  passes = [int(m.group(1)) for m in (re.fullmatch(r'skip_maps(\d+)', l.name) for l in layers) if m]
  keypoints = out_channels('conv1_A_filters')
  parts = out_channels('conv1_B_filters')
  if parts is None and 'conv1_B_filters' not in params:
    parts = 0
  return Architecture(width=first / 64 if first else 1.0,
                      passes=max(passes) if passes else 3,
                      num_keypoints=keypoints or NUM_KEYPOINTS,
                      num_parts=NUM_PARTS if parts is None else parts)


# ----------------------------------------------------------------------------
# Checking


def _numbers(value: Any) -> list[float] | None:
  try:
    return [float(v) for v in np.asarray(value, np.float64).ravel()]
  except (TypeError, ValueError):
    return None


def _block_problems(layer: Layer, spec: LayerSpec) -> list[str]:
  block = layer.block

  def differs(field, expected, default_ok=True):
    """`field` (expanded like MatConvNet's setters) is not `expected`."""
    if field not in block:
      return not default_ok
    values = _numbers(block[field])
    if values is None:
      return True
    if len(values) == 1:
      values = values * len(expected)
    return values != [float(e) for e in expected]

  problems = []
  if spec.type == CONV:
    h, w, cin, cout = spec.kernel
    pad = (h - 1) // 2
    if differs('size', spec.kernel, default_ok=False):
      problems.append(f'size {_show(block.get("size"))} (expected {list(spec.kernel)})')
    if differs('pad', (pad, pad, pad, pad)):
      problems.append(f'pad {_show(block.get("pad"))} (expected {[pad] * 4})')
    if differs('stride', (1, 1)):
      problems.append(f'stride {_show(block.get("stride"))} (expected [1, 1])')
    if differs('dilate', (1, 1)):
      problems.append(f'dilate {_show(block.get("dilate"))} (expected [1, 1])')
    if 'hasBias' in block and not bool(np.asarray(block['hasBias']).ravel().all()):
      problems.append('hasBias false (expected true)')
  elif spec.type == POOL:
    if 'method' in block and _text(block['method']) != 'max':
      problems.append(f'method {_text(block["method"])!r} (expected max)')
    if differs('poolSize', (2, 2), default_ok=False):
      problems.append(f'poolSize {_show(block.get("poolSize"))} (expected [2, 2])')
    if differs('stride', (2, 2), default_ok=False):
      problems.append(f'stride {_show(block.get("stride"))} (expected [2, 2])')
    if differs('pad', (0, 0, 0, 0)):
      problems.append(f'pad {_show(block.get("pad"))} (expected [0, 0, 0, 0])')
    if differs('dilate', (1, 1)):
      problems.append(f'dilate {_show(block.get("dilate"))} (expected [1, 1])')
  elif spec.type == RELU:
    if differs('leak', (0,)):
      problems.append(f'leak {_show(block.get("leak"))} (expected 0)')
  elif spec.type == CONCAT:
    if differs('dim', (3,)):
      problems.append(f'dim {_show(block.get("dim"))} (expected 3)')
  return [f'{layer.name}: {p}' for p in problems]


def _show(value: Any) -> str:
  numbers = _numbers(value)
  if numbers is None:
    return repr(value)
  return str([int(v) if v == int(v) else v for v in numbers])


def _trimmed(shape: Iterable[int]) -> tuple[int, ...]:
  """A MATLAB shape without trailing singleton dimensions (MATLAB drops them)."""
  shape = list(shape)
  while len(shape) > 2 and shape[-1] == 1:
    shape.pop()
  return tuple(shape)


def _shape_fits(actual: tuple[int, ...], expected: tuple[int, ...]) -> bool:
  if len(expected) == 2 and 1 in expected:  # a vector: 1xC or Cx1 both carry it
    return int(np.prod(actual)) == max(expected) and sum(d > 1 for d in actual) <= 1
  return _trimmed(actual) == _trimmed(expected)


def check(layers: list[Layer], params: dict[str, np.ndarray], arch: Architecture
          ) -> Network:
  """The expected network if the file is it; otherwise MatConvNetError listing
  every difference (missing/unexpected layers and parameters, wrong shapes,
  types, wiring, block settings, untrained batch norms)."""
  problems: list[str] = []
  if arch.num_keypoints != NUM_KEYPOINTS or arch.num_parts not in (0, NUM_PARTS):
    problems.append(f'{arch.num_keypoints} keypoint and {arch.num_parts} part maps '
                    f'(the MPII skeleton has {NUM_KEYPOINTS} and {NUM_PARTS})')
  network = expected_network(arch)
  by_name: dict[str, Layer] = {}
  duplicates = []
  for layer in layers:
    if layer.name in by_name:
      duplicates.append(layer.name)
    by_name[layer.name] = layer
  if duplicates:
    problems.append(f'duplicate layer names {duplicates}')
  loss = [l.name for l in layers if l.type in LOSS_TYPES and not l.params]
  unknown = [f'{l.name} ({l.type})' for l in layers
             if l.type not in KNOWN_TYPES and l.name not in network.layers]
  unexpected = [f'{l.name} ({l.type})' for l in layers if l.name not in network.layers
                and l.name not in loss and l.type in KNOWN_TYPES]
  missing = [name for name in network.layers if name not in by_name]
  if unknown:
    problems.append(f'unknown layer types: {", ".join(unknown)}')
  if unexpected:
    problems.append(f'unexpected layers: {", ".join(unexpected)}')
  if missing:
    problems.append(f'missing layers: {", ".join(missing)}')

  settings, wiring = [], []
  for name, spec in network.layers.items():
    layer = by_name.get(name)
    if layer is None:
      continue
    if layer.type != spec.type:
      settings.append(f'{name}: type {layer.type} (expected {spec.type})')
      continue
    if tuple(layer.params) != spec.params:
      settings.append(f'{name}: params {layer.params} (expected {list(spec.params)})')
    settings += _block_problems(layer, spec)
    if len(layer.outputs) != 1:
      wiring.append(f'{name} has outputs {layer.outputs} (expected one)')
    produced = [INPUT if p == INPUT else (by_name[p].outputs[:1] or ['?'])[0]
                if p in by_name else f'<output of {p}>' for p in spec.producers]
    if layer.inputs != produced:
      wiring.append(f'{name} reads {layer.inputs} (expected {produced})')
  if settings:
    problems.append(f'non-default layer settings: {"; ".join(settings)}')
  if wiring:
    problems.append(f'different wiring: {"; ".join(wiring)}')

  absent = [n for n in network.param_shapes if n not in params]
  extra = [n for n in params if n not in network.param_shapes]
  shapes = [f'{n} {list(_trimmed(params[n].shape))} (expected {list(s)})'
            for n, s in network.param_shapes.items()
            if n in params and not _shape_fits(params[n].shape, s)]
  if absent:
    problems.append(f'missing parameters: {", ".join(absent)}')
  if extra:
    problems.append(f'unexpected parameters: {", ".join(extra)}')
  if shapes:
    problems.append(f'wrong shapes: {", ".join(shapes)}')
  unusable = [n for n, s in network.param_shapes.items() if n in params and
              _shape_fits(params[n].shape, s) and not np.issubdtype(params[n].dtype, np.number)]
  nonfinite = [n for n, s in network.param_shapes.items()
               if n in params and _shape_fits(params[n].shape, s) and n not in unusable
               and not np.all(np.isfinite(params[n]))]
  if unusable:
    problems.append(f'non-numeric parameters: {", ".join(unusable)}')
  if nonfinite:
    problems.append(f'non-finite values in {", ".join(nonfinite)}')
  untrained = []
  for spec in network.layers.values():
    if spec.type == BN and spec.params[2] in params and spec.params[2] not in nonfinite \
        and _shape_fits(params[spec.params[2]].shape, network.param_shapes[spec.params[2]]):
      sigma = np.asarray(params[spec.params[2]], np.float64).reshape(-1, 2, order='F')[:, 1]
      bad = int(np.sum(~(sigma > 0)))
      if bad:
        untrained.append(f'{spec.params[2]} ({bad} of {sigma.size})')
  if untrained:
    problems.append('batch-norm moments with sigma <= 0, as in an untrained network '
                    f'(MatConvNet starts them at zero): {", ".join(untrained)}')
  if problems:
    raise MatConvNetError('not the authors\' network (initialize3ObjeRecFusion, '
                       f'width {arch.width:g}, {arch.passes} passes): ' + ' | '.join(problems))
  return network


# ----------------------------------------------------------------------------
# Mapping


def _vector(value: np.ndarray) -> np.ndarray:
  return np.asarray(value, np.float32).ravel(order='F')


def _conv(params, names, shape) -> dict[str, np.ndarray]:
  kernel = np.asarray(params[names[0]], np.float32).reshape(shape, order='F')
  return {'kernel': np.ascontiguousarray(kernel), 'bias': _vector(params[names[1]])}


def _moments(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[mu, sigma] (C x 2) -> (mean, var) with sqrt(var + eps) = sigma."""
  moments = np.asarray(value, np.float64).reshape(-1, 2, order='F')
  sigma = moments[:, 1]
  var = sigma * sigma - model_lib.BATCH_NORM_EPSILON
  return moments[:, 0].astype(np.float32), var.astype(np.float32)


def to_flax(params: dict[str, np.ndarray], network: Network, arch: Architecture
            ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(params, batch_stats) of RecurrentPoseNet(batch_norm_per_pass=True) at
  `arch` holding the file's arrays."""
  convs = [s for s in network.layers.values() if s.type == CONV]
  norms = {s.producers[0]: s for s in network.layers.values() if s.type == BN}
  feed = [s for s in convs if re.fullmatch(r'layer\d+', s.name)]
  flax_params: dict[str, Any] = {'feed_forward': {}, 'fusion': {}}
  stats: dict[str, Any] = {'feed_forward': {}, 'fusion': {}}
  for j, spec in enumerate(feed):
    block = {'Conv_0': _conv(params, spec.params, spec.kernel)}
    norm = norms.get(spec.name)
    if norm is not None:
      block['BatchNorm_0'] = {'scale': _vector(params[norm.params[0]]),
                              'bias': _vector(params[norm.params[1]])}
      mean, var = _moments(params[norm.params[2]])
      stats['feed_forward'][f'ConvBlock_{j}'] = {'BatchNorm_0': {'mean': mean, 'var': var}}
    flax_params['feed_forward'][f'ConvBlock_{j}'] = block

  def heads(idx):
    out = {'keypoints': _conv(params, network.layers[f'conv{idx}_key'].params,
                              network.layers[f'conv{idx}_key'].kernel)}
    if arch.num_parts:
      out['parts'] = _conv(params, network.layers[f'conv{idx}_part'].params,
                           network.layers[f'conv{idx}_part'].kernel)
    return out

  flax_params['heads_0'] = heads(1)
  flax_params['fusion']['heads'] = heads(2)
  per_pass = {}
  for k, (_, _, use_bn) in enumerate(model_lib.FUSION_LAYERS):
    spec = network.layers[f'fu_1_conv{k + 1}']
    flax_params['fusion'][f'ConvBlock_{k}'] = {'Conv_0': _conv(params, spec.params, spec.kernel)}
    if not use_bn:
      continue
    passes = [network.layers[f'fu_{i}_{k + 1}_bn'] for i in range(1, arch.passes + 1)]
    moments = [_moments(params[p.params[2]]) for p in passes]
    per_pass[f'ConvBlock_{k}'] = {
        'scale': np.stack([_vector(params[p.params[0]]) for p in passes]),
        'bias': np.stack([_vector(params[p.params[1]]) for p in passes])}
    stats['fusion'][f'ConvBlock_{k}'] = {'BatchNorm_0': {
        'mean': np.stack([m for m, _ in moments]), 'var': np.stack([v for _, v in moments])}}
  flax_params['fusion_batch_norm'] = per_pass
  return flax_params, stats


@dataclasses.dataclass
class Imported:
  """An imported file: the Flax variables, the architecture, and what was mapped."""
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  arch: Architecture
  network: Network
  storage: str  # how the file stored the network
  ignored_layers: list[str]
  num_file_arrays: int
  num_weights: int  # scalars in params
  num_statistics: int  # scalars in the batch-norm moments
  meta_fields: list[str]
  prediction: str  # the file's variable holding the last keypoint maps (prediction10)


def import_file(path: str | os.PathLike) -> Imported:
  """Reads, checks and maps a DagNN file (MatConvNetError/MatFileError/FileNotFoundError
  with one line otherwise)."""
  struct, storage = load_dagnn(path)
  try:
    layers = parse_layers(struct)
    params = parse_params(struct)
  except (TypeError, KeyError, AttributeError, IndexError) as e:
    raise MatConvNetError(f'{path}: the layers or params of the network struct are not '
                          f'laid out as DagNN.saveobj writes them ({type(e).__name__}: {e})') from None
  arch = infer_architecture(layers, params)
  network = check(layers, params, arch)
  flax_params, stats = to_flax(params, network, arch)
  count = lambda tree: sum(int(np.size(x)) for x in _leaves(tree))
  moments = sum(int(np.size(params[s.params[2]])) for s in network.layers.values() if s.type == BN)
  meta = struct.get('meta')
  meta_fields = sorted(meta[0]) if isinstance(meta, list) and len(meta) == 1 and isinstance(
      meta[0], dict) else []
  last = next(l for l in layers if l.name == network.keypoint_outputs[-1])
  return Imported(flax_params, stats, arch, network, storage,
                  [l.name for l in layers if l.name not in network.layers],
                  len(params), count(flax_params), moments, meta_fields, last.outputs[0])


def _leaves(tree: Any) -> list[np.ndarray]:
  if isinstance(tree, dict):
    return [leaf for child in tree.values() for leaf in _leaves(child)]
  return [tree]


def config_source(arch: Architecture, source: str) -> str:
  """A config file (Python) describing the imported network: the MPII
  setting with the file's width, iterations and per-pass batch norm."""
  return f'''"""The authors' network imported from {os.path.basename(source)} (experiments.import_matconvnet).

The MPII setting (rhpe_jax.core.config, as experiments/configs/mpii.py) with
the imported network's shape: batch norm scale and offset per fusion pass, as
MatConvNet kept them. Inputs are RGB, (x - 128) / 256, as the authors' code
prepares them.
"""
from rhpe_jax.core import config as config_lib


def get_config():
  config = config_lib.default_config()
  config.keypoint_set = 'mpii'
  config.num_iterations = {arch.passes - 1}
  config.width = {arch.width!r}
  config.use_parts = {bool(arch.num_parts)}
  config.relu_output = True
  config.batch_norm_per_pass = True
  config.input_size = 248
  return config
'''


STEP = 0  # the step of an import's checkpoint: nothing trained


def describe(imported: Imported, mat: str) -> list[str]:
  """What an import read and how it maps, in a few lines."""
  arch = imported.arch
  layers = imported.network.layers
  kinds = {}
  for spec in layers.values():
    kinds[spec.type.split('.')[-1]] = kinds.get(spec.type.split('.')[-1], 0) + 1
  passes = arch.passes
  return [
      f'{os.path.basename(mat)}: {imported.storage}; {len(layers) + len(imported.ignored_layers)} '
      f'layers, {imported.num_file_arrays} parameter arrays',
      f'network: width {arch.width:g} ({arch.features(64)} channels in layer1), {passes} fusion '
      f'passes (num_iterations={passes - 1}), {arch.num_keypoints} keypoint and '
      f'{arch.num_parts} part maps per stage; the prediction is {imported.prediction}',
      f'mapped {len(layers)} layers ({", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))}); '
      f'ignored {len(imported.ignored_layers)} training-only loss layers',
      f'weights: {imported.num_weights:,} (feed-forward layer1-layer30 + bn1-bn8, heads conv1_A/B; '
      f'fu_1_1..4 and conv2_A/B shared by the {passes} passes; batch norms fu_<i>_<k>_bn per pass) '
      f'+ {imported.num_statistics:,} batch-norm moments [mean, sigma]',
      'preprocessing: RGB, (pixel - 128) / 256, 248 x 248 input, as the authors\' code'
      + (f'; meta fields {imported.meta_fields} not used' if imported.meta_fields else ''),
  ]


@dataclasses.dataclass(frozen=True)
class ImportedRun:
  """A run directory written by `import_to_workdir`."""
  config_path: str  # OUTPUT/config.py
  checkpoint_path: str  # OUTPUT/checkpoints/latest/0
  summary: list[str]  # what was read, how it maps, what was written, what to run next


def _load_config(path: pathlib.Path) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location('imported_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def import_to_workdir(mat: str, output: str,
                      train_state: Callable[[ml_collections.ConfigDict, dict], Any], *,
                      overwrite: bool = False) -> ImportedRun:
  """Imports `mat` into the run directory `output`: OUTPUT/config.py (the
  config describing the network) and OUTPUT/checkpoints/latest/0, which every
  tool takes as `--config=OUTPUT/config.py --workdir=OUTPUT`.

  `train_state(config, {'params', 'batch_stats'})` is the state training
  would start from with those weights (rhpe_jax.training.steps.
  train_state_from_variables), saved with its optimiser state so that
  training with --workdir=OUTPUT fine-tunes the authors' network; training
  is a layer above this one. The file is checked whole before anything is
  written; an earlier import's checkpoint in `output` is replaced only with
  `overwrite`.
  """
  out = pathlib.Path(output)
  if out.is_file():
    raise FileExistsError(f'output {output} is a file, not a directory')
  checkpoint_dir = out / 'checkpoints'
  if checkpoint_dir.exists() and any(checkpoint_dir.iterdir()) and not overwrite:
    raise FileExistsError(f'{checkpoint_dir} already holds checkpoints; '
                          'use another output, or overwrite')
  imported = import_file(mat)  # everything is checked before anything is written

  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top  (orbax: only now)
  out.mkdir(parents=True, exist_ok=True)
  config_path = out / 'config.py'
  config_path.write_text(config_source(imported.arch, mat))
  config = _load_config(config_path)

  net = model_lib.create_model(config)
  shapes = jax.eval_shape(lambda: model_lib.init_variables(
      net, jax.random.key(0), (1, config.input_size, config.input_size, 3)))
  variables = {'params': imported.params, 'batch_stats': imported.batch_stats}
  want = jax.tree_util.tree_map(lambda x: x.shape, {'params': shapes['params'],
                                                    'batch_stats': shapes['batch_stats']})
  got = jax.tree_util.tree_map(lambda x: x.shape, variables)
  if want != got:  # the mapping and the model disagree: a bug here, not a bad file
    raise AssertionError(f'imported variables do not fit the model: {got} vs {want}')
  if model_lib.count_parameters(imported.params) != imported.num_weights:
    raise AssertionError('parameter count changed in the mapping')

  state = train_state(config, variables)
  if overwrite and checkpoint_dir.exists():
    shutil.rmtree(checkpoint_dir)
  manager = checkpoints.CheckpointManager(str(out), config)
  manager.save(STEP, state, force=True)
  manager.close()
  keypoint_sets.save_to_workdir(keypoint_sets.of_config(config), str(out))  # fine-tuning maps by it
  checkpoint_path = checkpoint_dir / 'latest' / str(STEP)
  summary = describe(imported, mat) + [
      f'wrote {config_path}, {checkpoint_path}',
      f'next: python -m experiments.predict --config={config_path} --workdir={out} '
      '--image=IMAGE --output=PREFIX']
  return ImportedRun(str(config_path), str(checkpoint_path), summary)
