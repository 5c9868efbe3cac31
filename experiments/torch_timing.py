r"""Times the PyTorch reference network (../shared/bench/torch_reference.py)
on the same shapes as our benchmark: eager or `torch.compile`, float32 or
bfloat16 autocast, on CPU or CUDA.

`experiments.benchmark --compare_torch` runs this file as a script in a fresh
interpreter (which may be another environment's, with torch installed), so
that neither runtime shares a process with the other:

  python experiments/torch_timing.py --reference=../shared/bench/torch_reference.py \
      --what=train_step --batch=2 --image_size=248 --steps=3 --threads=2

It prints one JSON line. It imports nothing from rhpe_jax, and torch is never
a dependency of the project.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import time


def load_reference(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location('torch_reference', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def time_reference(path: pathlib.Path, what: str, batch: int, image_size: int, steps: int,
                   compile_model: bool = False, bfloat16: bool = False) -> dict:
  """Median seconds of a training step (SGD, momentum 0.95, the reference's
  loss) or of an eval-mode forward pass, after warm-up."""
  import torch  # pylint: disable=g-import-not-at-top
  reference = load_reference(path)
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.manual_seed(0)
  model = reference.RecurrentPose().to(device)
  if device == 'cuda':
    model = model.to(memory_format=torch.channels_last)
  runner = torch.compile(model) if compile_model else model
  x = torch.zeros(batch, 3, image_size, image_size, device=device)
  autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bfloat16)
  opt = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.95)

  def train_step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      loss = sum((o.float() ** 2).mean() for pair in runner(x) for o in pair)
    loss.backward()
    opt.step()

  def forward():
    with torch.no_grad(), autocast:
      runner(x)

  if what == 'train_step':
    model.train()
    fn = train_step
  else:
    model.eval()
    fn = forward
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  for _ in range(3 if compile_model else 1):
    fn()
  sync()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    sync()
    times.append(time.perf_counter() - start)
  step_time = statistics.median(times)
  return {'what': f'torch_{what}', 'batch': batch, 'image_size': image_size,
          'device': device, 'compiled': compile_model, 'bfloat16': bfloat16,
          'step_time_s': round(step_time, 4), 'images_per_s': round(batch / step_time, 3)}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reference', type=pathlib.Path, required=True)
  parser.add_argument('--what', choices=('train_step', 'inference'), required=True)
  parser.add_argument('--batch', type=int, required=True)
  parser.add_argument('--image_size', type=int, required=True)
  parser.add_argument('--steps', type=int, required=True)
  parser.add_argument('--threads', type=int, default=None,
                      help='intra-op threads (default: torch\'s own choice)')
  parser.add_argument('--compile', action='store_true')
  parser.add_argument('--bfloat16', action='store_true')
  args = parser.parse_args(argv)
  import torch  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)
  result = time_reference(args.reference, args.what, args.batch, args.image_size, args.steps,
                          compile_model=args.compile, bfloat16=args.bfloat16)
  result.update(threads=torch.get_num_threads(), torch_version=torch.__version__)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
