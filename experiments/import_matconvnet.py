r"""The authors' trained network (MatConvNet .mat) as a checkpoint of this project.

  python -m experiments.import_matconvnet --mat=keypoint-v3.mat --output=runs/authors_v3

Reads keypoint-v3.mat or keypoint-v4.mat (ox-vgg/keypoint_models; MAT v5 or
v7.3, `net` as a struct, as top-level fields, or as a dagnn.DagNN object
where the mat-io package can decode it), checks it against the network the
authors' code builds (rhpe_jax.interop.matconvnet) and writes

  OUTPUT/config.py                    the config describing it (the MPII
                                      setting, batch_norm_per_pass=True)
  OUTPUT/checkpoints/latest/0/        the weights, as training saves them

which every tool takes as `--config=OUTPUT/config.py --workdir=OUTPUT`:

  python -m experiments.predict --config=OUTPUT/config.py --workdir=OUTPUT --image=photo.jpg --output=out/photo
  python -m experiments.evaluate --config=OUTPUT/config.py --workdir=OUTPUT --config.data_dir=...
  python -m experiments.export --config=OUTPUT/config.py --workdir=OUTPUT --output=OUTPUT/export

A file that is not that network is refused with one line listing every
difference; nothing is written then.
"""
from __future__ import annotations

import os
import pathlib
import sys
from typing import TYPE_CHECKING, Sequence

from absl import flags

from rhpe_jax import cli

if TYPE_CHECKING:
  from rhpe_jax.interop import matconvnet

FLAGS = flags.FLAGS
STEP = 0  # the checkpoint's step: nothing trained here


def define_flags() -> None:
  flags.DEFINE_string('mat', None, "The authors' MatConvNet file (keypoint-v3.mat, keypoint-v4.mat).")
  flags.DEFINE_string('output', None, 'Directory for config.py and checkpoints/ (created).')
  flags.DEFINE_bool('overwrite', False, 'Replace the checkpoint of an earlier import in --output.')


def describe(imported: matconvnet.Imported, mat: str) -> list[str]:
  """The lines printed after an import: what was read and how it maps."""
  arch = imported.arch
  layers = imported.network.layers
  kinds = {}
  for spec in layers.values():
    kinds[spec.type.split('.')[-1]] = kinds.get(spec.type.split('.')[-1], 0) + 1
  passes = arch.passes
  lines = [
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
  return lines


def run(mat: str, output: str, *, overwrite: bool = False, verbose: bool = True
        ) -> dict[str, str]:
  """Imports `mat` into `output`; returns the paths written."""
  from rhpe_jax.interop import matconvnet  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(output)
  if out.is_file():
    raise FileExistsError(f'--output {output} is a file, not a directory')
  checkpoint_dir = out / 'checkpoints'
  if checkpoint_dir.exists() and any(checkpoint_dir.iterdir()) and not overwrite:
    raise FileExistsError(f'{checkpoint_dir} already holds checkpoints; '
                          'use another --output or --overwrite')
  imported = matconvnet.import_file(mat)  # everything is checked before anything is written

  # pylint: disable=g-import-not-at-top
  import importlib.util
  import jax
  from rhpe_jax import checkpoints
  from rhpe_jax.model import network as model_lib
  from rhpe_jax.training import steps as train_step
  # pylint: enable=g-import-not-at-top
  out.mkdir(parents=True, exist_ok=True)
  config_path = out / 'config.py'
  config_path.write_text(matconvnet.config_source(imported.arch, mat))
  spec = importlib.util.spec_from_file_location('imported_config', config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()

  net = model_lib.create_model(config)
  shapes = jax.eval_shape(lambda: model_lib.init_variables(
      net, jax.random.key(0), (1, config.input_size, config.input_size, 3)))
  want = jax.tree_util.tree_map(lambda x: x.shape, {'params': shapes['params'],
                                                    'batch_stats': shapes['batch_stats']})
  got = jax.tree_util.tree_map(lambda x: x.shape, {'params': imported.params,
                                                   'batch_stats': imported.batch_stats})
  if want != got:  # the mapping and the model disagree: a bug here, not a bad file
    raise AssertionError(f'imported variables do not fit the model: {got} vs {want}')
  if model_lib.count_parameters(imported.params) != imported.num_weights:
    raise AssertionError('parameter count changed in the mapping')

  # The train state training would start from (its optimiser state too, so
  # that training with --workdir=OUTPUT fine-tunes the authors' weights).
  state = train_step.TrainState.create(
      apply_fn=net.apply, params=imported.params, batch_stats=imported.batch_stats,
      tx=train_step.create_optimizer(config, steps_per_epoch=1, total_steps=1))
  if overwrite and checkpoint_dir.exists():
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(checkpoint_dir)
  manager = checkpoints.CheckpointManager(str(out), config)
  manager.save(STEP, state, force=True)
  manager.close()
  paths = {'config': str(config_path), 'checkpoint': str(checkpoint_dir / 'latest' / str(STEP))}
  if verbose:
    for line in describe(imported, mat):
      print(line)
    print(f'wrote {paths["config"]}, {paths["checkpoint"]}')
    print(f'next: python -m experiments.predict --config={config_path} --workdir={out} '
          '--image=IMAGE --output=PREFIX')
  return paths


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    print(f'error: unexpected arguments {" ".join(argv[1:])}', file=sys.stderr)
    return 2
  try:
    for name in ('mat', 'output'):
      if not getattr(FLAGS, name):
        raise ValueError(f'--{name} is required')
    run(FLAGS.mat, FLAGS.output, overwrite=FLAGS.overwrite)
  except (ValueError, FileNotFoundError, OSError) as e:
    return cli.error_status(e)
  return 0


if __name__ == '__main__':
  define_flags()
  cli.run(main)
