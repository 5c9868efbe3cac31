"""The authors' MatConvNet files without MATLAB: a writer and a NumPy interpreter.

`build_network` makes the struct that `initialize3ObjeRecFusion(opts, 3, 0,
'shareFlag', [0 1 1])` followed by `net.saveobj()` would hold
(../shared/docs/authors_release_format.md, sections 1-2): the SimpleNN part
renamed by `fromSimpleNN` (layer<l>, bn<k>, x<l>), the heads of `addMultiLoss`
(conv<idx>_key/_part, relu<idx>_A/B, objective/error RegLoss layers), the
fusion passes of `addRecFuse` (skip_maps<i>, fu_<i>_conv<k>, fu_<i>_<k>_bn,
relu_fu_<i>_<k>), shared parameters listed once, block fields as beta23's
`Layer.save` writes them; weights random, batch-norm sigmas positive.
`width` shrinks every layer for fast tests. It follows the MATLAB code's
procedure and does not use rhpe_jax.

`write_v5` / `write_v73` / `write_object` save it as MATLAB would: MAT v5 (as
`net` or as top-level fields), v7.3 (HDF5, MATLAB's layout), or a
`dagnn.DagNN` object whose saveobj struct is stored as property 'any'
(written by mat-io). `run_network` evaluates a struct by walking its layers
by variable names (MatConvNet's test-mode arithmetic), and `authors_decode`
is KeyPointDetector.m's arg-max decoding.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np


class StructArray(list):
  """A 1xN MATLAB struct array (a list of dicts with the same fields)."""


def _ch(count: int, width: float) -> int:
  return max(1, int(round(count * width)))


@dataclasses.dataclass
class _Builder:
  rng: np.random.Generator
  layers: list = dataclasses.field(default_factory=list)
  params: dict = dataclasses.field(default_factory=dict)  # name -> (value, lr, wd)
  variables: list = dataclasses.field(default_factory=list)

  def var(self, name):
    if name not in self.variables:
      self.variables.append(name)

  def layer(self, name, kind, inputs, outputs, params, block):
    for v in inputs + outputs:
      self.var(v)
    self.layers.append({'name': name, 'type': kind, 'inputs': list(inputs),
                        'outputs': list(outputs), 'params': list(params), 'block': block})

  def conv_params(self, prefix_f, prefix_b, h, cin, cout):
    if prefix_f not in self.params:
      scale = np.sqrt(2.0 / (h * h * cin))
      self.params[prefix_f] = (self.rng.normal(0, scale, (h, h, cin, cout)).astype(np.float32), 1, 1)
      self.params[prefix_b] = (self.rng.normal(0.05, 0.1, (1, cout)).astype(np.float32), 2, 0)

  def bn_params(self, m, b, x, channels):
    self.params[m] = (self.rng.uniform(0.5, 1.5, (channels, 1)).astype(np.float32)
                      * self.rng.choice(np.float32([-1, 1, 1, 1]), (channels, 1)), 2, 0)
    self.params[b] = (self.rng.normal(0.1, 0.2, (channels, 1)).astype(np.float32), 1, 0)
    moments = np.stack([self.rng.normal(0, 0.3, channels),
                        self.rng.uniform(0.3, 2.0, channels)], axis=1)
    self.params[x] = (moments.astype(np.float32), 0.1, 0)


def conv_block(h, cin, cout, pad, cudnn=True):
  return {'size': np.array([[h, h, cin, cout]], np.float64), 'hasBias': np.array([[True]]),
          'opts': ['CudnnWorkspaceLimit', np.array([[5368709120.0]])] if cudnn else ['cuDNN'],
          'pad': np.array([[pad] * 4], np.float64), 'stride': np.array([[1.0, 1.0]]),
          'dilate': np.array([[1.0, 1.0]])}


BN_BLOCK = {'numChannels': np.zeros((0, 0)), 'epsilon': np.array([[1e-5]]), 'opts': ['NoCuDNN']}
RELU_BLOCK = {'useShortCircuit': np.array([[True]]), 'leak': np.array([[0.0]]), 'opts': []}
POOL_BLOCK = {'method': 'max', 'poolSize': np.array([[2.0, 2.0]]), 'opts': [],
              'pad': np.zeros((1, 4)), 'stride': np.array([[2.0, 2.0]]),
              'dilate': np.array([[1.0, 1.0]])}


def _loss_block(loss):
  return {'loss': loss, 'lossWeight': np.array([[1.0]]), 'ignOcc': np.array([[0.0]]),
          'symm': np.array([[0.0]])}


def build_network(width: float = 1.0, iterations: int = 3, seed: int = 0,
                  share_flag=None) -> dict[str, Any]:
  """The saved DagNN struct: {'vars', 'params', 'layers', 'meta'}."""
  b = _Builder(np.random.default_rng(seed))
  # SimpleNN (trainBodyPose_example / initialize3ObjeRecFusion): conv, bnorm, relu ...
  simple = [('c', 3, 64, 1), ('c', 3, 64, 1), 'p', ('c', 3, 64, 1), ('c', 3, 128, 1), 'p',
            ('c', 3, 128, 1), ('c', 3, 128, 1), ('c', 9, 256, 4), ('c', 9, 512, 4),
            ('c1', 1, 256, 0), ('c1', 1, 256, 0)]
  l, bn, cin = 0, 0, 3
  for entry in simple:
    src = 'input' if l == 0 else f'x{l}'
    if entry == 'p':
      l += 1
      b.layer(f'layer{l}', 'dagnn.Pooling', [src], [f'x{l}'], [], POOL_BLOCK)
      continue
    kind, h, cout, pad = entry
    cout = _ch(cout, width)
    l += 1
    b.conv_params(f'layer{l}f', f'layer{l}b', h, cin, cout)
    b.layer(f'layer{l}', 'dagnn.Conv', [src], [f'x{l}'], [f'layer{l}f', f'layer{l}b'],
            conv_block(h, cin, cout, pad))
    if kind == 'c':
      l += 1
      bn += 1
      b.bn_params(f'bn{bn}m', f'bn{bn}b', f'bn{bn}x', cout)
      b.layer(f'bn{bn}', 'dagnn.BatchNorm', [f'x{l - 1}'], [f'x{l}'],
              [f'bn{bn}m', f'bn{bn}b', f'bn{bn}x'], BN_BLOCK)
    l += 1
    b.layer(f'layer{l}', 'dagnn.ReLU', [f'x{l - 1}'], [f'x{l}'], [], RELU_BLOCK)
    cin = cout
  assert l == 30
  skip, skip_ch = 'x20', _ch(128, width)
  keypoints, parts = 16, 15

  def add_multi_loss(idx, source, channels, idxloss, shared):
    ref = 2 if shared else idx
    for suffix, head, count, loss, label in (('key', 'A', keypoints, 'l2loss-heatmap', 0),
                                             ('part', 'B', parts, 'l2loss-pairwiseheatmap', 1)):
      f, bias = f'conv{ref}_{head}_filters', f'conv{ref}_{head}_biases'
      b.conv_params(f, bias, 1, channels, count)
      b.layer(f'conv{idx}_{suffix}', 'dagnn.Conv', [source], [f'conv{idx}_{suffix}'], [f, bias],
              conv_block(1, channels, count, 0))
      pred = f'prediction{idxloss[label]}'
      b.layer(f'relu{idx}_{head}', 'dagnn.ReLU', [f'conv{idx}_{suffix}'], [pred], [], RELU_BLOCK)
      b.layer(f'objective{idxloss[label]}', 'dagnn.RegLoss', [pred, 'label'],
              [f'objective{idxloss[label]}'], [], _loss_block(loss))
      b.layer(f'error{idxloss[label]}', 'dagnn.RegLoss', [pred, 'label'],
              [f'error{idxloss[label]}'], [], _loss_block(loss.replace('l2loss', 'mse')))

  add_multi_loss(1, 'x30', _ch(256, width), (1, 2, 3), shared=False)
  share_flag = share_flag or [0] + [1] * (iterations - 1)
  fusion = [(7, 64, True), (13, 64, True), (13, 128, True), (1, 256, False)]
  previous, prev_ch = 'x30', _ch(256, width)
  for i in range(1, iterations + 1):
    cat = f'skip_maps{i}'
    b.layer(cat, 'dagnn.Concat', [skip, previous], [cat], [], {'dim': np.array([[3.0]])})
    src, cin = cat, skip_ch + prev_ch
    for k, (h, cout, has_bn) in enumerate(fusion, start=1):
      cout = _ch(cout, width)
      owner = i if i == 1 else 1
      f, bias = f'fu_{owner}_{k}_filters', f'fu_{owner}_{k}_biases'
      b.conv_params(f, bias, h, cin, cout)
      b.layer(f'fu_{i}_conv{k}', 'dagnn.Conv', [src], [f'fu_{i}_conv{k}'], [f, bias],
              conv_block(h, cin, cout, (h - 1) // 2, cudnn=False))
      src = f'fu_{i}_conv{k}'
      if has_bn:
        names = [f'fu_{i}_{k}_bn_m', f'fu_{i}_{k}_bn_b', f'fu_{i}_{k}_bn_x']
        b.bn_params(*names, cout)
        b.layer(f'fu_{i}_{k}_bn', 'dagnn.BatchNorm', [src], [f'fu_{i}_{k}_bn'], names, BN_BLOCK)
        src = f'fu_{i}_{k}_bn'
      b.layer(f'relu_fu_{i}_{k}', 'dagnn.ReLU', [src], [f'relu_fu_{i}_{k}'], [], RELU_BLOCK)
      src, cin = f'relu_fu_{i}_{k}', cout
    add_multi_loss(i + 1, src, cin, (3 * i + 1, 3 * i + 2, 3 * i + 3), shared=bool(share_flag[i - 1]))
    previous, prev_ch = src, cin
  params = StructArray({'name': n, 'value': v, 'learningRate': np.array([[float(lr)]]),
                        'weightDecay': np.array([[float(wd)]])} for n, (v, lr, wd) in b.params.items())
  return {'vars': StructArray({'name': v, 'precious': np.array([[False]])} for v in b.variables),
          'params': params, 'layers': StructArray(b.layers), 'meta': {}}


def param_values(net: dict[str, Any]) -> dict[str, np.ndarray]:
  return {p['name']: p['value'] for p in net['params']}


def set_param(net: dict[str, Any], name: str, value: np.ndarray) -> None:
  for p in net['params']:
    if p['name'] == name:
      p['value'] = value
      return
  raise KeyError(name)


# ----------------------------------------------------------------------------
# Writers


def _scipy(value: Any) -> Any:
  """Python-level MATLAB values as scipy.io.savemat writes them."""
  if isinstance(value, (StructArray, dict)):
    elements = [value] if isinstance(value, dict) else list(value)
    fields = list(elements[0]) if elements else []
    if not fields:  # struct() with no fields: savemat's own form of an empty dict
      return {}
    out = np.empty((1, len(elements)), dtype=[(f, object) for f in fields])
    for j, element in enumerate(elements):
      for f in fields:
        out[0, j][f] = _scipy(element[f])
    return out
  if isinstance(value, list):  # cell
    if not value:
      return np.empty((0, 0), dtype=object)
    out = np.empty((1, len(value)), dtype=object)
    for j, item in enumerate(value):
      out[0, j] = _scipy(item)
    return out
  return value


def write_v5(path, net: dict[str, Any], layout: str = 'net') -> pathlib.Path:
  """`save(path, 'net')` (layout 'net') or `save(path, '-struct', 'net')` ('top')."""
  import scipy.io  # pylint: disable=g-import-not-at-top
  contents = {'net': _scipy(net)} if layout == 'net' else {k: _scipy(v) for k, v in net.items()}
  scipy.io.savemat(str(path), contents, do_compression=True, format='5')
  return pathlib.Path(path)


def write_v73(path, net: dict[str, Any]) -> pathlib.Path:
  """`save(path, 'net', '-v7.3')`: HDF5 with MATLAB's classes, dimensions
  reversed, struct arrays and cells as references into #refs#."""
  import h5py  # pylint: disable=g-import-not-at-top
  counter = iter(range(10 ** 9))

  def attrs(node, kind, **extra):
    node.attrs['MATLAB_class'] = np.bytes_(kind)
    for key, val in extra.items():
      node.attrs[key] = val

  def fields_attr(node, names):
    vlen = h5py.vlen_dtype(np.dtype('S1'))
    names_array = np.empty(len(names), dtype=object)
    for j, n in enumerate(names):
      names_array[j] = np.array(list(n), dtype='S1')
    node.attrs.create('MATLAB_fields', names_array, dtype=vlen)

  def ref(f, value):
    name = f'#refs#/r{next(counter)}'
    put(f, name, value)
    return f[name].ref

  def put(f, name, value):
    if isinstance(value, dict):
      group = f.create_group(name)
      attrs(group, 'struct')
      if value:
        fields_attr(group, list(value))
      for key, item in value.items():
        put(f, f'{name}/{key}', item)
    elif isinstance(value, StructArray):
      group = f.create_group(name)
      attrs(group, 'struct')
      fields = list(value[0])
      fields_attr(group, fields)
      for key in fields:
        refs = np.array([[ref(f, element[key])] for element in value], dtype=h5py.ref_dtype)
        group.create_dataset(key, data=refs)  # (N, 1): 1 x N reversed
    elif isinstance(value, list):  # cell
      if not value:
        attrs(f.create_dataset(name, data=np.array([0, 0], np.uint64)), 'cell', MATLAB_empty=1)
      else:
        refs = np.array([[ref(f, item)] for item in value], dtype=h5py.ref_dtype)
        attrs(f.create_dataset(name, data=refs), 'cell')
    elif isinstance(value, str):
      if not value:
        attrs(f.create_dataset(name, data=np.array([0, 0], np.uint64)), 'char', MATLAB_empty=1)
      else:
        codes = np.array([[ord(c)] for c in value], np.uint16)
        attrs(f.create_dataset(name, data=codes), 'char', MATLAB_int_decode=2)
    else:
      array = np.asarray(value)
      kind = {np.dtype(bool): 'logical', np.dtype(np.float64): 'double',
              np.dtype(np.float32): 'single'}[array.dtype]
      if array.size == 0:
        attrs(f.create_dataset(name, data=np.array(array.shape, np.uint64)), kind, MATLAB_empty=1)
      else:
        data = array.T.astype(np.uint8) if kind == 'logical' else array.T
        attrs(f.create_dataset(name, data=data), kind,
              **({'MATLAB_int_decode': 1} if kind == 'logical' else {}))

  with h5py.File(path, 'w', userblock_size=512) as f:
    f.create_group('#refs#')
    put(f, 'net', net)
  header = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Dec  1 00:00:00 2026 HDF5 schema 1.00 .'
  with open(path, 'r+b') as f:
    f.write(header.ljust(116, b' ') + b'\x00' * 8 + b'\x00\x02' + b'IM')
  return pathlib.Path(path)


def write_object(path, net: dict[str, Any], version: str = 'v7') -> pathlib.Path:
  """`save(path, 'net')` of a dagnn.DagNN object: MATLAB stores what saveobj
  returns as the object's property 'any' (written by mat-io)."""
  from matio import save_to_mat  # pylint: disable=g-import-not-at-top
  from matio.utils.matclass import MatlabOpaque  # pylint: disable=g-import-not-at-top
  struct = _scipy(net)
  meta = np.empty((1, 1), dtype=[('none', object)])
  meta[0, 0]['none'] = np.zeros((0, 0))
  struct[0, 0]['meta'] = meta
  obj = MatlabOpaque(properties={'any': struct}, classname='dagnn.DagNN', type_system='MCOS')
  save_to_mat(str(path), {'net': obj}, version=version, saveobj_classes=['dagnn.DagNN'])
  return pathlib.Path(path)


# ----------------------------------------------------------------------------
# NumPy interpreter (test mode) and the authors' decoding


def _correlate(x, f, b, pad):
  """vl_nnconv: y(i,j,o) = b(o) + sum f(u,v,c,o) x(i+u-top, j+v-left, c), stride 1."""
  top, bottom, left, right = pad
  h, w, cin, cout = f.shape
  xp = np.pad(x, ((top, bottom), (left, right), (0, 0)))
  out_h, out_w = xp.shape[0] - h + 1, xp.shape[1] - w + 1
  windows = np.lib.stride_tricks.sliding_window_view(xp, (h, w), axis=(0, 1))  # (oh, ow, c, h, w)
  cols = windows.transpose(0, 1, 3, 4, 2).reshape(out_h * out_w, h * w * cin)
  return (cols @ f.reshape(h * w * cin, cout)).reshape(out_h, out_w, cout) + b.reshape(1, 1, -1)


def _max_pool(x, size, stride):
  out_h = (x.shape[0] - size[0]) // stride[0] + 1
  out_w = (x.shape[1] - size[1]) // stride[1] + 1
  out = np.full((out_h, out_w, x.shape[2]), -np.inf)
  for u in range(size[0]):
    for v in range(size[1]):
      out = np.maximum(out, x[u:u + stride[0] * out_h:stride[0], v:v + stride[1] * out_w:stride[1]])
  return out


def _flat(value) -> list[float]:
  return [float(v) for v in np.asarray(value, np.float64).ravel()]


def run_network(net: dict[str, Any], image: np.ndarray) -> dict[str, np.ndarray]:
  """Every variable of `net` for `image` (H, W, 3, already normalised), in
  float64: each layer runs once all its inputs exist, as DagNN.eval does."""
  params = {p['name']: np.asarray(p['value'], np.float64) for p in net['params']}
  values = {'input': np.asarray(image, np.float64)}
  pending = [l for l in net['layers'] if l['type'] != 'dagnn.RegLoss']
  while pending:
    ready = [l for l in pending if all(v in values for v in l['inputs'])]
    assert ready, f'layers waiting for missing inputs: {[l["name"] for l in pending]}'
    for layer in ready:
      x = [values[v] for v in layer['inputs']]
      block, p = layer['block'], [params[n] for n in layer['params']]
      kind = layer['type']
      if kind == 'dagnn.Conv':
        pad = [int(v) for v in _flat(block['pad'])]
        y = _correlate(x[0], p[0].reshape([int(s) for s in _flat(block['size'])]), p[1], pad)
      elif kind == 'dagnn.BatchNorm':
        gain, bias, moments = p[0].ravel(), p[1].ravel(), p[2]
        y = gain / moments[:, 1] * (x[0] - moments[:, 0]) + bias
      elif kind == 'dagnn.ReLU':
        y = np.maximum(x[0], 0.0)
      elif kind == 'dagnn.Pooling':
        assert block['method'] == 'max'
        y = _max_pool(x[0], [int(v) for v in _flat(block['poolSize'])],
                      [int(v) for v in _flat(block['stride'])])
      elif kind == 'dagnn.Concat':
        y = np.concatenate(x, axis=int(_flat(block['dim'])[0]) - 1)
      else:
        raise ValueError(f'the reference interpreter has no {kind}')
      values[layer['outputs'][0]] = y
      pending.remove(layer)
  return values


def authors_decode(heatmaps: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
  """KeyPointDetector.m: per joint the first maximum in MATLAB's (column-major)
  order, 1-based, scaled to the (square) image and rounded: (J, 2) [x, y] in
  1-based pixels. (The authors scale x by the image's rows and y by its
  columns, the same for their square images; here each by its own side.)"""
  h, w, joints = heatmaps.shape
  out = np.zeros((joints, 2), np.int64)
  for j in range(joints):
    hmap = heatmaps[:, :, j]
    rows, cols = np.nonzero(hmap == hmap.max())
    order = np.lexsort((rows, cols))  # column-major: by column, then row
    hy, hx = rows[order[0]] + 1, cols[order[0]] + 1
    x = hx / w * image_shape[1]  # hx / 62 * 248 / 248 * size(img, 1)
    y = hy / h * image_shape[0]
    out[j] = [int(np.floor(x + 0.5)), int(np.floor(y + 0.5))]  # int32(): half away from zero
  return out
